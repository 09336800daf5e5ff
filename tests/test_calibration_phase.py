"""Calibration as a phase: sp.calibrate's statistics, inspected, saved, and reused by several methods."""

import pytest
import torch
import torch.nn.functional as F
from helpers import Residual, observing_whole_graph, randomize_batchnorms
from torch import nn

import spikeport as sp
import spikeport.calibration
import spikeport.methods.statistics


class PooledCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 6, 3, padding=1)
        self.fc = nn.Linear(6 * 4 * 4, 3)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        return self.fc(F.relu(self.conv2(x)).flatten(1))


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    model, x = PooledCNN().eval(), torch.rand(40, 1, 8, 8)
    return model, x, sp.calibrate(model, x, batch_size=16)


def thresholds(snn) -> list[torch.Tensor]:
    return [neuron.threshold for neuron in snn.neurons().values()]


def assert_same_network(a, b, x) -> None:
    """Every parameter and buffer (thresholds, FS scales) equal, and the read-outs of a default run."""
    a_state, b_state = a.state_dict(), b.state_dict()
    assert a_state.keys() == b_state.keys()
    assert all(torch.equal(a_state[k], b_state[k]) for k in a_state)
    assert torch.equal(a(x), b(x))


@pytest.mark.parametrize(
    "method",
    [
        "ecc",
        "ecc[channelwise=true]",
        "ecc[percentile=99]",
        "max",
        "max[channelwise=true]",
        "percentile",
        "percentile[channelwise=true, percentile=99.99]",
        "fs",
        "fs[channelwise=true, percentile=99.9]",
    ],
)
def test_shared_statistics_give_the_same_network(setup, method):
    model, x, stats = setup
    alone = sp.convert(model, x, method, batch_size=16)
    shared = sp.convert(model, x, method, batch_size=16, statistics=stats)
    for a, b in zip(thresholds(alone), thresholds(shared), strict=True):
        assert torch.equal(a, b)
    assert_same_network(alone, shared, x)


def test_maxima_alone_serve_the_methods_that_read_no_percentile(setup, tmp_path):
    model, x, stats = setup
    maxima = sp.calibrate(model, x, batch_size=16, percentiles=False)
    assert stats.percentiles and not maxima.percentiles
    for channelwise in (False, True):
        assert all(
            torch.equal(a, b)
            for a, b in zip(
                maxima.thresholds(channelwise).values(), stats.thresholds(channelwise).values(), strict=True
            )
        )
    loaded = sp.Statistics.load(maxima.save(tmp_path / "maxima.safetensors"))
    assert not loaded.percentiles
    for method in ("ecc", "max[channelwise=true]", "fs"):
        assert_same_network(
            sp.convert(model, x, method, statistics=loaded), sp.convert(model, x, method, statistics=stats), x
        )
    with pytest.raises(sp.CalibrationError, match="maxima only, no percentile 99.9"):
        sp.convert(model, x, "percentile", statistics=maxima)


def test_statistics_can_be_inspected_saved_and_loaded(setup, tmp_path):
    model, x, stats = setup
    assert set(stats.shapes) == set(stats.histograms) and len(stats.histograms) == 2
    levels = stats.thresholds(channelwise=True)
    assert [level.shape[0] for level in levels.values()] == [4, 6]
    layer = stats.thresholds(channelwise=False, percentile=99.9)
    assert all(level.shape == (1,) for level in layer.values())
    assert "activations" in repr(stats)
    loaded = sp.Statistics.load(stats.save(tmp_path / "stats.safetensors"))
    assert loaded.shapes == stats.shapes
    for name in stats.histograms:
        assert torch.equal(loaded.level(name, False, 99.0), stats.level(name, False, 99.0))
    assert torch.equal(
        sp.convert(model, x, "ecc", statistics=loaded)(x, timesteps=4),
        sp.convert(model, x, "ecc", statistics=stats)(x, timesteps=4),
    )


