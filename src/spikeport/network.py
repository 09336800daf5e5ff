"""SpikingNetwork: the converted graph with neurons in place of activations, run through its coding."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, fx, nn

from spikeport.assembly.static_prefix import split_at_static_prefix
from spikeport.coding import Coding, RateCoding, Simulation
from spikeport.errors import InputError, InputShapeError
from spikeport.graph.canonical import views_to_reshapes
from spikeport.neurons import CurrentProbe, IFNeuron, SpikingLayer
from spikeport.neurons.analog import AnalogOp
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


def model_dtype(module: nn.Module) -> torch.dtype:
    """The floating dtype a module computes in (float32 unless its weights say otherwise)."""
    return next((p.dtype for p in module.parameters() if p.is_floating_point()), torch.float32)


def default_memory_budget(device: torch.device) -> int:
    """1 GiB of activations per chunk; on a GPU an eighth of its free memory, up to 16 GiB."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return max(CPU_MEMORY_BUDGET, min(free // 8, GPU_MEMORY_BUDGET_CAP))
    return CPU_MEMORY_BUDGET


class _Detached:
    """Holds a module outside the network's module tree: neither simulated nor in its state dict."""

    def __init__(self, module: nn.Module | None):
        self.module = module


class SpikingNetwork(nn.Module):
    """A converted SNN: the ANN's graph with spiking layers in place of its activations, and its coding.

    ``snn(x, timesteps=S)`` returns the read-outs of a run of S steps, ``[R, B, classes]`` in the ANN's units:
    one row per step at which the output exists, the last row the answer after S steps. A rate code has a
    read-out after every step (R = S, the running mean of the output layer's input current, so row t equals
    a separate run of t steps); a temporal code has one, the decoded output of its S-step code (R = 1).
    ``timesteps`` defaults to ``coding.default_steps``.

    Time is folded into the batch: synaptic layers process all steps of a chunk at once, spiking layers
    scan over them; ``coding`` (``spikeport.coding``) says how a run goes.
    """

    def __init__(
        self,
        graph_module: fx.GraphModule,
        input_shape: tuple[int, ...],
        input_fanout: Tensor,
        coding: Coding | None = None,
        *,
        ann: nn.Module | None = None,
        ann_macs_per_image: int = 0,
        separable_prefix: bool = False,
        memory_budget: int | None = DEFAULT_MEMORY_BUDGET,
        info: dict | None = None,
    ):
        super().__init__()
        views_to_reshapes(graph_module)  # activations may be channels-last (``simulation_layout``)
        self.graph_module = graph_module
        self.input_shape = tuple(input_shape)
        self.register_buffer("input_fanout", input_fanout.to(torch.float64), persistent=False)
        self.coding = coding if coding is not None else RateCoding()
        self.memory_budget = memory_budget
        # How image batches are laid out in memory while they go through the network; None: automatic
        # (``simulation_layout``). torch.contiguous_format keeps the input's layout as given.
        self.memory_format: torch.memory_format | None = None
        self.info = dict(info or {})
        # The canonical ANN (BN folded) this network came from, kept out of the module tree so it is neither
        # simulated nor in the state dict; evaluate() uses it for agreement when no ANN is given.
        self._source = _Detached(ann)
        self.ann_macs_per_image = ann_macs_per_image  # synapses of the ANN this network was converted from
        # The part before the first neurons never mixes with later values, so an input that is the same at
        # every step can go through it once per batch.
        self.separable_prefix = separable_prefix
        self._split_cache: dict = {}
        self.clock = SimulationClock()
        for layer in [*self.spiking_layers().values(), *self.analog_layers().values()]:
            layer.clock = self.clock
        self.elements_per_sample = sum(
            math.prod(n.meta.get("sample_shape", ()))
            for n in graph_module.graph.nodes
            if "sample_shape" in n.meta
        )

    @property
    def ann(self) -> nn.Module | None:
        """The ANN this network was converted from (BN folded), the reference for agreement."""
        return self._source.module

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

    def analog_layers(self) -> dict[str, AnalogOp]:
        """Every analog op (normalisations, softmax, products...), by module path, in order."""
        modules = dict(self.graph_module.named_modules())
        return {
            str(n.target): modules[n.target]
            for n in self.graph_module.graph.nodes
            if n.op == "call_module" and isinstance(modules[n.target], AnalogOp)
        }

    def reset_state(self, record_steps: int = 0) -> None:
        """Every stateful layer forgets its state (spiking layers prepare counters for ``record_steps``)."""
        for layer in self.spiking_layers().values():
            layer.reset_state(record_steps)
        for layer in self.analog_layers().values():
            layer.reset_state()

    def analog_macs_per_sample(self) -> Tensor:
        """Synaptic ops fed by analog values per sample and step of the output (the coding says which)."""
        return self.coding.analog_macs_per_sample(self)

    def supported_steps(self) -> list[int] | None:
        """The step counts this network can run (None: any)."""
        return self.coding.supported_steps(self)

    @property
    def static_input(self) -> bool:
        """Whether the pre-neuron part of the graph runs once per batch instead of once per step."""
        return self.separable_prefix and self.coding.constant_input

    @property
    def dtype(self) -> torch.dtype:
        return model_dtype(self.graph_module)

    @property
    def device(self) -> torch.device:
        """Where the network simulates: inputs are moved here by ``sp.evaluate``."""
        return self.input_fanout.device

    def static_split(self) -> tuple[fx.GraphModule, fx.GraphModule] | None:
        """The graph split after its static prefix (``assembly.static_prefix``), built once and kept while the
        graph and its modules stay the same."""
        key = (self.graph_module, tuple(map(id, self.graph_module.modules())))
        cached = self._split_cache.get("split")
        if cached is None or cached[0][0] is not key[0] or cached[0][1] != key[1]:
            cached = (key, split_at_static_prefix(self.graph_module))
            self._split_cache["split"] = cached
        return cached[1]

    @contextmanager
    def observing(self, observers: dict[str, Callable[[Tensor], None]]) -> Iterator[None]:
        """The simulation hook of methods that calibrate on the SNN itself (rmp, calibrated).

        Inside the block, each IF layer named in ``observers`` (by its activation node's name) hands its
        input currents, ``[steps, batch, ...]``, to its observer at every chunk and emits nothing, and the
        graph ends at those layers, so nothing deeper runs; simulate as usual. Afterwards the network is
        as it was.
        """
        gm, graph = self.graph_module, self.graph_module.graph
        targets = {
            n.name: str(n.target) for n in graph.nodes if n.name in observers and n.op == "call_module"
        }
        if set(targets) != set(observers):
            raise ValueError(f"no IF layers named {sorted(set(observers) - set(targets))} in this network")
        originals = {name: gm.get_submodule(target) for name, target in targets.items()}
        truncated = copy.deepcopy(graph)
        probes = [n for n in truncated.nodes if n.name in observers]
        output = next(n for n in truncated.nodes if n.op == "output")
        with truncated.inserting_before(output):
            output.args = (truncated.call_function(torch.cat, (probes, 1)),)
        try:
            for name, target in targets.items():
                gm.set_submodule(target, CurrentProbe(originals[name], observers[name]))
            gm.graph = truncated
            truncated.eliminate_dead_code()  # needs the graph's module: whether a call is pure
            gm.recompile()
            yield
        finally:
            for name, target in targets.items():
                gm.set_submodule(target, originals[name])
            gm.graph = graph
            self._split_cache.clear()

    def _apply(self, fn, recurse=True):
        # .to(device) / .cuda() / .double() also move the reference ANN, which is kept out of the module
        # tree (not simulated, not saved) but must run where the network runs for agreement.
        if self.ann is not None:
            self.ann._apply(fn)
        self._split_cache.clear()  # it may hold tensors (constants) that move
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

    def forward(self, x: Tensor, timesteps: int | None = None) -> Tensor:
        """The read-outs of a run of ``timesteps`` steps, ``[R, B, ...]`` (see the class docstring)."""
        return self.simulate(x, timesteps).readout

    @torch.no_grad()
    def simulate(
        self, x: Tensor, timesteps: int | None = None, *, record: bool = False, chunk: int | None = None
    ) -> Simulation:
        """Run ``timesteps`` steps (default: the coding's) on the analog batch ``x``, cast to the network's
        dtype; ``record`` also counts spikes and SOPs; ``chunk``: steps per chunk of a rate code."""
        steps = self.coding.default_steps if timesteps is None else positive_int(timesteps, "timesteps")
        x = self.check_input(x)
        self.coding.check_steps(self, [steps])
        return self.coding.simulate(self, x, steps, record=record, chunk=chunk)
