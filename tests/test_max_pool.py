"""The spiking max-pool: exact gating by accumulated input, convergence to the ANN's max, honest counts."""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import spikeport as sp
from spikeport.graph.prepare import prepare
from spikeport.layers import PaddedMaxPool2d
from spikeport.neurons import SpikingMaxPool, gated_max_pool, max_pool
from tests.helpers import randomize_batchnorms, readout_errors
from tests.test_sops import brute_force_fanout


def spike_trains(seed: int, steps: int, theta: float, shape=(2, 3, 6, 6), rate: float = 0.4):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(steps, *shape, generator=g) < rate * torch.rand(shape, generator=g)).float() * theta


def run_gated(inputs: torch.Tensor, pool: nn.Module, chunk: int) -> torch.Tensor:
    total = torch.zeros(inputs.shape[1:], dtype=torch.float64)
    last = pool(total)
    outs = []
    for start in range(0, inputs.shape[0], chunk):
        total, last, out = gated_max_pool(total, last, inputs[start : start + chunk], pool)
        outs.append(out)
    return torch.cat(outs)


@settings(max_examples=40, deadline=None)
@given(
    st.integers(0, 10_000),
    st.integers(1, 60),
    st.floats(0.01, 5.0),
    st.sampled_from([(2, 2, 0), (3, 2, 1), (3, 1, 1), (2, 1, 0)]),
    st.integers(1, 17),
)
def test_output_so_far_is_the_max_of_the_input_so_far_and_binary(seed, steps, theta, window, chunk):
    kernel, stride, padding = window
    pool = nn.MaxPool2d(kernel, stride, padding)
    inputs = spike_trains(seed, steps, theta)
    out = run_gated(inputs, pool, chunk)
    so_far = inputs.double().cumsum(0)
    expected = pool(so_far.flatten(0, 1)).reshape(out.shape)
    assert torch.equal(out.cumsum(0), expected)  # exact, whatever the chunking
    assert bool(((out == 0) | (out == torch.tensor(theta).double())).all())  # spikes in, spikes out


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 60), st.integers(1, 17), st.booleans())
def test_counting_spikes_gives_the_same_outputs_as_summing_them(seed, steps, chunk, per_channel):
    g = torch.Generator().manual_seed(seed)
    unit = torch.rand(3 if per_channel else 1, generator=g).mul(4).add(0.01).reshape(-1, 1, 1)
    inputs = spike_trains(seed, steps, 1.0) * unit  # float32 spikes of one size per channel
    pool = nn.MaxPool2d(3, 2, 1)
    counts = torch.zeros(inputs.shape[1:])
    last = pool(counts)
    outs = []
    for start in range(0, steps, chunk):
        counts, last, out = gated_max_pool(counts, last, inputs[start : start + chunk], pool, unit)
        outs.append(out)
    assert torch.equal(torch.cat(outs), run_gated(inputs, pool, chunk).float())  # bit for bit


@given(st.integers(0, 10_000), st.integers(1, 40))
def test_analog_input_converges_to_the_max_of_the_means(seed, steps):
    g = torch.Generator().manual_seed(seed)
    pool = nn.MaxPool1d(3, 2, ceil_mode=True)
    inputs = torch.randn(steps, 4, 2, 9, generator=g)
    out = run_gated(inputs, pool, chunk=7)
    assert torch.allclose(out.mean(0), pool(inputs.double().mean(0)), atol=1e-12)
    assert torch.equal(run_gated(inputs, pool, chunk=1), out)  # summed step by step in any chunking