def test_statistics_of_another_model_or_for_another_method_are_refused(setup):
    model, x, stats = setup
    other = randomize_batchnorms(Residual())
    with pytest.raises(sp.CalibrationError, match="describe activations"):
        sp.convert(other, x, "ecc", statistics=stats)
    for method in ("rmp", "ecc[weight_bits=4]", "max[max_to_avg=true]", "calibrated"):
        with pytest.raises(sp.SpikeportError, match="convert without statistics="):
            sp.convert(model, x, method, statistics=stats)


def test_a_damaged_statistics_file_is_one_line(tmp_path):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(b"not a file")
    with pytest.raises(sp.SaveFormatError, match="bad.safetensors"):
        sp.Statistics.load(path)


def count_calibration_passes(monkeypatch) -> list[str]:
    """The kind of statistic of every pass over the calibration data through the ANN, from now on."""
    passes = []
    for module in (spikeport.calibration, spikeport.methods.statistics):
        original = module.observe_activations

        def counted(prepared, batches, make_statistic, original=original):
            passes.append(type(make_statistic("")).__name__)
            return original(prepared, batches, make_statistic)

        monkeypatch.setattr(module, "observe_activations", counted)
    return passes


def test_compare_calibrates_once_for_the_methods_that_share(setup, monkeypatch):
    model, x, _ = setup
    passes = count_calibration_passes(monkeypatch)
    comparison = sp.compare(model, x, x, ["ecc", "percentile", "max"], timesteps=[4], progress=False)
    assert passes == ["HistogramStatistic"]
    assert all("calibrate (shared)" in comparison.seconds[m] for m in ("ecc", "percentile", "max"))
    separate = sp.evaluate(sp.convert(model, x, "percentile"), x, [4], ann=model, progress=False)
    assert comparison["percentile"] == separate


def test_compare_collects_maxima_alone_when_no_method_reads_a_percentile(setup, monkeypatch):
    model, x, _ = setup
    passes = count_calibration_passes(monkeypatch)
    comparison = sp.compare(model, x, x, ["ecc", "max", "fs"], timesteps=[4], codes=[4], progress=False)
    assert passes == ["MaxStatistic"]
    separate = sp.evaluate(sp.convert(model, x, "fs"), x, [4], ann=model, progress=False)
    assert comparison["fs"] == separate


@pytest.mark.parametrize(
    "method",
    [
        "rmp",
        "rmp[current=mean]",  # batches of 16 run in chunks of 8 steps: the mean sums chunk by chunk
        "rmp[percentile=99, channelwise=true]",
        "rmp[encoding=poisson]",
        "calibrated[timesteps=2, weights=false]",
    ],
)
def test_methods_that_simulate_get_the_network_they_got_from_the_whole_graph(setup, monkeypatch, method):
    """rmp and calibrated observe through SpikingNetwork.observing, which ends the graph at the observed
    layers; the old way, every layer simulated and the observed ones silent, gives the very same network."""
    model, x, _ = setup
    spec, encoding = method.replace("[encoding=poisson]", ""), "poisson" if "poisson" in method else "analog"
    ended = sp.convert(model, x, spec, batch_size=16, encoding=encoding)
    monkeypatch.setattr(sp.SpikingNetwork, "observing", observing_whole_graph)
    whole = sp.convert(model, x, spec, batch_size=16, encoding=encoding)
    assert_same_network(ended, whole, x)


def test_observing_feeds_a_layers_currents_runs_nothing_deeper_and_restores_the_network(setup):
    model, x, _ = setup
    snn = sp.convert(model, x, "max")
    before = snn(x, timesteps=5)
    (first, _), (second, deeper) = snn.neuron_nodes()
    calls = []
    handle = deeper.register_forward_hook(lambda *args: calls.append(1))
    seen = []
    with snn.observing({first.name: seen.append}):
        snn.simulate(x, 5)
    handle.remove()
    assert calls == [] and len(seen) >= 1
    assert seen[0].shape[1:] == (len(x), 4, 8, 8) and sum(c.shape[0] for c in seen) == 5
    assert torch.equal(snn(x, timesteps=5), before)
    with pytest.raises(ValueError, match="no IF layers named"), snn.observing({"nope": seen.append}):
        pass
