"""FS (few-spikes) temporal coding: the binary code quantises ReLU exactly, networks and timing model."""

import pytest
import torch
import torch.nn.functional as F
from helpers import GatedMLP, Residual, ann_with_fs_functions, randomize_batchnorms
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import spikeport as sp
from spikeport.assembly.temporal import coded_depth
from spikeport.neurons.fs import FSCode, FSNeuron, binary_code, binary_digits, fs_scan
from spikeport.simulation_clock import SimulationClock


def quantised_relu(x: torch.Tensor, scale: torch.Tensor, steps: int, rounding: str) -> torch.Tensor:
    """The K-bit quantiser the binary FS code must equal: levels of scale / 2^K, clipped below scale."""
    start = 2.0 ** -(steps + 1) if rounding == "nearest" else 0.0
    levels = torch.floor((x / scale + start) * 2.0**steps).clamp(0, 2**steps - 1)
    return levels / 2.0**steps * scale


@settings(max_examples=60, deadline=None)
@given(
    steps=st.integers(1, 16),
    rounding=st.sampled_from(["floor", "nearest"]),
    scale=st.floats(0.01, 100.0),
    seed=st.integers(0, 2**16),
)
def test_binary_code_is_an_exact_k_bit_relu(steps, rounding, scale, seed):
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(2000, generator=g) * 2.4 - 0.7) * scale
    # values on the quantiser's level boundaries, where a rounding slip would show
    boundaries = (torch.arange(0, 2**steps + 1) / 2.0**steps) * scale
    x = torch.cat([x, boundaries, boundaries - 2.0 ** -(steps + 1) * scale])
    s = torch.tensor(scale)
    spikes, decoded = fs_scan(x / s, binary_code(steps, rounding))
    assert torch.equal(decoded * s, quantised_relu(x, s, steps, rounding))
    assert set(spikes.unique().tolist()) <= {0.0, 1.0}  # at most one spike per neuron per step


def fs_scan_by_products(x: torch.Tensor, code) -> tuple[torch.Tensor, torch.Tensor]:
    """The FS code step by step as written down: spike, multiply, then subtract and add."""
    thresholds, resets, weights = code.tensors(x.dtype)
    v = x + code.start if code.start else x.clone()
    spikes, decoded = [], torch.zeros_like(x)
    for t in range(code.steps):
        z = (v >= thresholds[t]).to(x.dtype)
        v = v - z * resets[t]
        decoded = decoded + z * weights[t]
        spikes.append(z)
    return torch.stack(spikes), decoded + code.offset


@settings(max_examples=60, deadline=None)
@given(
    steps=st.integers(1, 10),
    dtype=st.sampled_from([torch.float32, torch.float64]),
    seed=st.integers(0, 2**16),
    start=st.sampled_from([0.0, 0.5**7, 0.1]),
    offset=st.sampled_from([0.0, -0.3]),
)
def test_fs_scan_gives_the_numbers_of_the_code_as_written(steps, dtype, seed, start, offset):
    """Scaled subtraction/addition (one pass each) equals multiplying first, bit for bit, for any code."""
    g = torch.Generator().manual_seed(seed)
    parameters = [tuple((torch.rand(steps, generator=g, dtype=torch.float64) * 2).tolist()) for _ in range(3)]
    code = FSCode(*parameters, start=start, offset=offset)
    x = (torch.rand(500, generator=g, dtype=torch.float64) * 4 - 1).to(dtype)
    spikes, decoded = fs_scan(x, code)
    expected_spikes, expected = fs_scan_by_products(x, code)
    assert torch.equal(spikes, expected_spikes) and torch.equal(decoded, expected)


