"""SpikingNetwork: the converted graph with neurons in place of activations."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor, fx, nn

from spikeport.encoding import Encoding, encode_chunk
from spikeport.errors import InputError, InputShapeError
from spikeport.graph.canonical import views_to_reshapes
from spikeport.graph.static_prefix import split_at_static_prefix
from spikeport.neurons import IFNeuron, SpikingLayer, SpikingMaxPool
from spikeport.options import positive_int
from spikeport.simulation_clock import SimulationClock

DEFAULT_MEMORY_BUDGET = None  # bytes of activations per chunk of time steps; None: default_memory_budget()
CPU_MEMORY_BUDGET = 1 << 30
# On a GPU longer chunks mean fewer, larger kernel launches (H200, T=256, batch 100, fused scan: VGG-16 2.12 ms
# per image with 1 GiB chunks, 1.57 with 4 GiB, 1.47 with 16 GiB; ResNet-20 1.48, 1.04, 0.98).
GPU_MEMORY_BUDGET_CAP = 16 << 30
# On CPU the synaptic layers run fastest per sample when one call holds about a hundred samples: larger
# calls fall out of cache (VGG-style net, T=32, interleaved in one process: 1 x 100 samples per call took
# 0.95 s, 2 x 100 1.30 s, 8 x 100 1.90 s; at batch 25, 1 to 5 steps per call were level, 10 was 30 % slower).
CPU_SAMPLES_PER_CALL = 128


def module_device(module: nn.Module) -> torch.device:
    """Where a module's weights live (the CPU for one without any)."""
    return next((t.device for t in (*module.parameters(), *module.buffers())), torch.device("cpu"))


