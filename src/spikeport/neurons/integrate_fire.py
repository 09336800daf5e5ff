"""The integrate-and-fire neuron module that replaces an activation in the converted graph."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from spikeport.neurons.dynamics import Reset, if_scan
from spikeport.simulation_clock import SimulationClock


class IFNeuron(nn.Module):
    """Integrate-and-fire neurons for one activation site, time folded into the batch.

    Input and output are ``[t * B, ...]`` time-major tensors; the membrane is carried between calls so
    that a long run can go through in chunks. While the clock records, the module also counts its
    spikes and the synaptic operations they cause downstream (spikes x ``fanout``) for every step.
    """

    def __init__(self, threshold: Tensor, reset: Reset | str = Reset.SOFT, initial_potential: float = 0.0):
        super().__init__()
        self.register_buffer("threshold", threshold.detach().clone())
        # Outgoing synapses per neuron of one sample (float64), set when the network is assembled.
        self.register_buffer("fanout", torch.zeros(0), persistent=False)
        self.reset_mode = Reset.parse(reset)
        self.initial_potential = float(initial_potential)
        self.clock: SimulationClock | None = None
        # While set, the neuron only observes its input currents and stays silent (threshold calibration).
        self.observer: Callable[[Tensor], None] | None = None
        self.v: Tensor | None = None
        # Per-step totals over the batch, filled chunk by chunk while the clock records.
        self.spikes_per_step: Tensor | None = None
        self.sops_per_step: Tensor | None = None

    def extra_repr(self) -> str:
        th = self.threshold
        shown = f"{th.item():.4g}" if th.numel() == 1 else f"per-channel[{th.numel()}]"
        return f"threshold={shown}, reset={self.reset_mode.value}, initial_potential={self.initial_potential}"

    def reset_state(self, record_steps: int = 0) -> None:
        """Forget the membrane; with ``record_steps``, allocate the per-step counters of the coming run.

        Everything that lives through a run is allocated here, before the first chunk: long-lived
        buffers allocated between a chunk's large temporaries pin the allocator's heap and make a long
        run's memory grow with T (measured: 5 GiB at T=2048 on a VGG without this).
        """
        self.v = None
        self.spikes_per_step = torch.zeros(record_steps, dtype=torch.float64) if record_steps else None
        record_sops = record_steps and self.fanout.numel()
        self.sops_per_step = torch.zeros(record_steps, dtype=torch.float64) if record_sops else None

    def forward(self, x: Tensor) -> Tensor:
        clock = self.clock
        if clock is None:
            raise RuntimeError("IFNeuron runs inside a SpikingNetwork; call the network, not the neuron")
        steps = clock.steps
        if self.observer is not None:
            self.observer(x)
            return x.new_zeros(steps * clock.batch, *x.shape[1:])
        if (
            x.shape[0] == clock.batch
        ):  # a current that is the same at every step (analog input, computed once)
            currents = x.unsqueeze(0).expand(steps, *x.shape)
        else:
            currents = x.reshape(steps, clock.batch, *x.shape[1:])
        if self.v is None:
            self.v = (self.initial_potential * self.threshold).expand(currents.shape[1:]).to(x.dtype).clone()
        # The state keeps its storage across chunks, so a chunk's temporaries are all freed together.
        _, out = if_scan(self.v, currents, self.threshold.to(x.dtype), self.reset_mode, update_state=True)
        if clock.recording:
            self._count(out)
        return out.reshape(steps * clock.batch, *x.shape[1:])

    def _count(self, out: Tensor) -> None:
        # Spike counts per neuron summed over the batch, [t, neurons]: summing the outputs (multiples of the
        # threshold) and dividing is one float pass, where counting a bool mask would copy it to int64 first;
        # the float32 sum of at most B equal values is exact to far better than 0.5 after division.
        steps, batch = out.shape[0], out.shape[1]
        summed = out.reshape(steps, batch, -1).sum(dim=1).double()
        counts = (summed / self.threshold.double().expand(out.shape[2:]).reshape(1, -1)).round_()
        window = slice(self.clock.offset, self.clock.offset + steps)
        self.spikes_per_step[window] = counts.sum(dim=1)
        if self.sops_per_step is not None:
            self.sops_per_step[window] = counts @ self.fanout
