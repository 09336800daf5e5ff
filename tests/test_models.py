"""The VGG and ResNet builders: both flavours build, trace and convert in seconds; residual nets converge."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import spikeport as sp
from spikeport.models import resnet, vgg
from spikeport.models.resnet import BasicBlock
from spikeport.neurons import SpikingMaxPool
from tests.helpers import randomize_batchnorms, readout_errors

BUILDS = {
    "vgg11": lambda **kw: vgg(11, width=4, **kw),
    "vgg16": lambda **kw: vgg(16, width=4, **kw),
    "resnet20": lambda **kw: resnet(20, width=4, **kw),
    "resnet18-imagenet": lambda **kw: resnet(18, width=4, stem="imagenet", **kw),
    "resnet34-imagenet": lambda **kw: resnet(34, width=2, stem="imagenet", **kw),
}
FRIENDLY = {"batchnorm": False, "bias": False, "pool": "avg"}  # RMP-SNN's conversion-friendly variant


@pytest.mark.parametrize("friendly", [False, True], ids=["usual", "conversion-friendly"])
@pytest.mark.parametrize("name", list(BUILDS))
def test_builds_traces_and_converts(name, friendly):
    torch.manual_seed(0)
    model = randomize_batchnorms(BUILDS[name](num_classes=7, in_channels=2, **(FRIENDLY if friendly else {})))
    x = torch.rand(8, 2, 32, 32)
    assert model(x).shape == (8, 7)
    if friendly:
        assert not any(isinstance(m, nn.BatchNorm2d | nn.MaxPool2d) for m in model.modules())
        assert all(
            getattr(m, "bias", None) is None for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)
        )
    snn = sp.convert(model, x, "ecc")
    assert snn(x, timesteps=4).shape == (4, 8, 7)
    max_pools = sum(isinstance(m, nn.MaxPool2d) for m in model.modules())
    spiking_pools = sum(isinstance(layer, SpikingMaxPool) for layer in snn.spiking_layers().values())
    assert spiking_pools == max_pools
    relus = sum(isinstance(m, nn.ReLU) for m in model.modules())
    assert len(snn.neurons()) >= relus  # functional ReLUs of the residual blocks count too


def test_resnet20_has_the_expected_shape():
    model = resnet(20)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]
    assert len(convs) + 1 == 20  # 19 convs and the linear read-out
    assert [m.out_channels for m in convs][-1] == 64


@pytest.mark.parametrize("method", ["max[reset=soft]", "ecc", "rmp"])
def test_residual_net_approaches_the_ann_as_t_grows(method):
    torch.manual_seed(1)
    model = randomize_batchnorms(resnet(20, width=4, num_classes=5, in_channels=1))
    x = torch.rand(32, 1, 12, 12)
    snn = sp.convert(model, x, method)
    errors = readout_errors(snn, model, x, (32, 256, 1024))
    assert errors[2] < errors[1] < errors[0]
    assert errors[2] < 0.1 * model(x).abs().mean().item()


@settings(max_examples=8)
@given(
    st.integers(0, 1000),
    st.integers(2, 5),
    st.booleans(),
    st.sampled_from(["rmp", "rmp[current=mean]", "ecc", "max[reset=soft]"]),
)
def test_random_residual_blocks_approach_the_ann(seed, width, projection, method):
    """Identity or 1x1-conv+BN shortcuts, random BN statistics: the read-out error falls towards 0 with T."""
    torch.manual_seed(seed)
    out_width, stride = (width + 2, 2) if projection else (width, 1)
    model = nn.Sequential(
        nn.Conv2d(1, width, 3, padding=1),
        nn.ReLU(),
        BasicBlock(width, out_width, stride, batchnorm=True, bias=True),
        BasicBlock(out_width, out_width, 1, batchnorm=True, bias=False),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(out_width, 3),
    )
    model = randomize_batchnorms(model, seed)
    x = torch.rand(16, 1, 8, 8)
    snn = sp.convert(model, x, method)
    errors = readout_errors(snn, model, x, (32, 1024))
    assert errors[1] <= errors[0] + 1e-6
    assert errors[1] < 0.1 * model(x).abs().mean().item() + 1e-6


def test_unknown_depths_and_options_are_refused():
    with pytest.raises(ValueError, match="VGG depth"):
        vgg(13)
    with pytest.raises(ValueError, match="ResNet depth"):
        resnet(50)
    with pytest.raises(ValueError, match="stem"):
        resnet(18, stem="tiny")
    with pytest.raises(ValueError, match="pool"):
        vgg(11, pool="min")


def test_models_with_string_annotations_save_and_load(tmp_path):
    """The builders' files use ``from __future__ import annotations``; their converted networks must still save."""
    model = resnet(20, width=2, in_channels=1, num_classes=3).eval()
    x = torch.rand(4, 1, 8, 8)
    snn = sp.convert(model, x, "ecc")
    loaded = sp.load(sp.save(snn, tmp_path / "net.spk"))
    assert torch.equal(loaded(x, timesteps=8), snn(x, timesteps=8))


def test_the_builders_follow_torchvisions_conventions_after_a_plain_import():
    """``import spikeport as sp`` is enough for ``sp.models``, and ``num_classes=`` names the outputs."""
    import subprocess
    import sys

    code = (
        "import spikeport as sp, torch; "
        "m = sp.models.resnet20(num_classes=7, width=2); "
        "print(m(torch.rand(1, 3, 32, 32)).shape[-1], sp.models.vit(num_classes=5, image_size=8, patch_size=4, "
        "in_channels=1, width=8, depth=1, heads=2)(torch.rand(1, 1, 8, 8)).shape[-1])"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["7", "5"]
