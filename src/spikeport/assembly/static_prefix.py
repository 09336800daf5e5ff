"""The part of a converted graph that an analog input needs only once per batch, and the graph split there.

An analog input is the same at every step, so everything computed from it before the first neurons is too:
the first convolution of a CNN need not run T times. The runner computes that prefix once per batch and
runs only the rest at every step; the neurons then take the prefix's output as a constant current.
"""

from __future__ import annotations

from torch import fx

from spikeport.neurons import SpikingLayer


def static_prefix(gm: fx.GraphModule) -> set[fx.Node] | None:
    """The nodes computed from the input alone, before any neurons, or None when the graph mixes them.

    When no op combines a value computed before the first neurons with one computed after them, an analog
    input (the same at every step) can go through that prefix once per batch instead of once per step, and
    the neurons take its output as a constant current.
    """
    static, dynamic = set(), set()
    for node in gm.graph.nodes:
        if node.op == "placeholder":
            static.add(node)
            continue
        inputs = set(node.all_input_nodes)
        from_static, from_dynamic = bool(inputs & static), bool(inputs & dynamic)
        module = gm.get_submodule(node.target) if node.op == "call_module" else None
        if isinstance(module, SpikingLayer) and module.is_neuron:
            dynamic.add(node)
        elif from_static and from_dynamic:
            return None
        elif node.op == "output":
            return None if from_static else static
        elif from_dynamic:
            dynamic.add(node)
        elif from_static:
            static.add(node)
    return static


def split_at_static_prefix(gm: fx.GraphModule) -> tuple[fx.GraphModule, fx.GraphModule] | None:
    """``(prefix, rest)``: ``prefix(x)`` returns the tuple of static values the rest reads, and
    ``rest(*values)`` the network's output; both call ``gm``'s own modules. None without a static prefix."""
    static = static_prefix(gm)
    if static is None:
        return None
    crossing = [
        node for node in gm.graph.nodes if node in static and any(u not in static for u in node.users)
    ]
    prefix, rest = fx.Graph(), fx.Graph()
    copied: dict[fx.Node, fx.Node] = {}

    def into_prefix(node: fx.Node) -> fx.Node:  # also the input-free nodes (constants) the prefix reads
        if node not in copied:
            copied[node] = prefix.node_copy(node, into_prefix)
        return copied[node]

    for node in gm.graph.nodes:
        if node in static:
            into_prefix(node)
    prefix.output(tuple(copied[node] for node in crossing))
    inputs = {node: rest.placeholder(node.name) for node in crossing}
    for node in gm.graph.nodes:
        if node not in static:
            inputs[node] = rest.node_copy(node, lambda n: inputs[n])
    return fx.GraphModule(gm, prefix), fx.GraphModule(gm, rest)