class PoolNet(nn.Module):
    """Max-pools as users write them: one module called twice, functional, before and after the ReLU."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(6)
        self.conv2 = nn.Conv2d(6, 8, 3, padding=1)
        self.conv3 = nn.Conv2d(8, 8, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(8 * 2 * 2, 4)

    def forward(self, x):
        x = self.pool(F.relu(self.bn1(self.conv1(x))))  # 16 -> 8
        x = F.relu(self.pool(self.conv2(x)))  # pool the currents, then the neurons: 8 -> 4
        x = F.max_pool2d(torch.relu(self.conv3(x)), kernel_size=3, stride=2, padding=1)  # 4 -> 2
        return self.fc(x.flatten(1))


@pytest.mark.parametrize("method", ["max", "rmp", "ecc"])
def test_max_pooled_net_converges_to_the_ann(method):
    torch.manual_seed(0)
    model = randomize_batchnorms(PoolNet())
    x = torch.rand(48, 1, 16, 16)
    snn = sp.convert(model, x, method, reset="soft")
    pools = [name for name, layer in snn.spiking_layers().items() if isinstance(layer, SpikingMaxPool)]
    assert len(pools) == 3  # the shared module became one stateful pool per call site
    errors = readout_errors(snn, model, x, (16, 128, 1024))
    assert errors[2] < errors[1] < errors[0]
    assert errors[2] < 0.05 * model(x).abs().mean().item()


def test_pools_after_neurons_count_spikes_and_match_the_summing_pool(monkeypatch, tmp_path):
    torch.manual_seed(2)
    model = randomize_batchnorms(PoolNet())
    x = torch.rand(16, 1, 16, 16)
    snn = sp.convert(model, x, "percentile", reset="soft")
    pools = [layer for layer in snn.spiking_layers().values() if isinstance(layer, SpikingMaxPool)]
    assert [p.spike_unit is not None for p in pools] == [True, False, True]  # the 2nd pools currents
    counted = snn.simulate(x, 40, chunk=3).readout
    assert torch.equal(sp.load(sp.save(snn, tmp_path / "n.spk")).simulate(x, 40, chunk=3).readout, counted)
    monkeypatch.setattr(max_pool, "EXACT_FLOAT32_COUNTS", 20)  # counts move to float64 after 20 steps
    assert torch.equal(snn.simulate(x, 40, chunk=3).readout, counted)
    for p in pools:
        p.spike_unit = None  # the general float64 sums
    assert torch.equal(snn.simulate(x, 40, chunk=3).readout, counted)


def test_max_pool_events_cause_the_sops_of_the_layer_after_it():
    torch.manual_seed(1)
    conv2 = nn.Conv2d(3, 2, 2)
    model = nn.Sequential(
        nn.Conv2d(1, 3, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        conv2,
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(8, 3),
    ).eval()
    x = torch.rand(4, 1, 6, 6)
    snn = sp.convert(model, x, "max", reset="soft")
    neuron, pool = snn.spiking_layers()["1"], snn.spiking_layers()["2"]
    assert torch.equal(neuron.fanout, torch.ones(3 * 6 * 6, dtype=torch.float64))  # one accumulation each
    assert torch.equal(pool.fanout, brute_force_fanout(conv2, (3, 3, 3)).flatten().double())
    events: list[torch.Tensor] = []
    hook = pool.register_forward_hook(lambda m, i, out: events.append(out.ne(0).sum(0).flatten().double()))
    sim = snn.simulate(x, 30, record=True, chunk=30)
    hook.remove()
    assert sim.sops["2"].sum().item() == (events[0] @ pool.fanout).item()
    assert sim.spikes["2"].sum().item() == events[0].sum().item()
    assert sim.spikes["2"].sum() <= sim.spikes["1"].sum()  # a pool passes on at most what it receives


class PoolFirst(nn.Module):
    """A max-pool on the analog input, before any neurons."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.fc = nn.Linear(4 * 2 * 2, 3)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(F.max_pool2d(x, 2))).flatten(1))


