"""Conversion and simulation: the SNN approaches the ANN, and the simulator's shortcuts change nothing."""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

import spikeport as sp
from spikeport.network import CPU_SAMPLES_PER_CALL
from tests.helpers import Residual, randomize_batchnorms


def random_chain(seed: int, depth: int, width: int) -> nn.Module:
    torch.manual_seed(seed)
    layers: list[nn.Module] = [nn.Flatten()]
    features = 12
    for _ in range(depth):
        layers += [nn.Linear(features, width), nn.ReLU()]
        features = width
    layers.append(nn.Linear(features, 3))
    return nn.Sequential(*layers).eval()


@pytest.mark.parametrize("method", ["rmp", "max", "percentile"])
def test_every_method_converges_on_the_residual_net(method):
    model = randomize_batchnorms(Residual())
    x = torch.rand(64, 1, 8, 8)
    snn = sp.convert(model, x, method, reset="soft")
    errors = [(snn(x, timesteps=T)[-1] - model(x)).abs().max().item() for T in (16, 128, 1024)]
    scale = model(x).abs().max().item()
    assert errors[0] > errors[2]
    # Only 'max' keeps every activation below its threshold, so only it must get very close; the others
    # clip their largest activations by design and stay within a few percent.
    assert errors[2] < (0.02 if method == "max" else 0.1) * scale


@given(st.integers(0, 1000), st.integers(1, 3), st.integers(4, 16))
def test_random_chain_approaches_the_ann(seed, depth, width):
    model = random_chain(seed, depth, width)
    x = torch.rand(32, 12)
    snn = sp.convert(model, x, "rmp", calibration_timesteps=16)
    readout = snn(x, timesteps=512)
    error = lambda T: (readout[T - 1] - model(x)).abs().mean().item()  # noqa: E731
    assert error(512) <= error(16) + 1e-6
    assert error(512) < 0.1 * model(x).abs().mean().item() + 1e-3


def float64_net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return randomize_batchnorms(Residual(), seed).double()


@pytest.mark.parametrize("encoding", ["analog", "poisson"])
def test_prefix_of_a_long_run_equals_a_short_run(encoding):
    model = float64_net()
    x = torch.rand(6, 1, 8, 8, dtype=torch.float64)
    snn = sp.convert(model, x, "percentile", encoding=encoding, seed=3)
    long = snn(x, timesteps=40)
    for T in (1, 7, 23):
        assert torch.allclose(long[:T], snn(x, timesteps=T), rtol=0, atol=1e-12)


@given(st.integers(1, 13), st.sampled_from(["soft", "hard"]), st.sampled_from(["analog", "poisson"]))
def test_chunked_equals_unchunked(chunk, reset, encoding):
    model = float64_net()
    x = torch.rand(5, 1, 8, 8, dtype=torch.float64)
    snn = sp.convert(model, x, "max", reset=reset, encoding=encoding)
    whole = snn.simulate(x, 30, record=True, chunk=30)
    parts = snn.simulate(x, 30, record=True, chunk=chunk)
    assert torch.allclose(whole.readout, parts.readout, rtol=0, atol=1e-12)
    for name in whole.spikes:
        assert torch.equal(whole.spikes[name], parts.spikes[name])
        assert torch.equal(whole.sops[name], parts.sops[name])


def test_memory_budget_sets_the_chunk_length():
    model = Residual()
    x = torch.rand(4, 1, 8, 8)
    snn = sp.convert(model, x, "max", memory_budget=1)
    assert snn.chunk_steps(batch=4, timesteps=100, device="cuda") == 1
    snn.memory_budget = 1 << 40
    assert snn.chunk_steps(batch=4, timesteps=100, device="cuda") == 100
    # Cache-friendly calls on CPU: about CPU_SAMPLES_PER_CALL samples, never less than one step.
    assert snn.chunk_steps(batch=4, timesteps=100, device="cpu") == CPU_SAMPLES_PER_CALL // 4
    assert snn.chunk_steps(batch=1000, timesteps=100, device="cpu") == 1


