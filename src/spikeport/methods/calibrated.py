"""Calibrated conversion: the best post-training rate code at a target number of steps T.

Three ingredients (after Li et al., ICML 2021, "A free lunch from ANN: towards efficient, accurate spiking
neural networks calibration", and the channel-wise recipes of current converters):

- channel-wise thresholds from a high percentile of the ANN's activations (robust to outliers);
- the half-threshold start (rates round instead of flooring);
- bias correction, layer by layer in depth order: the SNN is simulated for the target T on calibration data,
  and each channel gets a constant input current equal to the mean difference between the ANN's activation
  (clipped at the threshold: no rate can exceed it) and the SNN's output rate there. Correcting a layer
  changes what deeper layers receive, so layers are corrected in order, each after re-simulation.

The corrections are tuned for ``timesteps``; other T still work (the currents are small), but best at it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from spikeport.graph.assemble import assemble
from spikeport.graph.prepare import PreparedModel
from spikeport.methods.base import Batches, RateMethod
from spikeport.methods.rmp import activation_depths
from spikeport.methods.statistics import data_based_thresholds, observe_activations, reduce_statistics
from spikeport.network import SpikingNetwork


class ChannelMean:
    """Per-channel mean of what passes (dim 1 is the channel; everything else is averaged)."""

    def __init__(self, clip: Tensor | None = None):
        self.clip = clip
        self.total: Tensor | None = None
        self.count = 0

    def update(self, x: Tensor) -> None:
        x = x.detach().double()
        if self.clip is not None:
            x = torch.minimum(x.clamp_min(0), self.clip.to(x).reshape(-1, *([1] * (x.dim() - 2))))
        summed = x.transpose(0, 1).reshape(x.shape[1], -1).sum(dim=1)
        self.total = summed if self.total is None else self.total + summed
        self.count += x.numel() // x.shape[1]

    def all_reduce(self, channels: int) -> None:
        from spikeport.distributed import all_sum

        total = self.total if self.total is not None else torch.zeros(channels, dtype=torch.float64)
        self.total = all_sum(total)
        self.count = int(all_sum(torch.tensor(self.count)))

    @property
    def mean(self) -> Tensor:
        return self.total / max(1, self.count)


@dataclass
class Calibrated(RateMethod):
    name: ClassVar[str] = "calibrated"
    channelwise: bool = True
    initial_potential: float = 0.5
    percentile: float | None = 99.9  # None: the maximum
    timesteps: int = 8  # the T the bias correction aims at
    correction: bool = True  # False: channel-wise percentile thresholds and the half start only
    calibration_limit: int = 2048  # calibration samples simulated per correction pass

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.timesteps < 1:
            raise ValueError(f"timesteps must be >= 1, got {self.timesteps}")

    def thresholds(self, prepared: PreparedModel, batches: Batches) -> dict[str, Tensor]:
        return data_based_thresholds(prepared, batches, self.channelwise, self.percentile)

    def build(self, prepared: PreparedModel, batches: Batches, **network) -> SpikingNetwork:
        start = time.perf_counter()
        thresholds = self.thresholds(prepared, batches)
        biases: dict[str, Tensor] = {}
        if self.correction:
            biases = self.bias_correction(prepared, batches, thresholds)
        snn = assemble(
            prepared, thresholds, reset=self.reset, initial_potential=self.initial_potential, **network
        )
        for node, neuron in snn.neuron_nodes():
            if node.name in biases:
                neuron.bias = biases[node.name].to(neuron.threshold.dtype)
        prepared.notes.append(
            f"calibrated for T={self.timesteps} in {time.perf_counter() - start:.1f} s "
            f"({'bias-corrected' if biases else 'no correction'}, {len(thresholds)} layers)"
        )
        return snn

    def bias_correction(
        self, prepared: PreparedModel, batches: Batches, thresholds: dict[str, Tensor]
    ) -> dict[str, Tensor]:
        """Per-channel currents that make the SNN's mean rates at T match the ANN's clipped activations."""
        inputs = limited(batches, self.calibration_limit)
        ann_means = observe_activations(prepared, inputs, lambda name: ChannelMean(thresholds[name]))
        depths = activation_depths(prepared)
        biases: dict[str, Tensor] = {}
        for depth in sorted(set(depths.values())):
            snn = assemble(prepared, thresholds, reset=self.reset, initial_potential=self.initial_potential)
            layers = {node.name: neuron for node, neuron in snn.neuron_nodes()}
            for name, bias in biases.items():
                layers[name].bias = bias.to(layers[name].threshold.dtype)
            current = [name for name, d in depths.items() if d == depth]
            rates = {name: ChannelMean() for name in current}
            hooks = [
                layers[name].register_forward_hook(lambda _m, _i, out, r=rates[name]: r.update(out))
                for name in current
            ]
            seen = 0
            with torch.no_grad():
                for x in inputs():
                    snn.simulate(x, self.timesteps)
                    seen += x.shape[0]
            for hook in hooks:
                hook.remove()
            reduce_statistics(prepared, rates, seen)
            for name in current:
                error = ann_means[name].mean - rates[name].mean
                shape = (-1, *([1] * (len(prepared_shape(prepared, name)) - 1)))
                biases[name] = (
                    error.float().reshape(shape) if error.numel() > 1 else error.float().reshape(())
                )
        return biases


def prepared_shape(prepared: PreparedModel, name: str) -> tuple[int, ...]:
    return next(n for n in prepared.activation_nodes() if n.name == name).meta["sample_shape"]


def limited(batches: Batches, limit: int) -> Batches:
    """The first ``limit`` samples of ``batches``, re-iterable."""

    def first():
        seen = 0
        for x in batches():
            if seen >= limit:
                return
            yield x[: limit - seen]
            seen += x.shape[0]

    return first
