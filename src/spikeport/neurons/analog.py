"""Analog ops in a spiking network: computed on values, their work counted.

Under temporal (FS) coding an analog op acts on the decoded values as they are (``AnalogOp``). Under rate
coding it is computed exactly on the accumulated inputs (``AccumulatedOp``):

A rate code carries a value as the running mean of what arrives step after step. A non-linear op ``f``
(LayerNorm, softmax, a product of two signals, a GELU) cannot act on single steps: ``f`` of a spike is not a
spike of ``f``. Instead the op keeps the running sum ``S_t`` of each input and sends at step t

    t * f(S_t / t) - (t - 1) * f(S_{t-1} / (t - 1)),

so that its output summed up to any step t is exactly ``t * f(mean input so far)``: its rate is ``f`` of the
input rates, causal, at every t. The spiking max-pool does the same for ``max`` (homogeneous, so it needs no
``t``). Chains of such ops stay exact (each sees the rate of the one before); the work is analog, counted
as ``ops_per_sample`` per step.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from spikeport.simulation_clock import SimulationClock


class AnalogOp(nn.Module):
    """``op`` (a module of one or more signals) applied to values, with what one application costs.

    ``ops_per_sample``: the op's own operations on one sample (``graph.analog_cost``), what the ANN spends on
    it too; ``extra_ops_per_sample``: what the spiking form adds each time it runs.
    """

    def __init__(self, op: nn.Module, ops_per_sample: float = 0.0, extra_ops_per_sample: float = 0.0):
        super().__init__()
        self.op = op
        self.ops_per_sample = float(ops_per_sample)
        self.extra_ops_per_sample = float(extra_ops_per_sample)
        self.clock: SimulationClock | None = None
        self.in_static_prefix = False  # set by assembly: computed once per batch from an analog input

    def extra_repr(self) -> str:
        return (
            f"ops_per_sample={self.ops_per_sample:.4g}, extra_ops_per_sample={self.extra_ops_per_sample:.4g}"
        )

    def reset_state(self, record_steps: int = 0) -> None:
        """Stateless: nothing to forget."""

    def forward(self, *inputs: Tensor) -> Tensor:
        return self.op(*inputs)


class AccumulatedOp(AnalogOp):
    """Runs ``op`` on the running means of its inputs (module docstring), once per step.

    Sums are kept in float64, so they do not drift with long runs or with how a run is chunked.
    """

    def __init__(self, op: nn.Module, ops_per_sample: float = 0.0, extra_ops_per_sample: float = 0.0):
        super().__init__(op, ops_per_sample, extra_ops_per_sample)
        self.totals: list[Tensor] | None = None
        self.last: Tensor | None = None  # (t - 1) * f(mean) after the previous step, float64

    def reset_state(self, record_steps: int = 0) -> None:
        self.totals = self.last = None

    def forward(self, *inputs: Tensor) -> Tensor:
        clock = self.clock
        if clock is None:
            raise RuntimeError("AccumulatedOp runs inside a SpikingNetwork; call the network, not the layer")
        if self.in_static_prefix and clock.static_input:  # a constant input's running mean is itself
            return self.op(*inputs)
        steps, batch = clock.steps, clock.batch
        per_step = [constant_or_steps(x, clock) for x in inputs]
        if self.totals is None:
            self.totals = [torch.zeros(p.shape[1:], dtype=torch.float64, device=p.device) for p in per_step]
        running = []
        for total, p in zip(self.totals, per_step, strict=True):
            sums = p.cumsum(dim=0, dtype=torch.float64).add_(total)
            total.copy_(sums[-1])
            running.append(sums)
        elapsed = torch.arange(
            clock.offset + 1, clock.offset + steps + 1, dtype=torch.float64, device=inputs[0].device
        )
        shape = (-1,) + (1,) * (running[0].dim() - 1)
        means = [(s / elapsed.reshape(shape)).to(inputs[0].dtype).flatten(0, 1) for s in running]
        value = self.op(*means)
        cumulative = value.reshape(steps, batch, *value.shape[1:]).double().mul_(elapsed.reshape(shape))
        if self.last is None:
            self.last = torch.zeros_like(cumulative[0])
        out = torch.diff(cumulative, dim=0, prepend=self.last.unsqueeze(0))
        self.last = cumulative[-1].clone()
        return out.to(inputs[0].dtype).flatten(0, 1)


def constant_or_steps(x: Tensor, clock: SimulationClock, bias: Tensor | None = None) -> Tensor:
    """``x`` as ``[steps, batch, ...]``: a value computed once per batch (analog input) stands for every step,
    as a view with stride 0 over the steps. ``bias``: a constant current added first (per channel)."""
    if bias is not None:
        x = x + bias.to(x.dtype)
    if x.shape[0] == clock.batch and clock.steps > 1:
        return x.unsqueeze(0).expand(clock.steps, *x.shape)
    return x.reshape(clock.steps, clock.batch, *x.shape[1:])