@pytest.mark.parametrize(
    "relu",
    [
        nn.ReLU(),
        nn.ReLU(inplace=True),
        F.relu,
        torch.relu,
        lambda x: x.relu(),
        lambda x: F.relu(x, inplace=True),
    ],
)
def test_every_relu_spelling_becomes_neurons(relu):
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.fc2 = nn.Linear(6, 8), nn.Linear(8, 3)
            self.act = relu if isinstance(relu, nn.Module) else None

        def forward(self, x):
            h = self.fc1(x)
            return self.fc2(self.act(h) if self.act is not None else relu(h))

    model = Net().eval()
    snn = sp.convert(model, torch.rand(16, 6), "max")
    assert len(snn.neurons()) == 1


def test_inplace_relu_read_after_mutation_keeps_eager_semantics():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.fc2 = nn.Linear(6, 8), nn.Linear(8, 3)

        def forward(self, x):
            h = self.fc1(x)
            r = h.relu_()
            return self.fc2(h + r)  # eager: h was mutated, so this is 2 * relu(fc1(x))

    model = Net().eval()
    x = torch.rand(16, 6)
    snn = sp.convert(model, x, "max")
    assert torch.allclose(snn.ann(x), model(x), atol=1e-6)


def test_final_softmax_is_dropped_with_a_note():
    model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3), nn.Softmax(dim=1)).eval()
    snn = sp.convert(model, torch.rand(8, 4), "max")
    assert any("softmax" in note for note in snn.info["notes"])


def test_channelwise_thresholds_have_one_value_per_channel():
    model = Residual()
    snn = sp.convert(model, torch.rand(16, 1, 8, 8), "percentile", channelwise=True)
    shapes = {name: tuple(neuron.threshold.shape) for name, neuron in snn.neurons().items()}
    assert all(shape == (4, 1, 1) for shape in shapes.values())


class InputSkip(nn.Module):
    """The raw input is added after the neurons: the pre-neuron part cannot run once per batch."""

    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(6, 6), nn.Linear(6, 3)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x)) + x)


@pytest.mark.parametrize("model", [Residual(), InputSkip()], ids=["residual", "input-skip"])
def test_pre_neuron_part_once_per_batch_changes_nothing(model):
    model = model.double().eval()
    x = torch.rand(7, *((1, 8, 8) if isinstance(model, Residual) else (6,)), dtype=torch.float64)
    snn = sp.convert(model, x, "percentile")
    assert snn.static_input == isinstance(model, Residual)
    fast = snn.simulate(x, 25, record=True)
    snn.separable_prefix = False
    slow = snn.simulate(x, 25, record=True)
    assert torch.allclose(fast.readout, slow.readout, rtol=0, atol=1e-12)
    assert all(torch.equal(fast.spikes[k], slow.spikes[k]) for k in fast.spikes)
    assert torch.equal(fast.input_macs, slow.input_macs)


def test_pre_neuron_part_runs_once_per_batch_whatever_the_chunking():
    model = Residual().double().eval()
    x = torch.rand(7, 1, 8, 8, dtype=torch.float64)
    snn = sp.convert(model, x, "percentile")
    first = next(m for m in snn.graph_module.modules() if isinstance(m, nn.Conv2d))
    calls = []
    hook = first.register_forward_hook(lambda *_: calls.append(1))
    one_chunk = snn.simulate(x, 12, chunk=12)
    step_by_step = snn.simulate(x, 12, chunk=1)  # the neurons must not write over the kept current
    hook.remove()
    assert len(calls) == 2  # once per simulation, not once per chunk or step
    assert torch.allclose(one_chunk.readout, step_by_step.readout, rtol=0, atol=1e-12)


class ZeroPadded(nn.Module):
    """Asymmetric zero padding (TensorFlow's 'same' for even kernels), as a module and as F.pad."""

    def __init__(self):
        super().__init__()
        self.pad = nn.ZeroPad2d((0, 1, 0, 1))
        self.conv1 = nn.Conv2d(1, 4, 2)
        self.conv2 = nn.Conv2d(4, 4, 3, stride=2)
        self.fc = nn.Linear(4 * 4 * 4, 3)

    def forward(self, x):
        x = torch.relu(self.conv1(self.pad(x)))
        x = torch.relu(self.conv2(F.pad(x, (1, 0, 1, 0))))
        return self.fc(x.flatten(1))


