"""Signed spiking neurons: where a signal can be negative (the output of a normalisation or an attention).

A rate code of a ReLU needs one sign of spike; the values after a LayerNorm or an attention have both. Each
neuron here sends spikes of either sign (``dynamics.signed_if_scan``), so the synapses after it are still
driven by events. A signed spike carries one bit more than a binary one (its sign), which reports state.
"""

from __future__ import annotations

import torch
from torch import Tensor

from spikeport.neurons.analog import constant_or_steps
from spikeport.neurons.dynamics import BINARY, checked_levels, signed_graded_scan, signed_if_scan
from spikeport.neurons.events import SpikingLayer, level_repr


class SignedIFNeuron(SpikingLayer):
    """Signed integrate-and-fire neurons for one spike site: spikes of ``+-threshold``, soft reset.

    ``bias``: a constant current added at every step (per channel), as for ``IFNeuron``. ``levels`` > 1:
    graded spikes, multiples of ``threshold / levels`` of either sign (``dynamics.signed_graded_scan``).
    """

    signed = True

    def __init__(self, threshold: Tensor, bias: Tensor | None = None, levels: int = BINARY):
        super().__init__()
        self.levels = checked_levels(levels)
        self.register_buffer("threshold", threshold.detach().clone())
        self.register_buffer("bias", None if bias is None else bias.detach().clone())
        self.v: Tensor | None = None

    def extra_repr(self) -> str:
        shown = level_repr(self.threshold)
        return f"threshold={shown}, signed" + (f", levels={self.levels}" if self.levels != BINARY else "")

    def reset_state(self, record_steps: int = 0) -> None:
        self.v = None
        super().reset_state(record_steps)

    def forward(self, x: Tensor) -> Tensor:
        clock = self.running_clock()
        currents = constant_or_steps(x, clock, self.bias)
        if self.v is None:
            self.v = torch.zeros_like(currents[0])
        threshold = self.threshold.to(x.dtype)
        if self.levels == BINARY:
            out = signed_if_scan(self.v, currents, threshold)
        else:
            out = signed_graded_scan(self.v, currents, threshold, self.levels)
        if clock.recording:
            self.record_events(out)
        return out.reshape(clock.steps * clock.batch, *x.shape[1:])