@settings(max_examples=60, deadline=None)
@given(
    steps=st.integers(1, 22),
    rounding=st.sampled_from(["floor", "nearest"]),
    dtype=st.sampled_from([torch.float32, torch.float64]),
    per_channel=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_binary_neuron_computes_what_its_steps_compute(steps, rounding, dtype, per_channel, seed):
    """The closed form of the binary code: the decoded output and the spike counts of the K-step scan, bit
    for bit, on level boundaries, outside the range, and for NaN and infinities (no spike)."""
    g = torch.Generator().manual_seed(seed)
    scale = (
        (torch.rand(3, 1, generator=g, dtype=dtype) * 4 + 0.1)
        if per_channel
        else torch.tensor(1.7, dtype=dtype)
    )
    boundaries = torch.arange(0, 2 ** min(steps, 10) + 1, dtype=dtype) / 2.0 ** min(steps, 10)
    special = torch.tensor([float("nan"), float("inf"), -float("inf"), -0.0, 1.0, 2.0**-steps], dtype=dtype)
    values = torch.cat([torch.rand(300, generator=g, dtype=dtype) * 1.6 - 0.3, boundaries, special])
    x = values[: (len(values) // 3) * 3].reshape(-1, 3, 1) * scale  # [B, 3, 1]
    neuron = FSNeuron("relu", scale, rounding=rounding)
    neuron.fanout = torch.ones(3, dtype=torch.float64)
    neuron.clock = SimulationClock(steps=steps, batch=x.shape[0], recording=True)
    neuron.reset_state(record_steps=steps)
    out = neuron(x)
    spikes, decoded = fs_scan(x / scale, binary_code(steps, rounding))
    assert torch.equal(out, decoded * scale)
    assert torch.equal(neuron.spikes_per_step, spikes.reshape(steps, -1).sum(1).double())


def test_binary_digits_are_the_spikes_of_the_binary_code():
    steps = 6
    levels = torch.arange(2**steps)
    spikes, _ = fs_scan(levels.float() / 2**steps, binary_code(steps, "floor"))
    assert torch.equal(binary_digits(levels, steps).float(), spikes)


def quantised_ann(model: nn.Module, snn: sp.SpikingNetwork, steps: int) -> nn.Module:
    """The canonical ANN with every ReLU replaced by the K-bit quantiser its FS neurons implement."""
    return ann_with_fs_functions(
        snn, lambda neuron: lambda x: quantised_relu(x, neuron.scale, steps, neuron.rounding)
    )


class MaxPoolResidual(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(2, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 4 * 4, 5)

    def forward(self, x):
        x = F.relu(self.conv1(x))
        x = F.max_pool2d(x, 2)
        x = torch.relu(self.conv2(x) + x)
        return self.fc(x.flatten(1))


@pytest.mark.parametrize("channelwise", [False, True])
@pytest.mark.parametrize("steps", [3, 8])
def test_relu_network_computes_the_k_bit_quantised_ann(channelwise, steps):
    torch.manual_seed(0)
    for model, x in (
        (randomize_batchnorms(Residual()).eval(), torch.rand(32, 1, 8, 8)),
        (MaxPoolResidual().eval(), torch.rand(32, 2, 8, 8)),
    ):
        snn = sp.convert(model, x, "fs", channelwise=channelwise, steps=steps)
        expected = quantised_ann(model, snn, steps)(x)
        torch.testing.assert_close(snn(x)[-1], expected, rtol=1e-5, atol=1e-5)
        assert snn(x).shape == (1, 32, 5)


def test_depthwise_network_saves_and_loads_exactly(tmp_path):
    torch.manual_seed(4)
    model = nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(4, 4, 3, padding=1, groups=4),  # depthwise
        nn.ReLU(),
        nn.Conv2d(4, 8, 1, groups=2),  # grouped
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(8 * 6 * 6, 3),
    ).eval()
    x = torch.rand(12, 2, 6, 6)
    snn = sp.convert(model, x, "fs", steps=10, channelwise=True)
    torch.testing.assert_close(snn(x)[-1], quantised_ann(model, snn, 10)(x), rtol=1e-5, atol=1e-5)
    loaded = sp.load(sp.save(snn, tmp_path / "fs.spk"))
    assert isinstance(loaded.coding, sp.TemporalCoding)
    assert torch.equal(loaded(x, timesteps=6), snn(x, timesteps=6))
    first = sp.evaluate(snn, x, timesteps=[4, 10], progress=False)
    assert sp.evaluate(loaded, x, timesteps=[4, 10], progress=False) == first


def test_fs_max_pool_sends_the_code_of_its_winner():
    torch.manual_seed(1)
    model = MaxPoolResidual().eval()
    x = torch.rand(16, 2, 8, 8)
    steps = 5
    snn = sp.convert(model, x, "fs", steps=steps)
    sim = snn.simulate(x, steps, record=True)
    first = next(m for m in snn.graph_module.modules() if isinstance(m, FSNeuron))
    pool_name = next(name for name in sim.spikes if "max_pool" in name)
    # brute force: code every neuron before the pool, pick each window's winner, count its spikes per step
    current = snn.ann.conv1(x)
    spikes, decoded = fs_scan(current / first.scale, binary_code(steps))
    windows = F.max_pool2d(decoded, 2, return_indices=True)[1]
    winners = torch.stack([s.flatten(2).gather(2, windows.flatten(2)) for s in spikes])
    assert torch.equal(sim.spikes[pool_name], winners.sum(dim=(1, 2, 3)).double())


def test_latency_counts_coded_layers_on_the_longest_path():
    model = MaxPoolResidual().eval()
    x = torch.rand(8, 2, 8, 8)
    snn = sp.convert(model, x, "fs", steps=4)
    assert coded_depth(snn.graph_module) == 2  # conv1's neurons, then those after the add
    ev = sp.evaluate(snn, x, timesteps=[2, 4], progress=False)
    assert ev.coding == "temporal"
    assert ev.latency_steps == {2: 4, 4: 8}
    assert ev.throughput == {2: 0.5, 4: 0.25}
    coded_input = sp.convert(model, x, "fs", steps=4, input_coding="fs")
    assert coded_depth(coded_input.graph_module) == 3


def test_spikes_and_sops_are_counted_from_the_code():
    torch.manual_seed(2)
    model = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3)).eval()
    x = torch.rand(40, 6)
    snn = sp.convert(model, x, "fs", steps=6, input_coding="fs")
    ev = sp.evaluate(snn, x, timesteps=[6], progress=False)
    coder = snn.graph_module.get_submodule("input_coder")
    input_spikes, coded = fs_scan(x / coder.scale, binary_code(6))
    neuron = snn.graph_module.get_submodule("1")
    spikes, _ = fs_scan(model[0](coded * coder.scale) / neuron.scale, binary_code(6))
    per_image = spikes.sum() / 40
    assert ev.layers[1].spikes_per_image[6] == pytest.approx(float(per_image))
    # every spike of the hidden layer reaches 3 output synapses, every input spike 5
    assert ev.sops_per_image[6] == pytest.approx(float(3 * per_image + 5 * input_spikes.sum() / 40))
    assert ev.macs_per_image[6] == 0  # the input is coded by spikes: no analog input current
    assert ev.spikes_per_neuron[6] == pytest.approx((float(per_image) + float(input_spikes.sum() / 40)) / 11)


def test_analog_input_counts_its_synapses_once():
    model = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3)).eval()
    x = torch.rand(10, 6)
    ev = sp.evaluate(sp.convert(model, x, "fs"), x, timesteps=[4, 8], progress=False)
    assert ev.macs_per_image == {4: 30, 8: 30}