def test_zero_padding_converts_exactly():
    torch.manual_seed(0)
    model = ZeroPadded().eval()
    x = torch.rand(32, 1, 8, 8)
    expected = model(x)
    snn = sp.convert(model, x, "ecc")
    errors = [(snn(x, timesteps=t)[-1] - expected).abs().mean() / expected.std() for t in (16, 512)]
    assert errors[1] < 0.01 and errors[1] < errors[0] / 5


def test_rmp_percentile_thresholds_lie_below_the_max_and_bad_values_are_refused():
    model = randomize_batchnorms(Residual())
    x = torch.rand(32, 1, 8, 8)
    by_max = sp.convert(model, x, "rmp").neurons()
    by_percentile = sp.convert(model, x, "rmp[percentile=99]").neurons()
    first = next(iter(by_max))  # same input currents in both (deeper layers see different spikes)
    assert 0 < by_percentile[first].threshold.item() <= by_max[first].threshold.item()
    assert all(neuron.threshold.item() > 0 for neuron in by_percentile.values())
    with pytest.raises(ValueError, match="percentile"):
        sp.convert(model, x, "rmp", percentile=0)


def test_rmp_mean_current_thresholds_are_the_largest_time_averaged_currents():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 3)).eval()
    x = torch.rand(16, 6)
    by_mean = sp.convert(model, x, "rmp[current=mean, calibration_timesteps=16]")
    by_step = sp.convert(model, x, "rmp[calibration_timesteps=16]")
    first, second = by_mean.neurons().values()
    step_first, step_second = by_step.neurons().values()
    # The first layer's current is the analog input's, the same at every step: both rules agree.
    assert torch.equal(first.threshold, step_first.threshold)
    assert torch.allclose(first.threshold, model[0](x).max())
    spikes = []
    hook = first.register_forward_hook(lambda module, inputs, output: spikes.append(output.clone()))
    by_mean.simulate(x, 16)
    hook.remove()
    rates = torch.cat(spikes).reshape(16, 16, 8).mean(dim=0)  # [steps, batch, neurons] -> per sample
    assert torch.allclose(second.threshold, model[2](rates).max(), rtol=1e-5)
    assert second.threshold <= step_second.threshold  # an average never exceeds the largest single step
    with pytest.raises(ValueError, match="current is one of"):
        sp.convert(model, x, "rmp", current="peak")


class SharedCurrent(nn.Module):
    """The current into the first neurons is read again after them: their spikes must not overwrite it."""

    def __init__(self):
        super().__init__()
        self.fc1, self.fc2, self.fc3 = nn.Linear(6, 8), nn.Linear(8, 8), nn.Linear(8, 3)

    def forward(self, x):
        h = self.fc2(torch.relu(self.fc1(x)))
        return self.fc3(torch.relu(h) + h)


@pytest.mark.parametrize("encoding", ["analog", "poisson"])
def test_spikes_written_over_their_currents_change_nothing(encoding):
    model = SharedCurrent().double().eval()
    x = torch.rand(16, 6, dtype=torch.float64)
    snn = sp.convert(model, x, "percentile", encoding=encoding)
    owns = [neuron.owns_input for neuron in snn.neurons().values()]
    assert owns == [True, False]  # fc1's output feeds only the first neurons; h is read twice
    fast = snn.simulate(x, 30, record=True, chunk=7)
    for neuron in snn.neurons().values():
        neuron.owns_input = False
    slow = snn.simulate(x, 30, record=True, chunk=7)
    assert torch.equal(fast.readout, slow.readout)
    assert all(torch.equal(fast.spikes[k], slow.spikes[k]) for k in fast.spikes)


def test_the_default_is_ecc_with_4_bit_spikes_and_stays_close_to_the_ann():
    """The zoo's choice (bench/zoo.py): ecc, channel-wise, 4-bit spikes, with no method named."""
    torch.manual_seed(0)
    model = randomize_batchnorms(Residual()).eval()
    x = torch.rand(64, 1, 8, 8)
    snn = sp.convert(model, x, progress=False)
    assert snn.info["method"] == "ecc" and snn.info["spike_bits"] == 4 and snn.info["channelwise"]
    assert all(layer.spike_bits == 4 for layer in snn.spiking_layers().values() if layer.is_neuron)
    ev = sp.evaluate(snn, x, [16], progress=False)
    assert ev.agreement[16] >= 0.95 and "4-bit spikes" in ev.to_markdown()
