"""Rate coding: values are firing rates, read out as the running mean of the output after every step.

One run of T steps answers every T' <= T (the simulation is causal), so an evaluation needs a single run
per batch and keeps a curve of every step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import torch
from torch import Tensor

from spikeport.coding.base import Coding, Run, Simulation, recorded
from spikeport.encoding import Encoding, encode_chunk
from spikeport.neurons import SpikingMaxPool
from spikeport.options import Positive

if TYPE_CHECKING:
    from spikeport.network import SpikingNetwork

DEFAULT_STEPS = 32  # what snn(x) runs without timesteps


@dataclass
class RateCoding(Coding):
    """Integrate-and-fire neurons' rates; the input enters as a current every step, or as Poisson spikes."""

    name: ClassVar[str] = "rate"
    steps_symbol: ClassVar[str] = "T"
    step_curves: ClassVar[bool] = True

    encoding: Encoding | str = Encoding.ANALOG
    encoding_scale: Positive = 1.0  # Poisson: an input of this size spikes at every step
    seed: int = 0  # Poisson: the spike trains' generator seed

    @property
    def default_steps(self) -> int:
        return DEFAULT_STEPS

    @property
    def constant_input(self) -> bool:
        return self.encoding is Encoding.ANALOG

    def runs(self, steps: list[int]) -> list[Run]:
        longest = max(steps)
        return [Run(longest, tuple(range(1, longest + 1)))]

    def readout_row(self, run: Run, point: int) -> int:
        return point - 1

    def counted_steps(self, run: Run, point: int) -> int:
        return point

    def latency(self, steps: int) -> int:
        return steps

    def analog_runs(self, steps: int) -> int:
        """An analog op runs at every step, on the inputs accumulated so far."""
        return steps

    def throughput(self, steps: int) -> float:
        return 1.0 / steps

    def analog_macs_per_sample(self, snn: SpikingNetwork) -> Tensor:
        """The input's own fan-out, plus that of any max-pool before the first neurons: with a static input
        such a pool sends on analog maxima, not spikes. Counted at every step."""
        total = snn.input_fanout.sum()
        for layer in snn.spiking_layers().values():
            if isinstance(layer, SpikingMaxPool) and layer.in_static_prefix:
                total = total + layer.fanout.sum()
        return total

    def simulate(
        self, snn: SpikingNetwork, x: Tensor, steps: int, *, record: bool, chunk: int | None
    ) -> Simulation:
        """``steps`` steps in chunks of ``chunk`` (default: ``snn.chunk_steps``), state carried between them."""
        chunk = chunk or snn.chunk_steps(x.shape[0], steps, x.device)
        layers = snn.spiking_layers()
        snn.reset_state(record_steps=steps if record else 0)
        poisson = self.encoding is Encoding.POISSON
        generator = torch.Generator(device=x.device).manual_seed(self.seed) if poisson else None
        batch = x.shape[0]
        total: Tensor | None = None  # the read-out summed over the steps so far, float64
        readout: Tensor | None = None  # [steps, B, ...]: the running mean after every step
        input_events = torch.zeros(steps, dtype=torch.float64, device=x.device) if record else None
        static = snn.static_input
        snn.clock.recording = record
        snn.clock.batch = batch
        snn.clock.static_input = static
        split = snn.static_split() if static else None
        try:
            constants = split[0](snn.simulation_layout(x)) if split is not None else ()  # once per batch
            done = 0
            while done < steps:
                length = min(chunk, steps - done)
                snn.clock.steps, snn.clock.offset = length, done
                frames = (
                    x if static else encode_chunk(x, length, self.encoding, generator, self.encoding_scale)
                )
                if record and poisson and not static:
                    counts = frames.reshape(length, batch, -1).ne(0).sum(dim=1).to(torch.float64)
                    input_events[done : done + length] = counts @ snn.input_fanout
                out = (
                    split[1](*constants)
                    if split is not None
                    else snn.graph_module(snn.simulation_layout(frames))
                )
                out = out.reshape(length, batch, *out.shape[1:])
                running = out.cumsum(dim=0, dtype=torch.float64)
                if total is None:
                    total = torch.zeros_like(running[0])
                    readout = out.new_empty(steps, *out.shape[1:])
                running += total
                total.copy_(running[-1])
                elapsed = torch.arange(done + 1, done + length + 1, dtype=torch.float64, device=x.device)
                readout[done : done + length] = running / elapsed.reshape(-1, *([1] * (running.dim() - 1)))
                done += length
        finally:
            snn.clock.recording = False
        result = Simulation(readout=readout)
        if record:
            recorded(layers, steps, result)
            if poisson:
                result.input_sops = input_events
            else:
                dense = self.analog_macs_per_sample(snn) * batch
                result.input_macs = dense.expand(steps).clone()
        snn.reset_state()
        return result

    # --- evaluations as data: a curve of every step ----------------------------------------------------

    @classmethod
    def series(cls, ev, metric: str, cost: str) -> tuple[list[int], list[float], list[float]]:
        curve = ev.curves[metric]
        return list(range(1, len(curve) + 1)), curve, ev.curves[cost]

    @classmethod
    def latency_reaching(cls, ev, target: float, metric: str) -> int | None:
        curve = ev.curves.get(metric)
        if not curve or curve[-1] is None or curve[-1] < target:
            return None
        step = len(curve)
        while step > 1 and curve[step - 2] is not None and curve[step - 2] >= target:
            step -= 1
        return step

    @classmethod
    def cost_at(cls, ev, steps: int) -> tuple[float, float | None]:
        energy = ev.curves["energy_per_image"][steps - 1] if "energy_per_image" in ev.curves else None
        return ev.curves["sops_per_image"][steps - 1], energy
