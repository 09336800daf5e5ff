"""convert's last step: put neurons with their thresholds where the activations were."""

from __future__ import annotations

import copy
import operator
from collections.abc import Callable

import torch
from torch import Tensor, fx, nn

from spikeport.assembly.static_prefix import static_prefix
from spikeport.coding import RateCoding
from spikeport.encoding import Encoding
from spikeport.graph.analog_cost import accumulation_ops, analog_ops
from spikeport.graph.canonical import insert_after
from spikeport.graph.ops import Role, role_of
from spikeport.graph.prepare import PreparedModel
from spikeport.layers import SpikeSite, TiledAvgPool2d, TiledMaxPool2d, capped
from spikeport.network import DEFAULT_MEMORY_BUDGET, SpikingNetwork, model_dtype, module_device
from spikeport.neurons import IFNeuron, Reset, SpikingLayer, SpikingMaxPool
from spikeport.neurons.analog import AccumulatedOp
from spikeport.neurons.dynamics import BINARY
from spikeport.neurons.signed import SignedIFNeuron

# Makes the spiking layer of one activation site from its threshold and spike value (None: the threshold).
NeuronFactory = Callable[[Tensor, Tensor | None], SpikingLayer]


def broadcastable(threshold: Tensor, sample_shape: tuple[int, ...], dtype: torch.dtype) -> Tensor:
    """A layer-wise (scalar) or channel-wise ([C]) threshold shaped to broadcast over [B, C, ...]."""
    threshold = threshold.detach().to(dtype)
    if threshold.numel() == 1:
        return threshold.reshape(())
    return threshold.reshape(-1, *([1] * (len(sample_shape) - 1)))


def use_tiled_pools(gm: fx.GraphModule) -> None:
    """Average and max pools with non-overlapping, unpadded windows, in the graph or inside spiking pools,
    become ``TiledAvgPool2d`` / ``TiledMaxPool2d``: the same numbers as the ANN's pools, faster on CPU."""
    for name, module in list(gm.named_modules()):
        for tiled in (TiledAvgPool2d, TiledMaxPool2d):
            if name and tiled.tiles(module):
                gm.set_submodule(name, tiled.like(module))


def assemble(
    prepared: PreparedModel,
    thresholds: dict[str, Tensor],
    *,
    reset: Reset | str = Reset.SOFT,
    initial_potential: float = 0.0,
    encoding: Encoding | str = Encoding.ANALOG,
    encoding_scale: float = 1.0,
    seed: int = 0,
    memory_budget: int | None = DEFAULT_MEMORY_BUDGET,
    info: dict | None = None,
    ann: torch.nn.Module | None = None,
    spike_values: dict[str, Tensor] | None = None,
    neuron: NeuronFactory | None = None,
    levels: int = BINARY,
) -> SpikingNetwork:
    """Build the SpikingNetwork; ``thresholds`` maps activation node names to layer/channel thresholds.

    ``neuron(threshold, spike_value)`` makes the spiking layer of one activation site (the method's choice;
    default: ``IFNeuron`` with ``reset`` and ``initial_potential``), the threshold shaped to broadcast over
    ``[B, C, ...]``. ``levels`` > 1: graded spikes of that many levels (``dynamics.graded_if_scan``), for
    the default neurons and the signed ones alike.

    ``ann`` is the reference for agreement (None: none, as for imported networks). ``spike_values``: what
    the spikes of some layers carry instead of their threshold (binary spikes of imported networks).
    """
    gm = copy.deepcopy(prepared.graph_module)
    dtype = model_dtype(gm)
    nodes = {n.name: n for n in gm.graph.nodes}
    modules = dict(gm.named_modules())
    fanouts = dict(prepared.spike_fanouts)
    for activation in prepared.activation_nodes():
        node = nodes[activation.name]
        shape = node.meta["sample_shape"]
        module = modules[node.target]
        threshold = broadcastable(capped(thresholds[node.name], module), shape, dtype)
        if isinstance(module, SpikeSite):
            gm.set_submodule(str(node.target), SignedIFNeuron(threshold, levels=levels))
            continue
        if isinstance(module, VALUE_ACTIVATIONS):
            fanouts[spikes_after(gm, node, module, threshold, levels)] = fanouts[node.name]
            continue
        value = (spike_values or {}).get(node.name)
        value = None if value is None else broadcastable(value, shape, dtype)
        if neuron is None:
            gm.set_submodule(
                str(node.target), IFNeuron(threshold, reset, initial_potential, value, levels=levels)
            )
        else:
            gm.set_submodule(str(node.target), neuron(threshold, value))
    modules = dict(gm.named_modules())
    for node in gm.graph.nodes:
        role = role_of(node, modules)
        if role is Role.MAX_POOL:
            gm.set_submodule(str(node.target), SpikingMaxPool(modules[node.target]))
        elif role is Role.ANALOG:
            gm.set_submodule(str(node.target), on_accumulated_inputs(node, modules[node.target]))
    use_tiled_pools(gm)
    static = static_prefix(gm)
    modules = dict(gm.named_modules())
    for node in gm.graph.nodes:
        layer = modules.get(node.target) if node.op == "call_module" else None
        if isinstance(layer, AccumulatedOp):
            layer.in_static_prefix = static is not None and node in static
        if isinstance(layer, SpikingLayer):
            layer.fanout = fanouts[node.name]
        if isinstance(layer, SpikingMaxPool):
            layer.in_static_prefix = static is not None and node in static
            layer.spike_unit = spike_unit_of(node.all_input_nodes[0], modules)
            layer.levels = levels_of(node.all_input_nodes[0], modules)
        if isinstance(layer, IFNeuron):
            layer.owns_input = owns_fresh_input(node, modules)
    source = next(n for n in gm.graph.nodes if n.op == "placeholder")
    gm.recompile()
    snn = SpikingNetwork(
        gm,
        prepared.input_shape,
        fanouts[source.name],
        RateCoding(encoding, encoding_scale, seed),
        ann=ann,
        ann_macs_per_image=prepared.ann_macs_per_image,
        separable_prefix=static is not None,
        memory_budget=memory_budget,
        info=info,
    )
    return snn.to(module_device(prepared.graph_module))  # thresholds and fan-outs were computed on the CPU