def test_input_coding_refuses_negative_inputs():
    model = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))
    with pytest.raises(sp.ConversionError, match="input_coding='analog'"):
        sp.convert(model, torch.randn(10, 6), "fs", input_coding="fs")


class SiLUNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(6, 8)
        self.fc2 = nn.Linear(8, 3)

    def forward(self, x):
        return self.fc2(F.silu(self.fc1(x)))


@pytest.mark.parametrize("method", ["rmp", "ecc", "max", "percentile"])
def test_rate_methods_convert_smooth_activations_and_products(method):
    torch.manual_seed(0)
    x = torch.rand(10, 6)
    for model in (SiLUNet().eval(), GatedMLP().eval()):
        snn = sp.convert(model, x, method)
        error = (snn(x, timesteps=256)[[15, 255]] - model(x)).abs().amax(dim=(1, 2))
        assert error[1] < 0.5 * error[0]  # rates of the exact ops converge to the ANN
        assert error[1] < 0.05


def test_products_are_analog_ops_in_fs():
    torch.manual_seed(3)
    model = GatedMLP().eval()
    x = torch.rand(20, 6)
    snn = sp.convert(model, x, "fs", steps=12)
    torch.testing.assert_close(snn(x)[-1], quantised_ann(model, snn, 12)(x), rtol=1e-5, atol=1e-5)
    ev = sp.evaluate(snn, x, timesteps=[12], progress=False)
    # analog input into two layers (2 x 6 x 8 synapses, once per image); the 8 products are analog ops, and
    # their values reach fc2 as signed spikes
    assert ev.macs_per_image[12] == 2 * 6 * 8
    assert ev.analog_ops_per_image[12] == 8
    assert [layer.op for layer in ev.analog_layers] == ["AnalogProduct"]


def test_temporal_evaluation_round_trips_through_json(tmp_path):
    model = MaxPoolResidual().eval()
    x = torch.rand(8, 2, 8, 8)
    ev = sp.evaluate(sp.convert(model, x, "fs"), x, timesteps=[2, 8], progress=False)
    back = sp.Evaluation.from_json(ev.to_json(tmp_path / "ev.json"))
    assert back == ev
    assert "latency" in ev.to_markdown()


def test_unsupported_code_length_is_a_clear_error():
    model = MaxPoolResidual().eval()
    x = torch.rand(8, 2, 8, 8)
    snn = sp.convert(model, x, "fs")
    with pytest.raises(ValueError, match="K = 1, 2"):
        sp.evaluate(snn, x, timesteps=[40], progress=False)
