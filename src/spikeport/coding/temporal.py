"""Temporal (FS) coding: each layer sends a K-step code of its value once it has integrated its whole input.

The output exists once, after K x (coded layers on the longest path) steps; pipelined, a new image can
enter every K steps. Each code length K is its own run, answering that K alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, ClassVar

import torch
from torch import Tensor

from spikeport.coding.base import Coding, Run, Simulation, recorded
from spikeport.errors import OptionError
from spikeport.neurons.fs import FSNeuron
from spikeport.options import Count, Range

if TYPE_CHECKING:
    from spikeport.network import SpikingNetwork


@dataclass
class TemporalCoding(Coding):
    """FS neurons' K-step codes; the network runs layer by layer, each neuron's spikes step by step."""

    name: ClassVar[str] = "temporal"
    steps_symbol: ClassVar[str] = "K"
    step_curves: ClassVar[bool] = False
    nir_refusal: ClassVar[str | None] = (
        "NIR has no FS neuron (per-step thresholds, resets and output weights of a temporal code); export "
        "a rate-coded conversion (rmp, ecc, max, percentile)"
    )
    plot_style: ClassVar[str] = "o-"

    converted_steps: Count = 8  # K of a plain snn(x)
    coded_layers: Annotated[int, Range(0)] = 1  # FS neuron layers on the longest path
    analog_input: bool = True  # the input is injected whole (else coded by FS neurons of its own)
    # Networks saved before analog ops were layers of their own: their products' work, counted as MACs.
    product_ops_per_sample: Annotated[float, Range(0)] = 0.0

    @property
    def default_steps(self) -> int:
        return self.converted_steps

    def supported_steps(self, snn: SpikingNetwork) -> list[int]:
        """Code lengths K that every neuron has a code for."""
        sets = [set(m.supported_steps()) for m in snn.modules() if isinstance(m, FSNeuron)]
        return sorted(set.intersection(*sets)) if sets else []

    def check_steps(self, snn: SpikingNetwork, steps: list[int]) -> None:
        supported = self.supported_steps(snn)
        missing = [k for k in steps if k not in supported]
        if missing:
            raise OptionError(
                f"this FS network has no codes for K = {', '.join(map(str, missing))}; it runs K = "
                f"{', '.join(map(str, supported))}"
            )

    def evaluation_steps(self, snn: SpikingNetwork, timesteps: list[int], codes: list[int]) -> list[int]:
        supported = self.supported_steps(snn)
        return [k for k in codes if k in supported] or [self.converted_steps]

    def runs(self, steps: list[int]) -> list[Run]:
        return [Run(k, (k,)) for k in steps]

    def readout_row(self, run: Run, point: int) -> int:
        return 0

    def counted_steps(self, run: Run, point: int) -> int:
        return run.steps

    def latency(self, steps: int) -> int:
        return steps * self.coded_layers

    def analog_runs(self, steps: int) -> int:
        """An analog op acts once on the decoded values of an inference, whatever K."""
        return 1

    def throughput(self, steps: int) -> float:
        return 1.0 / steps

    def analog_macs_per_sample(self, snn: SpikingNetwork) -> Tensor:
        """The analog input's synapses (once per image: FS neurons integrate it whole) and the products'."""
        dense = snn.input_fanout.sum() if self.analog_input else torch.zeros((), dtype=torch.float64)
        return dense + self.product_ops_per_sample

    def simulate(
        self, snn: SpikingNetwork, x: Tensor, steps: int, *, record: bool, chunk: int | None
    ) -> Simulation:
        """One pass: every FS layer runs its K steps on its whole input; per-step counters cover the K steps."""
        layers = snn.spiking_layers()
        for layer in layers.values():
            layer.reset_state(record_steps=steps if record else 0)
        snn.clock.steps, snn.clock.offset, snn.clock.batch = steps, 0, x.shape[0]
        snn.clock.recording = record
        try:
            out = snn.graph_module(x)
        finally:
            snn.clock.recording = False
        result = Simulation(readout=out.unsqueeze(0))
        if record:
            recorded(layers, steps, result)
            analog = torch.zeros(steps, dtype=torch.float64)
            analog[0] = self.analog_macs_per_sample(snn) * x.shape[0]
            result.input_macs = analog
        for layer in layers.values():
            layer.reset_state()
        return result

    # --- evaluations as data: one point per code length, placed by its latency -------------------------

    @classmethod
    def steps_header(cls) -> str:
        return "K | latency"

    @classmethod
    def steps_cell(cls, ev, t: int) -> str:
        return f"{t} | {ev.latency_steps[t]}"

    @classmethod
    def table_notes(cls, ev) -> str:
        longest = ev.timesteps[-1]
        per_layer = ", ".join(
            f"{layer.name} {layer.spikes_per_image[longest] / layer.neurons:.2f}" for layer in ev.layers
        )
        return (
            "\nK: code length (steps per layer); latency: steps until the output exists (K × coded layers); "
            "pipelined, one image enters every K steps."
            f"\nSpikes per neuron by layer at K={longest}: {per_layer}."
        )

    @classmethod
    def series(cls, ev, metric: str, cost: str) -> tuple[list[int], list[float], list[float]]:
        codes = ev.timesteps
        values, costs = getattr(ev, metric), getattr(ev, cost)
        return [ev.latency_steps[k] for k in codes], [values[k] for k in codes], [costs[k] for k in codes]

    @classmethod
    def latency_reaching(cls, ev, target: float, metric: str) -> int | None:
        """The latency of the shortest code from which every evaluated code reaches ``target``."""
        values = getattr(ev, metric)
        reached = None
        for k in sorted(ev.timesteps, reverse=True):
            if values[k] is None or values[k] < target:
                break
            reached = k
        return None if reached is None else ev.latency_steps[reached]

    @classmethod
    def cost_at(cls, ev, steps: int) -> tuple[float, float | None]:
        code = next(k for k in ev.timesteps if ev.latency_steps[k] == steps)
        return ev.sops_per_image[code], ev.energy_per_image[code]
