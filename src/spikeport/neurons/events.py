"""What every spiking layer shares: a clock, a fan-out, and per-step event and SOP counters."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from spikeport.neurons.dynamics import BINARY, spike_bits
from spikeport.neurons.layout import sum_over_batch
from spikeport.simulation_clock import SimulationClock


def level_repr(level: Tensor) -> str:
    """A threshold or coding scale for a module's repr: its value, or how many channels have one each."""
    return f"{level.item():.4g}" if level.numel() == 1 else f"per-channel[{level.numel()}]"


class SpikingLayer(nn.Module):
    """Base of the modules that emit events (IF neurons, FS neurons, spiking max-pools).

    Input and output are ``[t * B, ...]`` time-major tensors; the state lives between calls so a long run
    can go through in chunks. While the clock records, a layer counts its events per step and the
    synaptic operations they cause downstream (events x ``fanout``).
    """

    is_neuron = True  # False for layers that only pass events on (max-pools): not counted as neurons
    levels = BINARY  # magnitudes an event can carry (graded spikes: more)

    @property
    def spike_bits(self) -> int:
        """Bits of magnitude an event carries (a sign is counted apart): 1 binary, more for graded spikes."""
        return spike_bits(self.levels)

    def __init__(self) -> None:
        super().__init__()
        # Outgoing synapses per element of one sample (float64), set when the network is assembled.
        self.register_buffer("fanout", torch.zeros(0), persistent=False)
        self.clock: SimulationClock | None = None
        # Per-step totals over the batch, filled chunk by chunk while the clock records.
        self.spikes_per_step: Tensor | None = None
        self.sops_per_step: Tensor | None = None

    def reset_state(self, record_steps: int = 0) -> None:
        """Forget the state; with ``record_steps``, allocate the per-step counters of the coming run.

        Everything that lives through a run is allocated here, before the first chunk: long-lived
        buffers allocated between a chunk's large temporaries pin the allocator's heap and make a long
        run's memory grow with T (measured: 5 GiB at T=2048 on a VGG without this).
        """
        where = {"dtype": torch.float64, "device": self.fanout.device}  # the network's device
        self.spikes_per_step = torch.zeros(record_steps, **where) if record_steps else None
        record_sops = record_steps and self.fanout.numel()
        self.sops_per_step = torch.zeros(record_steps, **where) if record_sops else None

    def running_clock(self) -> SimulationClock:
        if self.clock is None:
            raise RuntimeError(
                f"{type(self).__name__} runs inside a SpikingNetwork; call the network, not the layer"
            )
        return self.clock

    def record_events(self, out: Tensor) -> None:
        """Record this chunk's output ``[t, B, ...]`` as events: each non-zero value is one, whatever it carries."""
        self.record(sum_over_batch(out.ne(0).to(out.dtype)).reshape(out.shape[0], -1).double())

    def record(self, counts: Tensor) -> None:
        """Store this chunk's events per element summed over the batch, ``counts``: [t, elements]."""
        window = slice(self.clock.offset, self.clock.offset + counts.shape[0])
        self.spikes_per_step[window] = counts.sum(dim=1)
        if self.sops_per_step is not None:
            self.sops_per_step[window] = counts @ self.fanout
