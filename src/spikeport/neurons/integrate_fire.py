"""The integrate-and-fire neuron module that replaces an activation in the converted graph."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from spikeport.neurons.analog import AnalogOp, constant_or_steps
from spikeport.neurons.dynamics import BINARY, Reset, checked_levels, if_scan
from spikeport.neurons.events import SpikingLayer, level_repr
from spikeport.neurons.layout import dense, sum_over_batch


class IFNeuron(SpikingLayer):
    """Integrate-and-fire neurons for one activation site, time folded into the batch.

    A spike carries the neuron's threshold (ANN units), or ``spike_value`` when given (1 for networks
    imported from NIR, whose spikes are binary and whose thresholds are folded into the next weights);
    events are spikes. With ``levels`` > 1 a spike is graded (``dynamics.graded_if_scan``): it carries a
    multiple of ``threshold / levels``, up to the threshold, and ``spike_bits`` bits.
    """

    def __init__(
        self,
        threshold: Tensor,
        reset: Reset | str = Reset.SOFT,
        initial_potential: float = 0.0,
        spike_value: Tensor | None = None,
        bias: Tensor | None = None,
        levels: int = BINARY,
    ):
        super().__init__()
        self.levels = checked_levels(levels)
        if levels != BINARY and spike_value is not None:
            raise ValueError(f"a spike_value makes spikes binary: levels must be 1, got {levels!r}")
        self.register_buffer("threshold", threshold.detach().clone())
        self.register_buffer("spike_value", None if spike_value is None else spike_value.detach().clone())
        # A constant current added at every step (per channel): the bias correction of calibrated conversion.
        self.register_buffer("bias", None if bias is None else bias.detach().clone())
        self.reset_mode = Reset.parse(reset)
        self.initial_potential = float(initial_potential)
        self.v: Tensor | None = None
        # Set by assembly when this layer is the only reader of a freshly computed input current: the spikes
        # are then written over the currents (no output tensor allocated per chunk: on CPU fresh memory is
        # slow to touch). Forward hooks of the layer before see its output overwritten afterwards.
        self.owns_input = False

    def extra_repr(self) -> str:
        shown = level_repr(self.threshold)
        graded = f", levels={self.levels}" if self.levels != BINARY else ""
        return (
            f"threshold={shown}, reset={self.reset_mode.value}, initial_potential={self.initial_potential}"
            + graded
        )

    def unit(self) -> Tensor:
        """What one spike (one level of a graded spike) carries, in the ANN's units."""
        if self.spike_value is not None:
            return self.spike_value
        return self.threshold if self.levels == BINARY else self.threshold / self.levels

    def reset_state(self, record_steps: int = 0) -> None:
        self.v = None
        super().reset_state(record_steps)

    def input_currents(self, x: Tensor) -> Tensor:
        """This chunk's input currents, ``[steps, batch, ...]``, bias included (``constant_or_steps``)."""
        return constant_or_steps(x, self.running_clock(), self.bias)

    def forward(self, x: Tensor) -> Tensor:
        clock = self.running_clock()
        steps = clock.steps
        constant = x.shape[0] == clock.batch  # the same current at every step (analog input, computed once)
        currents = self.input_currents(x)
        if self.v is None:
            # a fraction of one level: half of one rounds the rate, binary or graded
            start = (self.initial_potential * self.threshold / self.levels).expand(currents.shape[1:])
            self.v = torch.empty_like(currents[0]).copy_(start)  # in the currents' memory order
        # The state keeps its storage across chunks, so a chunk's temporaries are all freed together.
        # Spikes go over the currents when nothing else reads them (never over the constant: it serves all chunks).
        in_place = self.owns_input and not constant and dense(currents)
        _, out = if_scan(
            self.v,
            currents,
            self.threshold.to(x.dtype),
            self.reset_mode,
            update_state=True,
            out=currents if in_place else None,
            levels=self.levels,
        )
        if self.spike_value is not None:  # exact: (threshold / threshold) is 1, times the value
            threshold = self.threshold.to(x.dtype)
            out.div_(threshold).mul_(self.spike_value.to(x.dtype))
        if clock.recording:
            self._count(out)
        return out.reshape(steps * clock.batch, *x.shape[1:])

    def _count(self, out: Tensor) -> None:
        if self.levels != BINARY:  # a graded spike is one event, whatever it carries
            self.record_events(out)
            return
        # Spike counts per neuron summed over the batch, [t, neurons]: summing the outputs (multiples of the
        # threshold) and dividing is one float pass, where counting a bool mask would copy it to int64 first;
        # the float32 sum of at most B equal values is exact to far better than 0.5 after division.
        summed = sum_over_batch(out).reshape(out.shape[0], -1).double()
        value = self.threshold if self.spike_value is None else self.spike_value
        counts = (summed / value.double().expand(out.shape[2:]).reshape(1, -1)).round_()
        self.record(counts)


class CurrentProbe(SpikingLayer):
    """A spiking layer's stand-in while calibration looks at its input (``SpikingNetwork.observing``): it hands
    the input currents, ``[steps, batch, ...]`` (bias included), to ``observe`` and emits nothing. Signed
    neurons hand over the currents' magnitude: their threshold covers both signs."""

    def __init__(self, layer: torch.nn.Module, observe: Callable[[Tensor], None]):
        super().__init__()  # a neuron layer to the runner: the static prefix ends before it, as before the neurons
        self.clock, self.observe = layer.clock, observe
        if isinstance(layer, SpikingLayer):
            self.fanout = layer.fanout
        self.bias = getattr(layer, "bias", None)
        # signed neurons, and smooth activations computed on values (their range covers both signs)
        self.magnitude = bool(getattr(layer, "signed", False)) or isinstance(layer, AnalogOp)

    def forward(self, x: Tensor) -> Tensor:
        currents = constant_or_steps(x, self.clock, self.bias)
        self.observe(currents.abs() if self.magnitude else currents)
        return x.new_zeros(currents.shape[0] * currents.shape[1], 1)  # nothing reads it: the graph ends here
