"""RMP-SNN (Han, Srinivasan, Roy, CVPR 2020): soft reset with threshold balancing on the SNN itself.

Layer by layer, in order, the already-converted part of the network is *simulated* on calibration data
and each next layer's threshold is set to ``alpha`` times the largest input current it receives in any
step (Sengupta et al. 2019's spike-based balancing). Layers whose inputs come only from calibrated layers
are balanced together in one pass, so a plain chain needs one pass per layer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from spikeport.errors import CalibrationError
from spikeport.graph.assemble import assemble, positive_thresholds
from spikeport.graph.observers import HistogramStatistic, MaxStatistic
from spikeport.graph.prepare import PreparedModel
from spikeport.methods.base import Batches, Method


def activation_depths(prepared: PreparedModel) -> dict[str, int]:
    """0 for activations fed only by the input, else 1 + the deepest activation upstream."""
    activations = {n.name for n in prepared.activation_nodes()}
    depth: dict[str, int] = {}  # for every node: depth of the activation layer it would feed
    result: dict[str, int] = {}
    for node in prepared.graph_module.graph.nodes:
        upstream = [depth[a.name] for a in node.all_input_nodes]
        depth[node.name] = max(upstream, default=0)
        if node.name in activations:
            result[node.name] = depth[node.name]
            depth[node.name] += 1
    return result


@dataclass
class RMP(Method):
    name: ClassVar[str] = "rmp"
    alpha: float = 1.0  # threshold scale: Vth = alpha * max input current
    calibration_timesteps: int = 32  # steps simulated per calibration pass
    # None: the largest input current of any step (the paper). A percentile of the positive per-step
    # currents instead ignores rare bursts, which in deep nets push thresholds far above the rates.
    percentile: float | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.alpha <= 0:
            raise ValueError(f"alpha must be positive, got {self.alpha}")
        if self.calibration_timesteps < 1:
            raise ValueError(f"calibration_timesteps must be >= 1, got {self.calibration_timesteps}")
        if self.percentile is not None and not 0 < self.percentile <= 100:
            raise ValueError(f"percentile must be in (0, 100], got {self.percentile}")

    def thresholds(self, prepared: PreparedModel, batches: Batches) -> dict[str, Tensor]:
        depths = activation_depths(prepared)
        thresholds = {
            name: torch.tensor(1.0) for name in depths
        }  # placeholders for not-yet-calibrated layers
        for depth in sorted(set(depths.values())):
            snn = assemble(prepared, thresholds, reset=self.reset, initial_potential=self.initial_potential)
            statistics: dict[str, MaxStatistic] = {}
            for node, neuron in snn.neuron_nodes():
                name = node.name
                if depths[name] >= depth:  # this layer and deeper ones are silent while we observe
                    statistics[name] = (
                        MaxStatistic(self.channelwise)
                        if self.percentile is None
                        else HistogramStatistic(self.channelwise)
                    )
                    neuron.observer = statistics[name].update
            seen = 0
            for x in batches():
                snn.simulate(x, self.calibration_timesteps)
                seen += x.shape[0]
            if seen == 0:
                raise CalibrationError(
                    "calibration data is empty; pass at least one batch of training inputs"
                )
            for name, statistic in statistics.items():
                if depths[name] == depth:
                    level = (
                        statistic.max if self.percentile is None else statistic.percentile(self.percentile)
                    )
                    thresholds[name] = positive_thresholds(self.alpha * level)
        return thresholds
