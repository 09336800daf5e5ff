"""FS conversion's last step: FS neurons where the activations were, binary max-pools, the timing model."""

from __future__ import annotations

import copy

import torch
from torch import fx

from spikeport.assembly.rate import broadcastable, input_shapes, use_tiled_pools
from spikeport.coding import TemporalCoding
from spikeport.errors import ConversionError
from spikeport.graph.analog_cost import analog_ops
from spikeport.graph.canonical import insert_after
from spikeport.graph.ops import Role, role_of
from spikeport.graph.prepare import PreparedModel
from spikeport.network import SpikingNetwork, model_dtype, module_device
from spikeport.neurons.analog import AnalogOp
from spikeport.neurons.fs import FSMaxPool, FSNeuron


def coded_source(node: fx.Node, modules: dict) -> fx.Node | None:
    """The node whose code reaches ``node``'s input through data movement only (None: computed values)."""
    source = node.args[0]
    while isinstance(source, fx.Node) and role_of(source, modules) is Role.STRUCTURAL:
        source = source.args[0]
    return source if isinstance(source, fx.Node) else None


def on_decoded_values(node: fx.Node, op: torch.nn.Module) -> AnalogOp:
    """An analog op as it runs under temporal coding: once per inference, on the decoded values."""
    return AnalogOp(op, analog_ops(op, input_shapes(node), tuple(node.meta["sample_shape"])))


def coded_depth(gm: fx.GraphModule) -> int:
    """The most FS neuron layers on any path from the input to the output.

    Each layer emits its code only after it has integrated all of its input, so the output exists after
    K x this many steps; a max-pool forwards its winner's digits as they come and adds no layer.
    """
    modules = dict(gm.named_modules())
    depth: dict[fx.Node, int] = {}
    for node in gm.graph.nodes:
        before = max((depth[a] for a in node.all_input_nodes), default=0)
        is_neuron = node.op == "call_module" and isinstance(modules[node.target], FSNeuron)
        depth[node] = before + int(is_neuron)
    return depth[next(n for n in gm.graph.nodes if n.op == "output")]


def assemble_fs(
    prepared: PreparedModel,
    neurons: dict[str, FSNeuron],
    *,
    input_neuron: FSNeuron | None = None,
    default_steps: int = 8,
    info: dict | None = None,
    ann: torch.nn.Module | None = None,
):
    """Build the FS network; ``neurons`` maps activation node names to their FS neurons."""
    gm = copy.deepcopy(prepared.graph_module)
    dtype = model_dtype(gm)
    nodes = {n.name: n for n in gm.graph.nodes}
    fanouts = prepared.spike_fanouts
    for activation in prepared.activation_nodes():
        node = nodes[activation.name]
        neuron = copy.deepcopy(neurons[node.name])
        neuron.scale = broadcastable(neuron.scale, node.meta["sample_shape"], dtype)
        neuron.fanout = fanouts[node.name]
        gm.set_submodule(str(node.target), neuron)
    modules = dict(gm.named_modules())
    for node in gm.graph.nodes:
        if role_of(node, modules) is Role.ANALOG:
            gm.set_submodule(str(node.target), on_decoded_values(node, modules[node.target]))
        if role_of(node, modules) is not Role.MAX_POOL:
            continue
        source = coded_source(node, modules)
        feeder = modules.get(source.target) if source is not None and source.op == "call_module" else None
        if not isinstance(feeder, FSNeuron) or not feeder.analytic:
            takes = f"{feeder.activation} codes" if isinstance(feeder, FSNeuron) else "analog values"
            raise ConversionError(
                f"max-pool node '{node.name}' takes {takes}; "
                "an FS max-pool passes on the binary code of its winner, so it must directly follow ReLU "
                "FS neurons (put the activation before the pool: the same network for ReLU)"
            )
        pool = FSMaxPool(modules[node.target], feeder.scale)
        pool.fanout = fanouts[node.name]
        gm.set_submodule(str(node.target), pool)
    use_tiled_pools(gm)
    source = next(n for n in gm.graph.nodes if n.op == "placeholder")
    input_fanout = fanouts[source.name]
    if input_neuron is not None:
        coder = copy.deepcopy(input_neuron)
        coder.scale = broadcastable(coder.scale, prepared.input_shape, dtype)
        coder.fanout = input_fanout
        coded = insert_after(gm, source, coder, "input_coder")
        coded.meta["sample_shape"] = prepared.input_shape
    gm.recompile()
    coding = TemporalCoding(
        converted_steps=default_steps,
        coded_layers=coded_depth(gm),
        analog_input=input_neuron is None,
    )
    snn = SpikingNetwork(
        gm,
        prepared.input_shape,
        input_fanout,
        coding,
        ann=ann,
        ann_macs_per_image=prepared.ann_macs_per_image,
        info=info,
    )
    return snn.to(module_device(prepared.graph_module))  # scales and fan-outs were computed on the CPU