def test_pool_on_the_analog_input_runs_once_per_batch_and_changes_nothing():
    model = PoolFirst().double().eval()
    # Dyadic inputs keep t * x exact, so the per-step pool (slow path) sees exactly the plain max too.
    x = torch.randint(0, 9, (5, 1, 8, 8)).double() / 8
    snn = sp.convert(model, x, "percentile")
    assert snn.static_input
    fast = snn.simulate(x, 20, record=True)
    snn.separable_prefix = False
    slow = snn.simulate(x, 20, record=True)
    assert torch.allclose(fast.readout, slow.readout, rtol=0, atol=1e-12)
    neurons = snn.neurons()
    assert all(torch.equal(fast.spikes[k], slow.spikes[k]) for k in neurons)
    # Analog maxima re-injected every step are MACs, as the analog input itself is.
    pool_fanout = next(iter(snn.spiking_layers().values())).fanout.sum()
    assert torch.equal(fast.input_macs, (snn.input_fanout.sum() + pool_fanout).expand(20) * 5)


@given(st.integers(0, 1000), st.booleans())
def test_batchnorm_after_relu_folds_across_a_max_pool_when_its_scale_is_positive(seed, negative):
    torch.manual_seed(seed)
    bn = nn.BatchNorm2d(3)
    model = nn.Sequential(
        nn.Conv2d(1, 3, 3), nn.ReLU(), bn, nn.MaxPool2d(2), nn.Conv2d(3, 2, 2), nn.Flatten(), nn.Linear(8, 2)
    )
    randomize_batchnorms(model, seed)
    with torch.no_grad():
        bn.weight.copy_(torch.rand(3) + 0.1)
        if negative:
            bn.weight[1] = -0.5
    x = torch.rand(6, 1, 9, 9)
    prepared = prepare(model, x)
    kept = [n for n in prepared.graph_module.modules() if isinstance(n, nn.BatchNorm2d)]
    assert len(kept) == (1 if negative else 0)
    assert torch.allclose(prepared.graph_module(x), model(x), atol=1e-5)


def test_max_to_avg_swaps_the_pools_says_so_and_keeps_the_original_as_reference():
    torch.manual_seed(0)
    model = randomize_batchnorms(PoolNet())
    x = torch.rand(32, 1, 16, 16)
    with pytest.warns(UserWarning, match="replaced 3 max-pool"):
        snn = sp.convert(model, x, "max[max_to_avg=true, reset=soft]")
    assert not any(isinstance(layer, SpikingMaxPool) for layer in snn.spiking_layers().values())
    assert any("max_to_avg" in note for note in snn.info["notes"])
    assert torch.allclose(snn.ann(x), model(x), atol=1e-5)  # agreement is measured against the max-pooled ANN
    averaged = snn(x, timesteps=2048)[-1]
    assert (averaged - model(x)).abs().mean() > 1e-3  # a different network, honestly reported as such


def test_max_to_avg_refuses_dilated_pools():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.MaxPool2d(2, dilation=2), nn.Flatten())
    with pytest.raises(sp.ConversionError, match="dilated"):
        sp.convert(model, torch.rand(4, 1, 9, 9), "max", max_to_avg=True)


class SamePadded(nn.Module):
    """TensorFlow's 'same' max-pool with the extra pixel at the end (what the Keras frontend emits)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.pool = PaddedMaxPool2d((0, 1, 0, 1), 2, 1)
        self.fc = nn.Linear(4 * 6 * 6, 3)

    def forward(self, x):
        return self.fc(self.pool(torch.relu(self.conv(x))).flatten(1))


def test_unevenly_padded_max_pool_converts_and_refuses_max_to_avg():
    torch.manual_seed(0)
    model = SamePadded().eval()
    x = torch.rand(32, 1, 8, 8)
    snn = sp.convert(model, x, "ecc")
    assert isinstance(snn.spiking_layers()["pool"], SpikingMaxPool)
    errors = readout_errors(snn, model, x, (16, 512))
    assert errors[1] < errors[0] / 4 and errors[1] < 0.02 * model(x).abs().mean().item()
    with pytest.raises(sp.ConversionError, match="pads unevenly"):
        sp.convert(model, x, "ecc", max_to_avg=True)
