"""FSNetwork: a SpikingNetwork of FS neurons, run for a code length K instead of T rate-coded steps."""

from __future__ import annotations

import torch
from torch import Tensor, fx

from spikeport.errors import OptionError
from spikeport.network import Simulation, SpikingNetwork
from spikeport.neurons.fs import FSNeuron
from spikeport.options import positive_int


class FSNetwork(SpikingNetwork):
    """A converted FS network. ``snn(x, timesteps=K)`` returns the decoded read-out, ``[1, B, classes]``.

    Each layer integrates its whole input before it emits its K-step code, so the output exists once,
    after ``K x coded_layers`` steps (``latency``); pipelined, a new image can enter every K steps
    (``throughput``). The network runs layer by layer: every FS neuron computes its spikes step by step and
    the next layer receives their weighted sum (which is what K weighted steps of synaptic input add up to).
    """

    coding = "temporal"

    def __init__(
        self,
        graph_module: fx.GraphModule,
        input_shape: tuple[int, ...],
        input_fanout: Tensor,
        *,
        default_steps: int,
        coded_layers: int,
        analog_input: bool,
        product_ops_per_sample: float = 0.0,
        info: dict | None = None,
    ):
        super().__init__(graph_module, input_shape, input_fanout, info=info)
        self.default_steps = default_steps
        self.coded_layers = coded_layers
        self.analog_input = analog_input
        # Products of two decoded signals (one multiplication per element) and the synaptic ops their analog
        # results drive: non-spiking work, counted as MACs.
        self.product_ops_per_sample = product_ops_per_sample

    def latency(self, steps: int) -> int:
        """Time steps from the input's arrival until the output is complete."""
        return steps * self.coded_layers

    @staticmethod
    def throughput(steps: int) -> float:
        """Images per time step when layers work as a pipeline: each layer is busy K steps per image."""
        return 1.0 / steps

    def supported_steps(self) -> list[int]:
        """Code lengths K that every neuron has a code for."""
        sets = [set(m.supported_steps()) for m in self.modules() if isinstance(m, FSNeuron)]
        return sorted(set.intersection(*sets)) if sets else []

    def analog_macs_per_sample(self) -> Tensor:
        """The analog input's synapses (once per image: FS neurons integrate it whole) and the products'."""
        dense = self.input_fanout.sum() if self.analog_input else torch.zeros((), dtype=torch.float64)
        return dense + self.product_ops_per_sample

    def forward(self, x: Tensor, timesteps: int | None = None) -> Tensor:
        """The decoded read-out, ``[1, B, ...]``, of the K = ``timesteps`` code (None: the converted K)."""
        return self.simulate(x, timesteps).readout

    @torch.no_grad()
    def simulate(
        self, x: Tensor, timesteps: int | None = None, *, record: bool = False, chunk: int | None = None
    ) -> Simulation:
        """Run the K-step code (``timesteps`` = K; None: the converted K) on ``x``, cast to the network's dtype;
        per-step counters cover the K code steps."""
        steps = self.default_steps if timesteps is None else positive_int(timesteps, "timesteps")
        x = self.check_input(x)
        if steps not in self.supported_steps():
            raise OptionError(
                f"this FS network has codes for K = {', '.join(map(str, self.supported_steps()))}, not {steps}"
            )
        layers = self.spiking_layers()
        for layer in layers.values():
            layer.reset_state(record_steps=steps if record else 0)
        self.clock.steps, self.clock.offset, self.clock.batch = steps, 0, x.shape[0]
        self.clock.recording = record
        try:
            out = self.graph_module(x)
        finally:
            self.clock.recording = False
        result = Simulation(readout=out.unsqueeze(0))
        if record:
            for name, layer in layers.items():
                result.spikes[name] = layer.spikes_per_step
                result.sops[name] = (
                    layer.sops_per_step if layer.sops_per_step is not None else torch.zeros(steps)
                )
            analog = torch.zeros(steps, dtype=torch.float64)
            analog[0] = self.analog_macs_per_sample() * x.shape[0]
            result.input_macs = analog
        for layer in layers.values():
            layer.reset_state()
        return result