def default_memory_budget(device: torch.device) -> int:
    """1 GiB of activations per chunk; on a GPU an eighth of its free memory, up to 16 GiB."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return max(CPU_MEMORY_BUDGET, min(free // 8, GPU_MEMORY_BUDGET_CAP))
    return CPU_MEMORY_BUDGET


@dataclass
class Simulation:
    """What one run of ``timesteps`` steps produced; every per-step tensor covers the whole batch."""

    readout: Tensor  # [T, B, ...] running mean of the output layer's input current (ANN units)
    # Per spiking layer (neurons and max-pools): [T] events per step, and the synaptic ops they cause.
    spikes: dict[str, Tensor] = field(default_factory=dict)
    sops: dict[str, Tensor] = field(default_factory=dict)
    input_sops: Tensor | None = None  # [T] synaptic ops of input spikes (Poisson encoding)
    input_macs: Tensor | None = None  # [T] multiply-accumulates of the analog input current


class SpikingNetwork(nn.Module):
    """A converted SNN. ``snn(x, timesteps=T)`` returns the read-out after every step, ``[T, B, classes]``.

    Time is folded into the batch: synaptic layers process all steps of a chunk at once, neurons scan over
    them. The read-out is the output layer's membrane potential divided by the elapsed steps, so it is in
    the ANN's units and its value after step t equals that of a separate run of t steps.
    """

    coding = "rate"  # the read-out improves with every step; FSNetwork's exists after a fixed latency

    def __init__(
        self,
        graph_module: fx.GraphModule,
        input_shape: tuple[int, ...],
        input_fanout: Tensor,
        *,
        encoding: Encoding | str = Encoding.ANALOG,
        encoding_scale: float = 1.0,
        seed: int = 0,
        memory_budget: int | None = DEFAULT_MEMORY_BUDGET,
        info: dict | None = None,
    ):
        super().__init__()
        views_to_reshapes(graph_module)  # activations may be channels-last (``simulation_layout``)
        self.graph_module = graph_module
        self.input_shape = tuple(input_shape)
        self.register_buffer("input_fanout", input_fanout.to(torch.float64), persistent=False)
        self.encoding = Encoding.parse(encoding)
        self.encoding_scale = float(encoding_scale)
        self.seed = seed
        self.memory_budget = memory_budget
        # How image batches are laid out in memory while they go through the network; None: automatic
        # (``simulation_layout``). torch.contiguous_format keeps the input's layout as given.
        self.memory_format: torch.memory_format | None = None
        self.info = dict(info or {})
        # The canonical ANN (BN folded) this network came from, kept out of the module tree so it is neither
        # simulated nor in the state dict; evaluate() uses it for agreement when no ANN is given.
        self.__dict__["ann"] = None
        self.ann_macs_per_image = 0  # set by assembly: synapses of the ANN this network was converted from
        # Set by assembly: the part before the first neurons never mixes with later values, so an analog
        # input (the same at every step) can go through it once per batch.
        self.separable_prefix = False
        self.clock = SimulationClock()
        for layer in self.spiking_layers().values():
            layer.clock = self.clock
        self.elements_per_sample = sum(
            math.prod(n.meta.get("sample_shape", ()))
            for n in graph_module.graph.nodes
            if "sample_shape" in n.meta
        )

    def neuron_nodes(self) -> list[tuple[fx.Node, IFNeuron]]:
        """Graph nodes of the neuron layers with their modules, in execution order."""
        modules = dict(self.graph_module.named_modules())
        return [
            (n, modules[n.target])
            for n in self.graph_module.graph.nodes
            if n.op == "call_module" and isinstance(modules[n.target], IFNeuron)
        ]

    def neurons(self) -> dict[str, IFNeuron]:
        """Neuron layers by module path (stable across save and load), in execution order."""
        return {str(node.target): neuron for node, neuron in self.neuron_nodes()}

    def spiking_layers(self) -> dict[str, SpikingLayer]:
        """Every module that emits events (neurons and spiking max-pools), by module path, in order."""
        modules = dict(self.graph_module.named_modules())
        return {
            str(n.target): modules[n.target]
            for n in self.graph_module.graph.nodes
            if n.op == "call_module" and isinstance(modules[n.target], SpikingLayer)
        }

    def analog_macs_per_sample(self) -> Tensor:
        """Synaptic ops fed by analog values at every step of an analog-input run (counted as MACs).

        The input's own fan-out, plus that of any max-pool before the first neurons: with a static input
        such a pool sends on analog maxima, not spikes.
        """
        total = self.input_fanout.sum()
        for layer in self.spiking_layers().values():
            if isinstance(layer, SpikingMaxPool) and layer.in_static_prefix:
                total = total + layer.fanout.sum()
        return total

    @property
    def static_input(self) -> bool:
        """Whether the pre-neuron part of the graph runs once per batch instead of once per step."""
        return self.separable_prefix and self.encoding is Encoding.ANALOG

    @property
    def dtype(self) -> torch.dtype:
        return next((p.dtype for p in self.graph_module.parameters() if p.is_floating_point()), torch.float32)

    @property
    def device(self) -> torch.device:
        """Where the network simulates: inputs are moved here by ``sp.evaluate``."""
        return self.input_fanout.device

    def static_split(self) -> tuple[fx.GraphModule, fx.GraphModule] | None:
        """The graph split after its static prefix (``graph.static_prefix``), built once and kept while the
        graph and its modules stay the same."""
        key = (self.graph_module, tuple(map(id, self.graph_module.modules())))
        cached = self.__dict__.get("_static_split")
        if cached is None or cached[0][0] is not key[0] or cached[0][1] != key[1]:
            cached = (key, split_at_static_prefix(self.graph_module))
            self.__dict__["_static_split"] = cached
        return cached[1]

    def _apply(self, fn, recurse=True):
        # .to(device) / .cuda() / .double() also move the reference ANN, which is kept out of the module
        # tree (not simulated, not saved) but must run where the network runs for agreement.
        if self.__dict__.get("ann") is not None:
            self.ann._apply(fn)
        self.__dict__.pop("_static_split", None)  # it may hold tensors (constants) that move
        return super()._apply(fn, recurse)

    def simulation_layout(self, x: Tensor) -> Tensor:
        """``x`` laid out for the simulation: image batches channels-last on CPU, where oneDNN's convolutions
        run fastest (ResNet-20, 2 cores: 16-22 % less time; ``python bench/simulate.py``), and
        everything after them (neuron states included) follows that layout. Rounding inside the
        convolutions differs between layouts, so read-outs may differ in the last bits from a
        ``torch.contiguous_format`` run. A single-channel image is the same memory in either layout: such
        networks keep PyTorch's default order throughout."""
        fmt = self.memory_format
        if fmt is None:
            fmt = torch.channels_last if x.device.type == "cpu" else torch.preserve_format
        if x.dim() != 4 or fmt in (torch.preserve_format, torch.contiguous_format):
            return x
        return x.contiguous(memory_format=fmt)

    def check_input(self, x: Tensor) -> Tensor:
        """``x`` as the network computes on it: a non-empty float batch of the converted shape, cast to the
        network's dtype (a float64 batch for a float32 network is what users mean, not an error). Integer
        input is refused: pixels 0..255 need the scaling the ANN was trained with, which we cannot guess."""
        if not isinstance(x, Tensor) or x.dim() < 1 or tuple(x.shape[1:]) != self.input_shape:
            got = list(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise InputShapeError(
                f"expected input of shape [B, {', '.join(map(str, self.input_shape))}], got {got}"
            )
        if not x.is_floating_point():
            raise InputError(
                f"input x is {str(x.dtype).removeprefix('torch.')}, the network takes floats; scale it as the "
                "ANN was trained on, e.g. x.float() / 255"
            )
        if x.shape[0] == 0:
            raise InputError(f"input x is an empty batch (shape {list(x.shape)}); pass at least one sample")
        return x.to(self.dtype)

    def chunk_steps(self, batch: int, timesteps: int, device: torch.device | str = "cpu") -> int:
        """Time steps per chunk: within the memory budget and, on CPU, cache-friendly."""
        device = torch.device(device)
        budget = self.memory_budget if self.memory_budget is not None else default_memory_budget(device)
        per_step = max(1, batch * self.elements_per_sample * 4)
        steps = budget // per_step
        if device.type == "cpu":
            steps = min(steps, CPU_SAMPLES_PER_CALL // batch)
        return max(1, min(timesteps, steps))

    def forward(self, x: Tensor, timesteps: int = 32) -> Tensor:
        """The read-out after every step, ``[timesteps, B, ...]``; float ``x`` is cast to the network's dtype."""
        return self.simulate(x, timesteps).readout

    @torch.no_grad()
    def simulate(
        self, x: Tensor, timesteps: int, *, record: bool = False, chunk: int | None = None
    ) -> Simulation:
        """Run ``timesteps`` steps on the analog batch ``x`` (cast to the network's dtype); ``record`` also
        counts spikes and SOPs."""
        from spikeport.simulate import run

        x = self.check_input(x)
        timesteps = positive_int(timesteps, "timesteps")
        chunk = chunk or self.chunk_steps(x.shape[0], timesteps, x.device)
        return run(self, x, timesteps, record=record, chunk=chunk)

    def encode(self, x: Tensor, steps: int, generator: torch.Generator | None) -> Tensor:
        return encode_chunk(x, steps, self.encoding, generator, self.encoding_scale)
