"""What every conversion method is: a strategy that turns calibration data into a spiking network.

A method decides which statistic to collect, how to turn it into neuron parameters (thresholds, coding
scales), and which neuron to place. It never touches the simulator; adding a method means adding one
small class.
"""

from __future__ import annotations

import dataclasses
import re
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Annotated, ClassVar

from torch import Tensor

from spikeport import progress
from spikeport.assembly.rate import assemble
from spikeport.errors import OptionError
from spikeport.graph.canonical import max_pools_before_activations, max_pools_to_average
from spikeport.graph.prepare import PreparedModel
from spikeport.neurons import IFNeuron, Reset, SpikingLayer

if TYPE_CHECKING:
    from spikeport.network import SpikingNetwork
from spikeport.options import Fraction, Range, check_fields, parse_options

Batches = Callable[[], Iterator[Tensor]]  # re-iterable calibration input: each call starts a new pass


def each_batch(batches: Batches, stage: str) -> Iterator[Tensor]:
    """One pass over ``batches``, reported as ``stage`` of the conversion (``spikeport.progress``), with the
    samples of a pass as its total where ``batches`` knows them."""
    return progress.track(batches(), stage, total=getattr(batches, "samples", None))


@dataclass
class Method:
    """Options every method has (each field is a keyword of ``sp.convert``) and the steps of a conversion."""

    name: ClassVar[str] = ""
    coding: ClassVar[str] = "rate"  # "rate" (accuracy per time step T) or "temporal" (per code length K)
    channelwise: bool = False  # one threshold (or coding scale) per channel instead of one per layer
    # Replace every max-pool by an average pool of the same window before calibration: simpler SNNs, but a
    # different network from the ANN given (agreement is still measured against the original).
    max_to_avg: bool = False

    def __post_init__(self) -> None:
        """Every option checked against its type hint: from a method spec and from Python alike."""
        check_fields(self, f"method {self.name!r}")

    # Thresholds read from the ANN's activation statistics alone (ecc, max, percentile, fs's scales):
    # statistics collected once (sp.calibrate) serve such a method, unless it changes the graph first.
    reads_statistics: ClassVar[bool] = False

    def shares_statistics(self) -> bool:
        """Whether ``sp.calibrate``'s statistics of the model as given are what this method calibrates on."""
        return self.reads_statistics and not self.max_to_avg

    def reads_percentile(self) -> bool:
        """Whether its thresholds read a percentile of the statistics (histograms), not the maximum alone."""
        return getattr(self, "percentile", None) is not None

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

    def check(self, prepared: PreparedModel) -> None:
        """Refuse, with a clear error, a graph this method cannot code (before any calibration work)."""

    def build(self, prepared: PreparedModel, batches: Batches, **network) -> SpikingNetwork:
        """Calibrate on ``batches`` and assemble the network; ``network`` holds ``assemble``'s options."""
        raise NotImplementedError

    def describe(self) -> dict:
        """The method and all its options, as stored with the network and in reports."""
        options = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        options = {k: v.value if isinstance(v, Enum) else v for k, v in options.items()}
        return {"method": self.name, "coding": self.coding, **options}


@dataclass
class RateMethod(Method):
    """A rate-coded method: integrate-and-fire neurons whose thresholds come from calibration."""

    reset: Reset | str = Reset.SOFT
    initial_potential: Fraction = 0.0  # membrane at t=0, a fraction of the threshold (0.5: half-way start)
    # Max-pool the input currents before the neurons (ReLU -> max-pool becomes max-pool -> ReLU, the same
    # ANN): the spiking pool then settles at once instead of after tens of steps, with fewer neurons.
    pool_before_neurons: bool = False
    # Bits per spike: 1 sends binary spikes; b > 1 graded spikes of 2^b - 1 levels (a burst sent as one
    # event), so T steps resolve T * (2^b - 1) levels. Reports count the bits; energy prices them.
    spike_bits: Annotated[int, Range(1, 8)] = 1

    @property
    def levels(self) -> int:
        """Spike levels per step: 1 for binary spikes, 2^b - 1 for b-bit graded spikes."""
        return 2**self.spike_bits - 1

    def shares_statistics(self) -> bool:
        return super().shares_statistics() and not self.pool_before_neurons

    def transform(self, prepared: PreparedModel) -> None:
        super().transform(prepared)
        if self.pool_before_neurons:
            swapped = max_pools_before_activations(prepared.graph_module)
            if swapped:
                prepared.notes.append(f"pooled the input currents of {swapped} layer(s) before their neurons")

    def thresholds(self, prepared: PreparedModel, batches: Batches) -> dict[str, Tensor]:
        """Threshold per activation node name (a scalar, or one value per channel)."""
        raise NotImplementedError

    def build(self, prepared: PreparedModel, batches: Batches, **network) -> SpikingNetwork:
        return self.assembled(prepared, self.thresholds(prepared, batches), **network)

    def assembled(self, prepared: PreparedModel, thresholds: dict[str, Tensor], **network) -> SpikingNetwork:
        """The network with this method's neurons at ``thresholds``: the final one, or one that a calibration
        simulates (rmp, calibrated); ``network`` holds ``assemble``'s options."""
        return assemble(prepared, thresholds, neuron=self.neuron, levels=self.levels, **network)

    def neuron(self, threshold: Tensor, spike_value: Tensor | None) -> SpikingLayer:
        """The spiking layer of one activation site: an integrate-and-fire neuron with this method's reset
        and start (a method with another neuron type overrides this)."""
        return IFNeuron(threshold, self.reset, self.initial_potential, spike_value, levels=self.levels)


def parse_method(spec: str) -> tuple[str, dict]:
    """``"max[reset=soft, channelwise=true]"`` -> ``("max", {"reset": "soft", "channelwise": True})``.

    One string names a method with its options, so the CLI can compare variants side by side.
    """
    name, options = parse_options(spec, "method spec")
    if not re.fullmatch(r"[\w-]+", name):
        raise OptionError(f"method spec {spec!r} is not NAME or NAME[option=value, ...]")
    return name, options


def make_method(name: str, **options) -> Method:
    """Instantiate a registered method by name, with a clear error for unknown names or options."""
    from spikeport.methods import METHODS

    if name not in METHODS:
        raise OptionError(f"unknown method {name!r}; available: {', '.join(sorted(METHODS))}")
    cls = METHODS[name]
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise OptionError(
            f"method {name!r} has no option(s) {', '.join(unknown)}; its options: {', '.join(sorted(known))}"
        )
    return cls(**options)
