"""RMP-SNN (Han, Srinivasan, Roy, CVPR 2020): soft reset with threshold balancing on the SNN itself.

Layer by layer, in order, the already-converted part of the network is *simulated* on calibration data
and each next layer's threshold is set to ``alpha`` times the largest input current it receives in any
step (Sengupta et al. 2019's spike-based balancing). Layers whose inputs come only from calibrated layers
are balanced together in one pass, so a plain chain needs one pass per layer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from torch import Tensor

from spikeport.assembly.rate import positive_thresholds
from spikeport.graph.observers import MaxStatistic, threshold_level, threshold_statistic
from spikeport.graph.prepare import PreparedModel
from spikeport.methods.base import Batches, RateMethod, each_batch
from spikeport.methods.statistics import reduce_statistics
from spikeport.options import Count, Percentile, Positive


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


class CurrentObserver:
    """Feeds a layer's calibration input currents, ``[steps, batch, ...]``, to a statistic.

    ``per_step``: every step's current is a sample (the paper's V_in^max). Otherwise each sample's current
    is averaged over the whole calibration run first (handed over by ``flush`` after each batch): the
    charge per step the layer must pass on as a rate.
    """

    def __init__(self, statistic: MaxStatistic, per_step: bool):
        self.statistic = statistic
        self.per_step = per_step
        self.total: Tensor | None = None
        self.steps = 0

    def __call__(self, currents: Tensor) -> None:
        if currents.stride(0) == 0:  # the same current at every step (analog input): one step says it all
            currents = currents[:1]
        if self.per_step:
            self.statistic.update(currents.flatten(0, 1))
            return
        summed = currents.sum(dim=0, dtype=torch.float64)
        self.total = summed if self.total is None else self.total + summed
        self.steps += currents.shape[0]

    def flush(self) -> None:
        if self.total is not None:
            self.statistic.update(self.total / self.steps)
            self.total, self.steps = None, 0


@dataclass
class RMP(RateMethod):
    name: ClassVar[str] = "rmp"
    alpha: Positive = 1.0  # threshold scale: Vth = alpha * max input current
    calibration_timesteps: Count = 32  # steps simulated per calibration pass
    # None: the largest input current observed (the paper). A percentile of the positive currents instead
    # ignores rare bursts.
    percentile: Percentile | None = None
    # "step": the current of single steps (the paper). "mean": each sample's current averaged over the
    # calibration run. In deep nets, synchronous spikes make single-step currents far larger than the rates
    # they carry, and every too-high threshold makes the next layer's bursts larger still: thresholds grow
    # with depth and the SNN needs many more steps. Averaged currents do not compound.
    current: Literal["step", "mean"] = "step"

    def thresholds(self, prepared: PreparedModel, batches: Batches) -> dict[str, Tensor]:
        depths = activation_depths(prepared)
        thresholds = {
            name: torch.tensor(1.0) for name in depths
        }  # placeholders for not-yet-calibrated layers
        levels = sorted(set(depths.values()))
        for depth in levels:
            snn = self.assembled(prepared, thresholds)
            observers = {
                name: CurrentObserver(
                    threshold_statistic(self.channelwise, self.percentile), per_step=self.current == "step"
                )
                for name, layer_depth in depths.items()
                if layer_depth == depth
            }
            seen = 0
            with snn.observing(observers):  # deeper layers do not run
                stage = f"balancing thresholds on the SNN, depth {depth + 1}/{len(levels)}"
                for x in each_batch(batches, stage):
                    snn.simulate(x, self.calibration_timesteps)
                    for observer in observers.values():
                        observer.flush()
                    seen += x.shape[0]
            reduce_statistics(prepared, {n: o.statistic for n, o in observers.items()}, seen)
            for name, observer in observers.items():
                level = threshold_level(observer.statistic, self.percentile)
                thresholds[name] = positive_thresholds(self.alpha * level)
        return thresholds
