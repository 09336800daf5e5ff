"""What every conversion method is: a strategy that turns calibration data into neuron thresholds.

A method decides which statistic to collect, how to turn it into thresholds, and which neuron to place.
It never touches the simulator; adding a method means adding one small class here.
"""

from __future__ import annotations

import dataclasses
import re
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import ClassVar

from torch import Tensor

from spikeport.graph.canonical import max_pools_to_average
from spikeport.graph.prepare import PreparedModel
from spikeport.neurons import Reset
from spikeport.options import parse_options

Batches = Callable[[], Iterator[Tensor]]  # re-iterable calibration input: each call starts a new pass


@dataclass
class Method:
    """Options shared by the rate-coded methods (every field is a keyword of ``sp.convert``)."""

    name: ClassVar[str] = ""
    reset: Reset | str = Reset.SOFT
    initial_potential: float = (
        0.0  # membrane at t=0, as a fraction of the threshold (0.5 = half-threshold start)
    )
    channelwise: bool = False  # one threshold per channel instead of one per layer
    # Replace every max-pool by an average pool of the same window before calibration: simpler SNNs, but a
    # different network from the ANN given (agreement is still measured against the original).
    max_to_avg: bool = False

    def __post_init__(self) -> None:
        self.reset = Reset.parse(self.reset)
        if not 0.0 <= self.initial_potential < 1.0:
            raise ValueError(
                f"initial_potential is a fraction of the threshold in [0, 1), got {self.initial_potential}"
            )

    def transform(self, prepared: PreparedModel) -> None:
        """Rewrite the prepared graph before calibration (subclasses add theirs, e.g. weight quantisation)."""
        if self.max_to_avg:
            replaced = max_pools_to_average(prepared.graph_module)
            if replaced:
                message = (
                    f"max_to_avg: replaced {replaced} max-pool(s) by average pools; the SNN approximates a "
                    "different network than the one given, so expect some loss against it"
                )
                prepared.notes.append(message)
                warnings.warn(message, stacklevel=3)

    def thresholds(self, prepared: PreparedModel, batches: Batches) -> dict[str, Tensor]:
        """Threshold per activation node name (a scalar, or one value per channel)."""
        raise NotImplementedError

    def describe(self) -> dict:
        """The method and all its options, as stored with the network and in reports."""
        options = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        options["reset"] = self.reset.value
        return {"method": self.name, **options}


def parse_method(spec: str) -> tuple[str, dict]:
    """``"max[reset=soft, channelwise=true]"`` -> ``("max", {"reset": "soft", "channelwise": True})``.

    One string names a method with its options, so the CLI can compare variants side by side.
    """
    name, options = parse_options(spec, "method spec")
    if not re.fullmatch(r"[\w-]+", name):
        raise ValueError(f"method spec {spec!r} is not NAME or NAME[option=value, ...]")
    return name, options


def make_method(name: str, **options) -> Method:
    """Instantiate a registered method by name, with a clear error for unknown names or options."""
    from spikeport.methods import METHODS

    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; available: {', '.join(sorted(METHODS))}")
    cls = METHODS[name]
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ValueError(
            f"method {name!r} has no option(s) {', '.join(unknown)}; its options: {', '.join(sorted(known))}"
        )
    return cls(**options)
