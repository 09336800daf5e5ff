"""Transformers and the other analog ops: LayerNorm, RMSNorm, softmax, products, attention, LRN.

Under rate coding each analog op runs on the running means of its inputs and sends on the growth of
``t * f(mean)``; under FS it acts on decoded values; where its value enters synapses, signed spikes carry it.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import spikeport as sp
from spikeport.layers import AnalogProduct, MatMul, ScaledDotProductAttention, Softmax
from spikeport.models import vit
from spikeport.neurons.analog import AccumulatedOp
from spikeport.neurons.dynamics import signed_if_scan
from spikeport.simulation_clock import SimulationClock


def run_accumulated(op: nn.Module, streams: list[torch.Tensor], chunk: int) -> torch.Tensor:
    """``AccumulatedOp(op)`` over inputs given per step (``[T, B, ...]`` each), ``chunk`` steps at a time."""
    layer = AccumulatedOp(op)
    steps, batch = streams[0].shape[:2]
    layer.clock = SimulationClock(batch=batch)
    outputs = []
    for start in range(0, steps, chunk):
        length = min(chunk, steps - start)
        layer.clock.steps, layer.clock.offset = length, start
        out = layer(*[s[start : start + length].flatten(0, 1) for s in streams])
        outputs.append(out.reshape(length, batch, *out.shape[1:]))
    return torch.cat(outputs)


OPS = {
    "layer_norm": (lambda d: nn.LayerNorm(d), 1),
    "rms_norm": (lambda d: nn.RMSNorm(d), 1),
    "softmax": (lambda d: Softmax(-1), 1),
    "gelu": (lambda d: nn.GELU(), 1),
    "product": (lambda d: AnalogProduct(), 2),
}


@settings(max_examples=25, deadline=None)
@given(
    name=st.sampled_from(sorted(OPS)),
    steps=st.integers(1, 12),
    batch=st.integers(1, 3),
    width=st.integers(2, 6),
    chunk=st.integers(1, 5),
    seed=st.integers(0, 2**16),
)
def test_an_op_on_accumulated_inputs_sums_to_t_times_the_op_of_their_mean(
    name, steps, batch, width, chunk, seed
):
    torch.manual_seed(seed)
    make, arity = OPS[name]
    op = make(width).double()
    if isinstance(op, nn.LayerNorm | nn.RMSNorm):
        with torch.no_grad():
            op.weight.uniform_(0.5, 1.5)
    streams = [torch.randn(steps, batch, 3, width, dtype=torch.float64) for _ in range(arity)]
    out = run_accumulated(op, streams, chunk)
    elapsed = torch.arange(1, steps + 1, dtype=torch.float64).reshape(-1, 1, 1, 1)
    means = [s.cumsum(0) / elapsed for s in streams]
    expected = op(*[m.flatten(0, 1) for m in means]).reshape(out.shape) * elapsed
    torch.testing.assert_close(out.cumsum(0), expected, rtol=1e-9, atol=1e-9)


@settings(max_examples=15, deadline=None)
@given(steps=st.integers(1, 8), tokens=st.integers(1, 5), dim=st.integers(1, 4), seed=st.integers(0, 2**16))
def test_attention_and_matmul_on_accumulated_inputs(steps, tokens, dim, seed):
    torch.manual_seed(seed)
    q, k, v = (torch.randn(steps, 2, 3, tokens, dim, dtype=torch.float64) for _ in range(3))
    elapsed = torch.arange(1, steps + 1, dtype=torch.float64).reshape(-1, 1, 1, 1, 1)
    mq, mk, mv = (s.cumsum(0) / elapsed for s in (q, k, v))
    attention = run_accumulated(ScaledDotProductAttention(), [q, k, v], chunk=3).cumsum(0)
    expected = F.scaled_dot_product_attention(mq, mk, mv) * elapsed
    torch.testing.assert_close(attention, expected, rtol=1e-9, atol=1e-9)
    kt = k.transpose(-2, -1)
    product = run_accumulated(MatMul(), [q, kt], chunk=2).cumsum(0)
    torch.testing.assert_close(product, (mq @ (kt.cumsum(0) / elapsed)) * elapsed, rtol=1e-9, atol=1e-9)


@settings(max_examples=25, deadline=None)
@given(steps=st.integers(1, 40), threshold=st.floats(0.1, 4.0), seed=st.integers(0, 2**16))
def test_signed_spikes_carry_the_summed_input_rounded_to_the_threshold(steps, threshold, seed):
    torch.manual_seed(seed)
    currents = (torch.rand(steps, 5, 7, dtype=torch.float64) * 2 - 1) * threshold
    spikes = signed_if_scan(
        torch.zeros(5, 7, dtype=torch.float64), currents, torch.tensor(threshold, dtype=torch.float64)
    )
    assert set(torch.unique(spikes / threshold).tolist()) <= {-1.0, 0.0, 1.0}
    error = (spikes.cumsum(0) - currents.cumsum(0)).abs()
    assert bool((error <= threshold / 2 + 1e-9).all())


def tiny_vit(**options) -> nn.Module:
    torch.manual_seed(0)
    defaults = {"image_size": 8, "patch_size": 4, "width": 16, "depth": 2, "heads": 2}
    return vit(**{**defaults, **options}).eval()


def readout_errors(snn, model, x, steps=(16, 256)) -> list[float]:
    out = snn(x, timesteps=max(steps))
    with torch.no_grad():
        reference = model(x)
    return [float((out[t - 1] - reference).abs().max()) for t in steps]


def assert_matches_its_ann(model: nn.Module, x: torch.Tensor, method: str) -> None:
    """FS at K=12 close to the ANN; a rate code converging to it (T=256 four times closer than T=16)."""
    snn = sp.convert(model, x, method)
    if method == "fs":
        with torch.no_grad():
            assert float((snn(x, timesteps=12)[-1] - model(x)).abs().max()) < 0.05
        return
    early, late = readout_errors(snn, model, x[:8])
    assert late < 0.25 * early


@pytest.mark.parametrize(
    "options",
    [{}, {"attention": "sdpa", "pool": "mean"}, {"norm": "rms", "activation": "silu"}],
    ids=["explicit-cls", "sdpa-mean", "rms-silu"],
)
def test_a_tiny_vit_converts_and_converges_to_its_ann(options):
    model = tiny_vit(**options)
    x = torch.rand(32, 1, 8, 8)
    snn = sp.convert(model, x, "max")
    early, late = readout_errors(snn, model, x[:8])
    assert late < 0.25 * early
    assert late < 0.05


def test_a_tiny_vit_converts_with_fs_close_to_its_ann():
    model = tiny_vit()
    x = torch.rand(32, 1, 8, 8)
    snn = sp.convert(model, x, "fs", steps=12)
    with torch.no_grad():
        error = float((snn(x[:8])[-1] - model(x[:8])).abs().max())
    assert error < 0.1


def test_analog_ops_are_counted_apart_from_spikes():
    model = tiny_vit()
    x = torch.rand(16, 1, 8, 8)
    rate = sp.evaluate(sp.convert(model, x, "ecc"), x, timesteps=[2, 8], progress=False)
    kinds = {layer.op for layer in rate.analog_layers}
    assert {"LayerNorm", "MatMul", "Softmax", "GELU"} <= kinds
    assert rate.analog_ops_per_image[8] == pytest.approx(4 * rate.analog_ops_per_image[2])  # every step
    assert rate.ann_analog_ops_per_image > 0
    assert "analog ops/img" in rate.to_markdown()
    signed = {layer.name for layer in rate.layers if layer.signed}
    assert "blocks_0_norm1_spikes" in signed and "Signed spikes" in rate.to_markdown()
    fs = sp.evaluate(sp.convert(model, x, "fs", steps=8), x, timesteps=[8], progress=False)
    # once per inference, on decoded values: the ANN's own analog work (GELU is coded by FS neurons)
    assert fs.analog_ops_per_image[8] < rate.analog_ops_per_image[8]
    assert {layer.op for layer in fs.analog_layers} == {"LayerNorm", "MatMul", "Softmax"}
    assert fs.ann_analog_ops_per_image == rate.ann_analog_ops_per_image  # the same ANN whatever the method


@pytest.mark.parametrize("method", ["max", "fs"])
def test_a_converted_vit_saves_and_loads(tmp_path, method):
    model = tiny_vit()
    x = torch.rand(8, 1, 8, 8)
    snn = sp.convert(model, x, method)
    loaded = sp.load(sp.save(snn, tmp_path / "vit.spk"))
    torch.testing.assert_close(loaded(x), snn(x), rtol=0, atol=0)


class AlexNetStyle(nn.Module):
    """Conv, ReLU, local response normalisation and max-pooling, as AlexNet and Inception v1 stack them."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1)
        self.lrn = nn.LocalResponseNorm(3, alpha=1e-2, beta=0.75, k=1.0)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.fc = nn.Linear(8 * 4 * 4, 5)

    def forward(self, x):
        x = F.max_pool2d(self.lrn(F.relu(self.conv1(x))), 2)
        x = F.local_response_norm(F.relu(self.conv2(x)), 3)
        return self.fc(x.flatten(1))


