"""spikeport networks under NeuroBench's Benchmark (spikeport.neurobench), where neurobench installs."""

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import spikeport as sp

pytest.importorskip("neurobench")
from neurobench.benchmarks import Benchmark  # noqa: E402
from neurobench.metrics.static import ParameterCount  # noqa: E402
from neurobench.metrics.workload import (  # noqa: E402
    ActivationSparsity,
    ClassificationAccuracy,
    SynapticOperations,
)

from spikeport.neurobench import NeuroBenchNetwork  # noqa: E402

T = 8


def _data(shape, classes=3, n=48):
    torch.manual_seed(1)
    x = torch.rand(n, *shape)
    x[x < 0.3] = 0  # zero pixels: NeuroBench counts only non-zero inputs
    return x, torch.randint(0, classes, (n,))


def _benchmark(snn, x, y, **kwargs):
    loader = DataLoader(TensorDataset(x, y), batch_size=16)
    metrics = [[ParameterCount], [ClassificationAccuracy, ActivationSparsity, SynapticOperations]]
    return Benchmark(NeuroBenchNetwork(snn, T, **kwargs), loader, [], [], metrics).run(quiet=True)


def test_binary_spikes_are_counted_as_spikeports_sops_and_the_input_layer_as_macs():
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Flatten(), nn.Linear(16, 12), nn.ReLU(), nn.Linear(12, 8), nn.ReLU(), nn.Linear(8, 3)
    )
    x, y = _data((1, 4, 4))
    snn = sp.convert(net, x, method="rmp", progress=False)
    ev = sp.evaluate(snn, (x, y), timesteps=[T], progress=False)
    nb = _benchmark(snn, x, y)
    ops = nb["SynapticOperations"]
    assert ev.sops_per_image[T] > 0
    # Every event into a dense layer is one accumulate per synapse, at the source (spikeport) or the target.
    assert ops["Effective_ACs"] == pytest.approx(ev.sops_per_image[T])
    # The analog input layer runs once per image on the non-zero pixels (spikeport prices it at every step).
    assert ops["Effective_MACs"] == pytest.approx((x != 0).sum().item() / len(x) * 12)
    assert nb["ActivationSparsity"] == pytest.approx(1 - ev.spikes_per_neuron[T] / T)
    assert nb["ClassificationAccuracy"] == pytest.approx(ev.accuracy[T])
    assert nb["ParameterCount"] == sum(p.numel() for p in snn.parameters())


def test_graded_spikes_are_not_passed_off_as_binary_ones():
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(), nn.Linear(4 * 3 * 3, 3)
    )
    x, y = _data((1, 6, 6))
    snn = sp.convert(net, x, progress=False)  # the default: 4-bit graded spikes
    nb = _benchmark(snn, x, y)
    assert nb["SynapticOperations"]["Effective_ACs"] == 0
    assert nb["SynapticOperations"]["Effective_MACs"] > 0
    binary = _benchmark(sp.convert(net, x, method="ecc", progress=False), x, y)
    assert binary["SynapticOperations"]["Effective_ACs"] > 0


def test_the_readout_output_and_bad_arguments():
    net = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3))
    x, y = _data((1, 4, 4))
    snn = sp.convert(net, x, method="rmp", progress=False)
    readout = NeuroBenchNetwork(snn, T, output="readout")(x)
    assert torch.equal(readout, snn(x, T)[-1])
    assert torch.equal(NeuroBenchNetwork(snn, T)(x), readout.argmax(-1))
    with pytest.raises(TypeError, match="converted network"):
        NeuroBenchNetwork(net, T)
    with pytest.raises(ValueError, match="output must be one of"):
        NeuroBenchNetwork(snn, T, output="logits")
