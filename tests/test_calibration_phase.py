"""Calibration as a phase: sp.calibrate's statistics, inspected, saved, and reused by several methods."""

import pytest
import torch
import torch.nn.functional as F
from helpers import Residual, randomize_batchnorms
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
    ],
)
def test_shared_statistics_give_the_same_network(setup, method):
    model, x, stats = setup
    alone = sp.convert(model, x, method, batch_size=16)
    shared = sp.convert(model, x, method, batch_size=16, statistics=stats)
    for a, b in zip(thresholds(alone), thresholds(shared), strict=True):
        assert torch.equal(a, b)
    assert torch.equal(alone(x, timesteps=6), shared(x, timesteps=6))


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


def test_compare_calibrates_once_for_the_methods_that_share(setup, monkeypatch):
    model, x, _ = setup
    passes = []
    for module in (spikeport.calibration, spikeport.methods.statistics):
        original = module.observe_activations

        def counted(*args, original=original, **kwargs):
            passes.append(1)
            return original(*args, **kwargs)

        monkeypatch.setattr(module, "observe_activations", counted)
    comparison = sp.compare(model, x, x, ["ecc", "percentile", "max"], timesteps=[4], progress=False)
    assert len(passes) == 1
    assert all("calibrate (shared)" in comparison.seconds[m] for m in ("ecc", "percentile", "max"))
    separate = sp.evaluate(sp.convert(model, x, "percentile"), x, [4], ann=model, progress=False)
    assert comparison["percentile"] == separate


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