@pytest.mark.parametrize("method", ["ecc", "fs"])
def test_local_response_normalisation_converts(method):
    torch.manual_seed(0)
    assert_matches_its_ann(AlexNetStyle().eval(), torch.rand(32, 1, 8, 8), method)


class InnerLogSoftmax(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(4, 4), nn.Linear(4, 2)

    def forward(self, x):
        return self.fc2(F.log_softmax(self.fc1(x), dim=-1))


class ConstantMatrix(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.matrix = nn.Parameter(torch.randn(4, 2))

    def forward(self, x):
        return torch.relu(self.fc(x)) @ self.matrix


@pytest.mark.parametrize(
    ("model", "words"),
    [
        (InnerLogSoftmax(), ["node 'log_softmax'", "log-softmax inside the network"]),
        (ConstantMatrix(), ["node 'matmul'", "constant matrix", "nn.Linear"]),
    ],
)
def test_unsupported_transformer_variants_are_one_line_errors(model, words):
    with pytest.raises(sp.ConversionError) as info:
        sp.convert(model, torch.rand(8, 4), "max")
    message = str(info.value)
    assert "\n" not in message
    for word in words:
        assert word in message


def test_nir_export_refuses_analog_ops_by_name(tmp_path):
    pytest.importorskip("nir")
    model = tiny_vit()
    snn = sp.convert(model, torch.rand(8, 1, 8, 8), "max")
    with pytest.raises(
        sp.ConversionError, match=r"node '\w+' \((LayerNorm|Softmax|MatMul|GELU)\) is an analog op"
    ):
        sp.export_nir(snn, tmp_path / "vit.nir")


def test_calibrated_names_the_first_op_it_cannot_fit():
    with pytest.raises(
        sp.ConversionError, match=r"node 'blocks_0_norm1' .* is not a ReLU; method 'calibrated'"
    ):
        sp.convert(tiny_vit(), torch.rand(8, 1, 8, 8), "calibrated")


class MobileBlock(nn.Module):
    """EfficientNet's MBConv in small: expand, depthwise conv, SiLU, squeeze-and-excitation gate, project."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(1, 8, 3, padding=1)
        self.expand = nn.Conv2d(8, 16, 1)
        self.depthwise = nn.Conv2d(16, 16, 3, padding=1, groups=16)
        self.reduce, self.restore = nn.Conv2d(16, 4, 1), nn.Conv2d(4, 16, 1)
        self.project = nn.Conv2d(16, 8, 1)
        self.fc = nn.Linear(8, 5)

    def forward(self, x):
        x = F.silu(self.stem(x))
        h = F.silu(self.depthwise(F.silu(self.expand(x))))
        gate = torch.sigmoid(self.restore(F.silu(self.reduce(h.mean(dim=(2, 3), keepdim=True)))))
        x = x + self.project(h * gate)
        return self.fc(x.mean(dim=(2, 3)))


@pytest.mark.parametrize("method", ["ecc", "fs"])
def test_efficientnet_style_blocks_convert(method):
    torch.manual_seed(0)
    assert_matches_its_ann(MobileBlock().eval(), torch.rand(32, 1, 8, 8), method)


class ThreeFactors(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b, self.c, self.out = (nn.Linear(4, 4) for _ in range(4))
        with torch.no_grad():  # every factor positive: a product that is never zero
            for layer in (self.a, self.b, self.c):
                layer.weight.uniform_(0.0, 0.5)
                layer.bias.fill_(0.2)

    def forward(self, x):
        return self.out(torch.relu(self.a(x)) * torch.relu(self.b(x)) * torch.relu(self.c(x)))


def test_a_product_of_products_is_an_analog_op_too():
    torch.manual_seed(0)
    model = ThreeFactors().eval()
    x = torch.rand(32, 4)
    snn = sp.convert(model, x, "percentile")
    assert sum(type(m.op).__name__ == "AnalogProduct" for m in snn.analog_layers().values()) == 2
    early, late = readout_errors(snn, model, x[:8])
    assert late < 0.25 * early


def test_smooth_activations_in_a_sequential_save_and_load(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(4, 6), nn.LayerNorm(6), nn.Linear(6, 6), nn.GELU(), nn.Linear(6, 3)
    ).eval()
    x = torch.rand(16, 4)
    snn = sp.convert(model, x, "ecc")
    loaded = sp.load(sp.save(snn, tmp_path / "seq.spk"))
    torch.testing.assert_close(loaded(x), snn(x), rtol=0, atol=0)


def test_a_smooth_activation_calibrates_on_both_signs():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 2)).eval()
    with torch.no_grad():
        model[0].bias.copy_(torch.tensor([-3.0, -3.0, -3.0, 0.5]))
    x = torch.rand(32, 4)
    early, late = readout_errors(sp.convert(model, x, "ecc"), model, x[:8], steps=(16, 1024))
    assert late < 0.1 * early


class SelfAttention(nn.Module):
    def __init__(self):
        super().__init__()
        self.q, self.out = nn.Linear(4, 4), nn.Linear(4, 2)

    def forward(self, x):
        q = self.q(x)
        return self.out(F.scaled_dot_product_attention(q, q, q)[:, 0])


@pytest.mark.parametrize("method", ["max", "fs"])
def test_attention_of_one_tensor_with_itself_converts(method):
    torch.manual_seed(0)
    snn = sp.convert(SelfAttention().eval(), torch.rand(8, 3, 4), method)
    assert len(snn.analog_layers()) == 1


class NanoGPTNorm(nn.Module):
    """nanoGPT's LayerNorm: the normalised shape read off the weight."""

    def __init__(self):
        super().__init__()
        self.fc, self.out = nn.Linear(4, 4), nn.Linear(4, 2)
        self.weight, self.bias = nn.Parameter(torch.ones(4) * 1.5), nn.Parameter(torch.zeros(4))

    def forward(self, x):
        return self.out(F.layer_norm(self.fc(x), self.weight.shape, self.weight, self.bias, 1e-5))


def test_layer_norm_with_its_shape_read_off_the_weight():
    torch.manual_seed(0)
    model = NanoGPTNorm().eval()
    x = torch.rand(16, 4)
    early, late = readout_errors(sp.convert(model, x, "ecc"), model, x[:8])
    assert late < 0.25 * early
