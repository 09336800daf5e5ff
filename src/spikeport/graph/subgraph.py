"""Cut the synaptic part that feeds one node out of a graph, as a module of its own.

Calibration fits a layer's weights on what its spiking inputs really carry: it needs the ops between the
layers upstream (the *frontier*: activations, or the network input) and the node, runnable on recorded
inputs and differentiable in their parameters. The cut shares the graph's modules, so fitting its
parameters changes the graph's.
"""

from __future__ import annotations

from torch import fx


def feeding_subgraph(
    gm: fx.GraphModule, node_name: str, frontier: set[str]
) -> tuple[fx.GraphModule, list[str]]:
    """The ops from the ``frontier`` nodes to the input of ``node_name``, and the frontier nodes it reads.

    The returned module takes the values of those frontier nodes, in the returned order, and returns the
    input of ``node_name`` (an activation's pre-activation, or the output node's value).
    """
    nodes = {n.name: n for n in gm.graph.nodes}
    (source,) = nodes[node_name].all_input_nodes
    inside: set[str] = set()
    reads: set[str] = set()
    stack = [source]
    while stack:
        node = stack.pop()
        if node.name in inside or node.name in reads:
            continue
        if node.name in frontier or node.op == "placeholder":
            reads.add(node.name)
            continue
        inside.add(node.name)
        stack.extend(node.all_input_nodes)
    graph = fx.Graph()
    order = [n.name for n in gm.graph.nodes if n.name in reads]  # execution order: deterministic
    values = {name: graph.placeholder(name) for name in order}
    for node in gm.graph.nodes:
        if node.name in inside:
            values[node.name] = graph.node_copy(node, lambda n: values[n.name])
    graph.output(values[source.name])
    return fx.GraphModule(gm, graph, f"feeding_{node_name}"), order
