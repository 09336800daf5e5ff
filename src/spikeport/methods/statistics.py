"""Collect activation statistics by running the ANN on calibration data (observers kept apart from rewriting)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import TypeVar

import torch
from torch import Tensor, nn

from spikeport.assembly.rate import positive_thresholds
from spikeport.distributed import active, all_sum
from spikeport.errors import CalibrationError
from spikeport.graph.observers import (
    ActivationObserver,
    threshold_level,
    threshold_statistic,
)
from spikeport.graph.prepare import PreparedModel
from spikeport.layers import QCFS
from spikeport.methods.base import Batches, each_batch

Statistic = TypeVar("Statistic")


def observe_activations(
    prepared: PreparedModel,
    batches: Batches,
    make_statistic: Callable[[str], Statistic],
    *,
    magnitudes: bool = True,
    stage: str = "collecting activation statistics",
) -> dict[str, Statistic]:
    """Statistics of the input of every activation, keyed by activation node name.

    ``make_statistic(name)`` makes the statistic of the activation node ``name``: anything with an
    ``update(x)`` method; ``stage`` says what the pass is for in progress reports. ``magnitudes``: the statistic of a range sees magnitudes where the range covers both
    signs (``observes_magnitude``); False hands every statistic the inputs as they are.
    """
    gm, statistics = observed_ann(prepared, make_statistic, magnitudes=magnitudes)
    seen = 0
    with torch.no_grad():
        for x in each_batch(batches, stage):
            gm(x)
            seen += x.shape[0]
    reduce_statistics(prepared, statistics, seen)
    return statistics


def observed_ann(
    prepared: PreparedModel,
    make_statistic: Callable[[str], Statistic],
    names: set[str] | None = None,
    *,
    truncate: bool = False,
    magnitudes: bool = True,
) -> tuple[torch.fx.GraphModule, dict[str, Statistic]]:
    """A copy of the ANN that feeds the input of each activation (those in ``names``, default all) to a statistic
    (the magnitude of its input where ``observes_magnitude``, unless ``magnitudes`` is False).

    ``truncate``: the copy ends at the observers (it returns what they saw), so layers that feed none of them
    are not computed at all.
    """
    gm = copy.deepcopy(prepared.graph_module)
    names = {a.name for a in prepared.activation_nodes()} if names is None else names
    statistics: dict[str, Statistic] = {}
    observers = []
    modules = dict(gm.named_modules())
    for node in [n for n in gm.graph.nodes if n.name in names]:
        statistic = make_statistic(node.name)
        name = f"observer_{node.name}"
        magnitude = magnitudes and observes_magnitude(modules[node.target])
        gm.add_submodule(name, ActivationObserver(statistic, magnitude=magnitude))
        with gm.graph.inserting_before(node):
            observed = gm.graph.call_module(name, (node.args[0],))
        node.replace_input_with(node.args[0], observed)
        statistics[node.name] = statistic
        observers.append(observed)
    if truncate:
        output = next(n for n in gm.graph.nodes if n.op == "output")
        output.args = (tuple(observers),)
        gm.graph.eliminate_dead_code()
    gm.recompile()
    return gm, statistics


def observes_magnitude(activation: nn.Module) -> bool:
    """A spike site, or an activation with negative values (tanh, SiLU...): their range covers both signs, so
    calibration sees the magnitude of their input; a ReLU's range is its largest positive input."""
    return not isinstance(activation, nn.ReLU | QCFS)


def reduce_statistics(prepared: PreparedModel, statistics: dict, seen: int) -> None:
    """Merge statistics (and the sample count) across torch.distributed processes; check data was seen."""
    if active():
        seen = int(all_sum(torch.tensor(seen)))
        shapes = {n.name: n.meta["sample_shape"] for n in prepared.activation_nodes()}
        for name, statistic in statistics.items():
            if not hasattr(statistic, "all_reduce"):
                raise CalibrationError(
                    f"{type(statistic).__name__} statistics do not merge across processes; calibrate in one"
                )
            statistic.all_reduce(shapes[name][0] if shapes[name] else 1)
    if seen == 0:
        raise CalibrationError("calibration data is empty; pass at least one batch of training inputs")


def data_based_thresholds(
    prepared: PreparedModel, batches: Batches, channelwise: bool, percentile: float | None = None
) -> dict[str, Tensor]:
    """Thresholds from the ANN's activations: their maximum, or a percentile of the positive ones; read from
    the prepared model's calibration statistics when it has them."""
    if prepared.statistics is not None:
        levels = prepared.statistics.thresholds(channelwise, percentile)
        return {name: positive_thresholds(level) for name, level in levels.items()}
    stats = observe_activations(prepared, batches, lambda _: threshold_statistic(channelwise, percentile))
    return {name: positive_thresholds(threshold_level(s, percentile)) for name, s in stats.items()}
