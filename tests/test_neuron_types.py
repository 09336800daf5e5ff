"""A new neuron type is a module, its registration and a method that places it: this file alone.

The leaky integrate-and-fire neuron below is defined, registered and used here; conversion, simulation,
evaluation (spikes, SOPs), saving and loading take it without any change to spikeport.
"""

from dataclasses import dataclass
from typing import ClassVar

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

import spikeport as sp
from spikeport.methods import METHODS
from spikeport.methods.baselines import MaxNorm
from spikeport.neurons import SpikingLayer


def leaky_step(v: Tensor, current: Tensor, threshold: Tensor, leak: float) -> tuple[Tensor, Tensor]:
    """One step of a leaky integrate-and-fire neuron with soft reset: (new potential, output spikes)."""
    v = leak * v + current
    spikes = (v >= threshold).to(v.dtype) * threshold
    return v - spikes, spikes


class LeakyIF(SpikingLayer):
    """Leaky integrate-and-fire neurons; spikes carry the threshold, as spikeport's IF neurons' do."""

    def __init__(self, threshold: Tensor, leak: float = 0.9):
        super().__init__()
        self.register_buffer("threshold", threshold.detach().clone())
        self.leak = float(leak)
        self.v: Tensor | None = None

    def reset_state(self, record_steps: int = 0) -> None:
        self.v = None
        super().reset_state(record_steps)

    def forward(self, x: Tensor) -> Tensor:
        clock = self.running_clock()
        if x.shape[0] == clock.batch:  # an analog input's current, the same at every step
            x = x.unsqueeze(0).expand(clock.steps, *x.shape).reshape(-1, *x.shape[1:])
        currents = x.reshape(clock.steps, clock.batch, *x.shape[1:])
        self.v = torch.zeros_like(currents[0]) if self.v is None else self.v
        out = torch.empty_like(currents)
        for step in range(clock.steps):
            self.v, out[step] = leaky_step(self.v, currents[step], self.threshold, self.leak)
        if clock.recording:
            counts = (out / self.threshold).sum(dim=1).reshape(clock.steps, -1).double()
            self.record(counts)
        return out.reshape(-1, *x.shape[1:])


sp.register_neuron(LeakyIF, arguments=("leak",), read=lambda m: {"threshold": m.threshold})


@dataclass
class LeakyMax(MaxNorm):
    """max-norm thresholds, leaky neurons."""

    name: ClassVar[str] = "leaky-max"
    leak: float = 0.9

    def neuron(self, threshold: Tensor, spike_value: Tensor | None) -> SpikingLayer:
        return LeakyIF(threshold, self.leak)


class CNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 4 * 4, 3)

    def forward(self, x):
        return self.fc(F.max_pool2d(F.relu(self.conv(x)), 2).flatten(1))


@pytest.fixture
def leaky_method(monkeypatch):
    monkeypatch.setitem(METHODS, LeakyMax.name, LeakyMax)


def test_a_registered_neuron_converts_simulates_counts_and_saves(leaky_method, tmp_path):
    torch.manual_seed(0)
    model, x = CNN().eval(), torch.rand(12, 1, 8, 8)
    snn = sp.convert(model, x, "leaky-max[leak=0.8]")
    layers = [m for m in snn.modules() if isinstance(m, LeakyIF)]
    assert len(layers) == 1 and layers[0].leak == 0.8
    ev = sp.evaluate(snn, x, [4, 16], progress=False)
    assert ev.spikes_per_image[16] > ev.spikes_per_image[4] > 0 and ev.sops_per_image[16] > 0
    loaded = sp.load(sp.save(snn, tmp_path / "leaky.spk"))
    assert torch.equal(loaded(x, timesteps=16), snn(x, timesteps=16))
    # the same network with no leak is the soft-reset IF network of max-norm thresholds
    no_leak = sp.convert(model, x, "leaky-max[leak=1.0]")
    soft = sp.convert(model, x, "max[reset=soft]")
    assert torch.allclose(no_leak(x, timesteps=16), soft(x, timesteps=16), atol=1e-5)
