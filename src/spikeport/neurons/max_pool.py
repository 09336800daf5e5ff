"""A causal spiking max-pool: each window passes on the growth of its largest accumulated input.

Rate coding turns a max of rates into a problem: the max of spike trains per step is not the spike
train of the max. Instead each input element keeps its running sum ``S_t`` (the spikes it has sent so
far, in ANN units) and the pool emits ``maxpool(S_t) - maxpool(S_{t-1})`` at step t. The output summed
up to any step is then exactly ``maxpool(S_t)``, so its rate converges to the max of the input rates
(the ANN's max-pool), and the pool is causal. When the inputs are spikes of one size ``theta`` per
channel, every step's output is 0 or ``theta``: a binary spike, gated by the accumulated counts.
Sums are kept in float64, so spike counts stay exact (multiples of a float32 ``theta`` add up without
rounding for over 10^8 steps) whatever the chunking.

When the pool reads one neuron layer's spikes directly (``spike_unit``: the value a spike carries, per
channel or per layer), it keeps spike *counts* in the network's dtype instead: ``maxpool(k * theta)`` is
``theta * maxpool(k)`` within a channel, integer counts are exact in float32 up to 2^24 steps (float64
beyond), and the outputs are the same numbers at a fraction of the memory traffic.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from spikeport.neurons.dynamics import BINARY, checked_levels
from spikeport.neurons.events import SpikingLayer


def gated_max_pool(
    total: Tensor, last_max: Tensor, inputs: Tensor, pool: nn.Module, unit: Tensor | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """Run the gated max-pool over the leading time axis of ``inputs`` ([t, B, ...]).

    ``total`` ([B, ...]) is the input summed over earlier steps (float64), or with ``unit`` — inputs that are
    spikes of that size, per channel — the spikes counted so far (any float dtype); ``last_max`` is the
    pooled ``total``. Returns the new ``total`` (``total`` itself, updated in place), the new ``last_max`` and
    the output for every step (in ``total``'s dtype; with ``unit``, each 0 or ``unit``). The input is added one
    step after another, so the result does not depend on how the run is chunked.
    """
    steps, batch = inputs.shape[0], inputs.shape[1]
    if steps == 1:  # the CPU's usual chunk: no cumulative sum, no difference along time
        if unit is None:
            total.add_(inputs[0])
        else:  # a spike is exactly 1 after division by its own size
            total.addcdiv_(inputs[0].to(total.dtype), unit)
        maxima = pool(total)
        out = maxima.sub(last_max)
        return total, maxima, (out if unit is None else out.mul_(unit)).unsqueeze(0)
    # [t, B, ...]: the sums (or counts) after every step of the chunk, built in place
    running = inputs.to(total.dtype, copy=True) if unit is None else inputs.to(total.dtype).div(unit)
    running[0] += total
    running.cumsum_(dim=0)
    maxima = pool(running.flatten(0, 1)).reshape(steps, batch, *last_max.shape[1:])
    out = torch.diff(maxima, dim=0, prepend=last_max.unsqueeze(0))
    total.copy_(running[-1])
    return total, maxima[-1].clone(), out if unit is None else out.mul_(unit)


EXACT_FLOAT32_COUNTS = 2**24  # integers up to here are exact in float32


class SpikingMaxPool(SpikingLayer):
    """The gated max-pool module that replaces a max-pool (``nn.MaxPool1d/2d``, ``PaddedMaxPool2d``).

    Its events (the non-zero outputs it sends on) are counted like spikes. In the part of the network
    before the first neurons, an analog input arrives once per batch (``in_static_prefix``): a constant
    input's gated max is the plain max at every step, so the pool applies directly.
    """

    is_neuron = False

    def __init__(self, pool: nn.Module, spike_unit: Tensor | None = None, levels: int = BINARY):
        super().__init__()
        self.pool = pool
        self.levels = checked_levels(levels)  # its input's spike levels (set by assembly): it passes them on
        # Set by assembly when the input is one neuron layer's spikes: what one spike carries (broadcastable).
        self.register_buffer("spike_unit", None if spike_unit is None else spike_unit.detach().clone())
        self.in_static_prefix = False  # set by assembly
        self.total: Tensor | None = None  # input sums (float64), or spike counts with a spike_unit
        self.last_max: Tensor | None = None

    def reset_state(self, record_steps: int = 0) -> None:
        self.total = self.last_max = None
        super().reset_state(record_steps)

    def forward(self, x: Tensor) -> Tensor:
        clock = self.running_clock()
        if self.in_static_prefix and clock.static_input:
            return self.pool(x)
        steps, batch = clock.steps, clock.batch
        inputs = x.reshape(steps, batch, *x.shape[1:])
        counting = self.spike_unit is not None
        if self.total is None:
            dtype = x.dtype if counting else torch.float64
            self.total = torch.zeros_like(inputs[0], dtype=dtype)  # laid out like the inputs
            self.last_max = self.pool(self.total)
        unit = None
        if counting:
            if clock.offset + steps > EXACT_FLOAT32_COUNTS and self.total.dtype != torch.float64:
                self.total, self.last_max = self.total.double(), self.last_max.double()
            unit = self.spike_unit.to(self.total.dtype)
        self.total, self.last_max, out = gated_max_pool(self.total, self.last_max, inputs, self.pool, unit)
        if clock.recording:
            self.record_events(out)
        return out.to(x.dtype).flatten(0, 1)
