"""The ViT builder: shapes, explicit vs fused attention, fx tracing, argument checks, batch independence."""

import pytest
import torch
import torch.nn.functional as F
from torch import fx, nn

from spikeport.models import vit

SMALL = {"width": 16, "depth": 2, "heads": 2}  # keeps every test well under a second


@pytest.mark.parametrize(
    ("shape", "options"),
    [
        ((2, 1, 28, 28), {}),
        ((2, 1, 28, 28), {"patch_size": 7, "pool": "mean", "activation": "relu", "norm": "rms"}),
        ((2, 3, 32, 32), {"in_channels": 3, "image_size": 32, "attention": "sdpa", "activation": "silu"}),
        ((2, 3, 32, 32), {"in_channels": 3, "image_size": (32, 32), "patch_size": 8, "pool": "mean"}),
        ((2, 3, 32, 16), {"in_channels": 3, "image_size": (32, 16), "mlp_ratio": 1.5}),
    ],
)
def test_output_shape(shape, options):
    model = vit(num_classes=7, **{**SMALL, **options})
    assert model(torch.rand(shape)).shape == (shape[0], 7)


def test_default_build_is_the_documented_one():
    model = vit()
    assert model(torch.rand(2, 1, 28, 28)).shape == (2, 10)
    assert model.pos_embed.shape == (1, 7 * 7 + 1, 64)  # 49 patches and the class token
    assert len(model.blocks) == 4
    assert model.blocks[0].mlp.fc1.out_features == 128
    assert isinstance(model.blocks[0].norm1, nn.LayerNorm)
    assert isinstance(model.blocks[0].mlp.act, nn.GELU)
    assert vit(pool="mean").cls_token is None
    assert isinstance(vit(norm="rms").norm, nn.RMSNorm)


@pytest.mark.parametrize("pool", ["cls", "mean"])
def test_explicit_and_sdpa_attention_agree(pool):
    explicit = vit(attention="explicit", pool=pool, **SMALL).eval()
    sdpa = vit(attention="sdpa", pool=pool, **SMALL).eval()
    sdpa.load_state_dict(explicit.state_dict())  # same parameter names: only the attention maths differs
    x = torch.rand(3, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(sdpa(x), explicit(x))


@pytest.mark.parametrize("attention", ["explicit", "sdpa"])
@pytest.mark.parametrize("pool", ["cls", "mean"])
def test_symbolic_trace_gives_the_same_output(attention, pool):
    model = vit(image_size=32, in_channels=3, attention=attention, pool=pool, **SMALL).eval()
    traced = fx.symbolic_trace(model)
    targets = {node.target for node in traced.graph.nodes}
    if attention == "sdpa":
        assert F.scaled_dot_product_attention in targets
    else:
        assert "softmax" in targets
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(traced(x), model(x), rtol=0, atol=0)
        # The trace reads the batch size from the input, so another batch size works too.
        torch.testing.assert_close(traced(x[:1]), model(x[:1]), rtol=0, atol=0)


@pytest.mark.parametrize(
    ("options", "argument"),
    [
        ({"image_size": 30, "patch_size": 4}, "image_size"),
        ({"image_size": (28, 30), "patch_size": 4}, "image_size"),
        ({"patch_size": 0}, "patch_size"),
        ({"width": 30, "heads": 4}, "heads"),
        ({"heads": 0}, "heads"),
        ({"pool": "max"}, "pool"),
        ({"attention": "flash"}, "attention"),
        ({"activation": "tanh"}, "activation"),
        ({"norm": "batch"}, "norm"),
    ],
)
def test_bad_arguments_raise_value_error_naming_them(options, argument):
    with pytest.raises(ValueError, match=argument):
        vit(**options)


@pytest.mark.parametrize("options", [{}, {"pool": "mean", "attention": "sdpa", "norm": "rms"}])
def test_output_does_not_depend_on_other_samples(options):
    model = vit(**SMALL, **options).eval()
    x = torch.rand(3, 1, 28, 28)
    with torch.no_grad():
        alone, batched = model(x[:1]), model(x)
    torch.testing.assert_close(batched[:1], alone)


def test_the_builders_load_on_first_use_as_sp_models():
    import spikeport as sp

    assert sp.models.vit is vit