# Activations no rate of binary spikes expresses: computed on accumulated inputs, sent on as signed spikes.
VALUE_ACTIVATIONS = (nn.SiLU, nn.GELU, nn.Sigmoid, nn.Tanh, nn.Hardswish, nn.LeakyReLU)


def on_accumulated_inputs(node: fx.Node, op: nn.Module) -> AccumulatedOp:
    """An analog op (or an activation computed on values) as it runs under rate coding, with its cost."""
    inputs = input_shapes(node)
    output = tuple(node.meta["sample_shape"])
    return AccumulatedOp(op, analog_ops(op, inputs, output), accumulation_ops(inputs, output))


def input_shapes(node: fx.Node) -> list[tuple[int, ...]]:
    """The per-sample shape of each signal argument, in order (``sdpa(q, q, q)`` has three)."""
    return [tuple(a.meta["sample_shape"]) for a in node.args if isinstance(a, fx.Node)]


def spikes_after(
    gm: fx.GraphModule, node: fx.Node, activation: nn.Module, level: Tensor, levels: int = BINARY
) -> str:
    """Compute ``activation`` (GELU, SiLU...) on accumulated inputs and send its values on as signed spikes.

    ``level`` is the calibrated range of the activation's input (as a ReLU's threshold); the spikes' threshold
    is the largest magnitude the activation reaches on [-level, level]. Returns the new neurons' node name.
    """
    gm.set_submodule(str(node.target), on_accumulated_inputs(node, activation))
    grid = torch.linspace(-1.0, 1.0, 2001, dtype=torch.float64).reshape(-1, *([1] * level.dim()))
    with torch.no_grad():
        reach = copy.deepcopy(activation).double()(grid * level.double()).abs().amax(dim=0)
    threshold = torch.where(reach > 0, reach, level.double()).to(level.dtype)
    spikes = insert_after(gm, node, SignedIFNeuron(threshold, levels=levels), f"{node.name}_spikes")
    spikes.meta["sample_shape"] = node.meta["sample_shape"]
    return spikes.name


# Ops whose output is a new tensor (never a view of another node's value).
FRESH_OUTPUT_ROLES = (Role.WEIGHTED, Role.POOL, Role.AFFINE)


def owns_fresh_input(node: fx.Node, modules: dict) -> bool:
    """Whether ``node`` is the only reader of an input that a layer or an addition has just computed.

    Then nothing else sees that tensor, so the neurons may write their spikes over it.
    """
    (source,) = node.all_input_nodes
    if len(source.users) != 1:
        return False
    role = role_of(source, modules)
    if role in FRESH_OUTPUT_ROLES:
        return True
    return role is Role.LINEAR and source.target in (operator.add, torch.add, "add")


def spike_unit_of(source: fx.Node, modules: dict) -> Tensor | None:
    """What each spike of ``source`` carries when it is a neuron layer (its threshold, or the value its
    spikes are given), else None: a max-pool reading it can then count spikes instead of summing values."""
    neuron = modules.get(source.target) if source.op == "call_module" else None
    if not isinstance(neuron, IFNeuron) or neuron.levels != BINARY:  # graded: values, summed in float64
        return None
    unit = neuron.unit()
    return unit.detach().clone() if bool((unit > 0).all()) else None  # max commutes with positive scales


def levels_of(source: fx.Node, modules: dict) -> int:
    """The spike levels of ``source``'s events: a max-pool passes on its input's graded spikes."""
    layer = modules.get(source.target) if source.op == "call_module" else None
    return layer.levels if isinstance(layer, SpikingLayer) else BINARY


def positive_thresholds(raw: Tensor) -> Tensor:
    """Thresholds must be positive and finite: channels that never fired take the layer's largest value."""
    raw = raw.double()
    valid = torch.isfinite(raw) & (raw > 0)
    fallback = raw[valid].max() if valid.any() else torch.tensor(1.0, dtype=torch.float64)
    return torch.where(valid, raw, fallback)
