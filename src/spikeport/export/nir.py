"""NIR (Neuromorphic Intermediate Representation) export and import of rate-coded networks.

Export. spikeport's spikes carry their threshold (ANN units); NIR's IF neurons emit binary spikes. So each
IF node gets ``r = 1`` and ``v_threshold`` = the threshold, and the threshold moves to the receiving
side: folded into the weights of a conv/linear layer that reads the spikes directly (through a flatten at
most: exact, since ``W * theta`` times a 0/1 spike is the product spikeport computes) or through an average
pool (equal to float rounding; ``scales="nodes"`` writes a Scale node there instead, bit for bit), and as a
``Scale`` node where the spikes meet an addition or the output. Residual additions become two edges into one
node (NIR sums a node's inputs). The output node receives the last layer's current, whose running mean is
spikeport's read-out.

What NIR cannot say, and what a consumer will therefore not reproduce:

- subtractive (soft) reset: NIR's IF resets to ``v_reset``. Soft-reset neurons are written as IF nodes with
  ``metadata["spikeport.reset"] = "subtract"``; a consumer that ignores it simulates a hard reset, which
  needs more steps for the same accuracy. ``soft_reset="hard"`` writes them as plain hard-reset IF nodes
  instead (a different network, said so in the metadata).
- an initial membrane potential (``metadata["spikeport.initial_potential"]``, in thresholds);
- spikeport fires at ``v >= threshold``, NIR's IF at ``v > threshold`` (equal only off the boundary), and
  it steps in discrete time (``v += I`` per step), NIR's equations are continuous (``dv/dt = R I``).
- max-pools, concatenation, slicing, FS neurons, analog ops (normalisations, softmax, products) and signed
  neurons have no NIR node: export refuses them
  (convert with ``max_to_avg=True`` for max-pools).

Import reads graphs of those nodes (Input, Output, Conv1d/2d, Affine, Linear, AvgPool2d, SumPool2d, Flatten,
Scale, IF) back into a SpikingNetwork with binary spikes; an export (``scales="nodes"``) followed by an
import reproduces the network's outputs exactly (tested with hard and soft reset). Node names have no dots
(the readers of Norse and sinabs name torch modules after them) and IF's ``v_reset`` is left out of a file
where it is 0 (NIR's default, which readers before nir 1.0.5, as sinabs pins, do not know).
"""

from __future__ import annotations

import keyword
import operator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, fx, nn

from spikeport.assembly.rate import assemble
from spikeport.errors import ConversionError
from spikeport.export.checks import invalid_values
from spikeport.graph.prepare import PreparedModel
from spikeport.graph.shapes import propagate_shapes
from spikeport.network import SpikingNetwork
from spikeport.neurons import IFNeuron, Reset
from spikeport.neurons.analog import AnalogOp
from spikeport.neurons.signed import SignedIFNeuron


class NIRExportError(ConversionError):
    """A network (or node) that NIR cannot express."""


def _array(tensor: Tensor) -> np.ndarray:
    return tensor.detach().cpu().numpy().copy()


@dataclass
class _Term:
    """One NIR node whose output is part of a value, and the scale it still has to be multiplied by."""

    source: str
    scale: Tensor | None = None  # broadcastable to the value's sample shape; None: 1


@dataclass
class _Exporter:
    snn: SpikingNetwork
    soft_reset: str
    fold_scales: bool
    nodes: dict = field(default_factory=dict)
    edges: list = field(default_factory=list)
    scaled: dict = field(default_factory=dict)  # source name -> its Scale node

    def fail(self, node: fx.Node, what: str) -> NIRExportError:
        return NIRExportError(
            f"node '{node.name}' ({what}) has no NIR counterpart; NIR export covers {COVERED}"
        )

    def materialise(self, term: _Term, shape: tuple[int, ...]) -> str:
        """The name of a node that outputs ``term`` with its scale applied (a Scale node when needed)."""
        import nir

        if term.scale is None:
            return term.source
        if term.source not in self.scaled:
            name = f"{term.source}_scale"
            self.nodes[name] = nir.Scale(scale=_array(term.scale.expand(shape).float()))
            self.edges.append((term.source, name))
            self.scaled[term.source] = name
        return self.scaled[term.source]

    def feed(self, terms: list[_Term], target: str, shape: tuple[int, ...]) -> None:
        for term in terms:
            self.edges.append((self.materialise(term, shape), target))

    def run(self):
        import nir

        gm = self.snn.graph_module
        modules = dict(gm.named_modules())
        values: dict[fx.Node, list[_Term]] = {}
        for node in gm.graph.nodes:
            if node.op == "placeholder":
                self.nodes["input"] = nir.Input(input_type={"input": np.array(self.snn.input_shape)})
                values[node] = [_Term("input")]
            elif node.op == "output":
                (source,) = node.all_input_nodes
                shape = source.meta["sample_shape"]
                self.nodes["output"] = nir.Output(output_type={"output": np.array(shape)})
                self.feed(values[source], "output", shape)
            elif node.op == "call_module":
                values[node] = self.module(node, modules[node.target], values)
            elif (
                "sample_shape" not in node.meta
            ):  # sizes (x.size(0) of a flatten): no signal, nothing to export
                continue
            elif _is_reshape(node):
                values[node] = self.flatten(node, values)
            elif node.op == "call_function" and node.target in (operator.add, torch.add):
                a, b = node.args[:2]
                if (
                    not (isinstance(a, fx.Node) and isinstance(b, fx.Node))
                    or node.kwargs.get("alpha", 1) != 1
                ):
                    raise self.fail(node, "an addition with a constant or a factor")
                values[node] = values[a] + values[b]
            else:
                raise self.fail(node, f"{node.op} {getattr(node.target, '__name__', node.target)}")
        # Readers build a torch module per node, named after it: module paths' dots would nest them.
        renamed: dict[str, str] = {}
        for name in self.nodes:
            flat = name.replace(".", "_")
            while flat in renamed.values() or (flat != name and flat in self.nodes):
                flat += "_"
            renamed[name] = flat
        # The returned graph lists its nodes in execution order, input first (a file keeps no order: HDF5
        # sorts the names).
        order = _topological(
            [renamed[n] for n in self.nodes], [(renamed[a], renamed[b]) for a, b in self.edges]
        )
        nodes = {renamed[name]: node for name, node in self.nodes.items()}
        edges = [(renamed[a], renamed[b]) for a, b in self.edges]
        return nir.NIRGraph(nodes={name: nodes[name] for name in order}, edges=edges)

    def fold_bias(self, node: fx.Node, terms: list[_Term], bias: Tensor) -> None:
        """A neuron's bias current joins the bias of the layer that feeds it alone (NIR's IF has none)."""
        import nir

        source = self.nodes.get(terms[0].source) if len(terms) == 1 else None
        feeds_only_this = len(node.args[0].users) == 1
        if not isinstance(source, nir.Affine | nir.Conv1d | nir.Conv2d) or not feeds_only_this:
            raise self.fail(node, "a bias current on neurons not fed by one conv/linear layer alone")
        per_channel = bias.reshape(bias.shape[0], -1)[:, 0] if bias.dim() > 1 else bias
        source.bias = source.bias + _array(per_channel)

    def flatten(self, node: fx.Node, values) -> list[_Term]:
        """A flatten (module, function or view/reshape to one axis); a pending scale goes along."""
        import nir

        source = node.args[0]
        in_shape, shape = tuple(source.meta["sample_shape"]), tuple(node.meta["sample_shape"])
        if shape == in_shape:
            return values[source]
        if shape != (int(np.prod(in_shape)),):
            raise self.fail(node, f"a reshape from {list(in_shape)} to {list(shape)} (NIR flattens only)")
        name = node.name
        self.nodes[name] = nir.Flatten(input_type={"input": np.array(in_shape)}, start_dim=0, end_dim=-1)
        self.edges.extend((t.source, name) for t in values[source])
        return [
            _Term(name, None if t.scale is None else t.scale.expand(in_shape).reshape(shape))
            for t in values[source]
        ]

    def module(self, node: fx.Node, module: nn.Module, values) -> list[_Term]:
        import nir

        name = str(node.target)
        (source,) = node.all_input_nodes
        terms = values[source]
        shape = tuple(node.meta["sample_shape"])
        in_shape = tuple(source.meta["sample_shape"])
        if isinstance(module, IFNeuron):
            if module.bias is not None:
                self.fold_bias(node, terms, module.bias.float().expand(shape))
            threshold = module.threshold.float().expand(shape)
            metadata = {"spikeport.initial_potential": module.initial_potential}
            if module.reset_mode is Reset.SOFT:
                metadata["spikeport.reset"] = (
                    "subtract" if self.soft_reset == "metadata" else "exported-as-hard"
                )
            self.nodes[name] = nir.IF(
                r=np.ones(shape, dtype=np.float32),
                v_threshold=_array(threshold),
                v_reset=np.zeros(shape, dtype=np.float32),
                metadata=metadata,
            )
            self.feed(terms, name, in_shape)
            value = module.threshold if module.spike_value is None else module.spike_value
            return [_Term(name, None if bool((value == 1).all()) else value.float())]
        if isinstance(module, nn.Conv1d | nn.Conv2d | nn.Linear):
            weight = module.weight.detach().float()
            if len(terms) == 1 and terms[0].scale is not None:  # fold the spike's value into the weights
                weight = weight * _input_scale(terms[0].scale, in_shape, module)
                terms = [_Term(terms[0].source)]
            bias = torch.zeros(weight.shape[0]) if module.bias is None else module.bias.detach().float()
            if isinstance(module, nn.Linear):
                self.nodes[name] = nir.Affine(weight=_array(weight), bias=_array(bias))
            else:
                if module.padding_mode != "zeros":
                    raise self.fail(node, f"a conv padded with mode {module.padding_mode!r}")
                if module.groups != 1:  # nir 1.0 infers a conv's input channels from its weight alone
                    raise self.fail(
                        node, f"a grouped conv (groups={module.groups}; NIR's type check rejects it)"
                    )
                kind = nir.Conv1d if isinstance(module, nn.Conv1d) else nir.Conv2d
                spatial = in_shape[1:]
                self.nodes[name] = kind(
                    input_shape=spatial[0] if len(spatial) == 1 else spatial,
                    weight=_array(weight),
                    stride=module.stride,
                    padding=module.padding,
                    dilation=module.dilation,
                    groups=module.groups,
                    bias=_array(bias),
                )
            self.feed(terms, name, in_shape)
            return [_Term(name)]
        if isinstance(module, nn.Flatten):
            return self.flatten(node, values)
        if isinstance(module, nn.AvgPool2d | nn.AdaptiveAvgPool2d):
            kernel, stride = _pool_windows(node, module, in_shape, self)
            self.nodes[name] = nir.AvgPool2d(
                kernel_size=np.array(kernel), stride=np.array(stride), padding=np.array((0, 0))
            )
            channel_scale = _channel_scale(terms, in_shape) if self.fold_scales else None
            if channel_scale is not None:  # a pool mixes within channels: the spikes' values pass through it
                self.edges.append((terms[0].source, name))
                return [_Term(name, channel_scale)]
            self.feed(terms, name, in_shape)
            return [_Term(name)]
        raise self.fail(node, f"{type(module).__name__} module '{name}'")


COVERED = (
    "Conv1d/Conv2d, Linear, AvgPool2d and divisible AdaptiveAvgPool2d (unpadded), Flatten, residual additions "
    "and IF neurons of rate-coded methods (for max-pools, convert with max_to_avg=True)"
)


def _topological(names: list[str], edges: list[tuple[str, str]]) -> list[str]:
    """``names`` ordered so that every edge goes forward, otherwise keeping their order."""
    pending = {name: sum(1 for _, b in edges if b == name) for name in names}
    order: list[str] = []
    while len(order) < len(names):
        ready = next(name for name in names if pending[name] == 0 and name not in order)
        order.append(ready)
        for a, b in edges:
            if a == ready:
                pending[b] -= 1
    return order


def _is_reshape(node: fx.Node) -> bool:
    if node.op == "call_method":
        return node.target in ("flatten", "view", "reshape")
    return node.op == "call_function" and node.target in (torch.flatten, torch.reshape)


def _channel_scale(terms: list[_Term], in_shape: tuple[int, ...]) -> Tensor | None:
    """The one term's spike values as ``[C, 1, 1]`` when they are the same within each channel, else None."""
    if len(terms) != 1 or terms[0].scale is None:
        return None
    full = terms[0].scale.expand(in_shape)
    per_channel = full.reshape(full.shape[0], -1)
    if not bool((per_channel == per_channel[:, :1]).all()):
        return None
    return per_channel[:, :1].reshape(-1, *[1] * (len(in_shape) - 1))


def _input_scale(scale: Tensor, in_shape: tuple[int, ...], module: nn.Module) -> Tensor:
    """The spike values as a factor on the weight's input axis (dim 1), per input channel or feature."""
    full = scale.expand(in_shape)
    if isinstance(module, nn.Linear):
        return full.reshape(1, -1)
    per_channel = full.reshape(full.shape[0], -1)
    if not bool((per_channel == per_channel[:, :1]).all()):
        raise NIRExportError("spike values vary within a channel; no conv weight can carry them")
    groups, out_channels = module.groups, module.out_channels
    values = per_channel[:, 0].reshape(groups, 1, -1).expand(groups, out_channels // groups, -1)
    return values.reshape(out_channels, -1, *([1] * (module.weight.dim() - 2)))


def _pool_windows(node, module, in_shape, exporter) -> tuple[tuple[int, int], tuple[int, int]]:
    if isinstance(module, nn.AdaptiveAvgPool2d):
        size = module.output_size if isinstance(module.output_size, tuple) else (module.output_size,) * 2
        spatial = in_shape[-2:]
        if any(o is None or s % o for s, o in zip(spatial, size, strict=True)):
            raise exporter.fail(node, f"an adaptive pool from {spatial} to {size} with unequal windows")
        kernel = tuple(s // o for s, o in zip(spatial, size, strict=True))
        return kernel, kernel
    pair = nn.modules.utils._pair
    if any(pair(module.padding)) or module.ceil_mode:
        raise exporter.fail(node, "an average pool with padding or ceil_mode")
    return pair(module.kernel_size), pair(module.stride or module.kernel_size)


def refuse_what_nir_lacks(snn: SpikingNetwork) -> None:
    """NIR has no analog ops, no signed and no graded spikes: name the first node that needs them."""
    modules = dict(snn.graph_module.named_modules())
    for node in snn.graph_module.graph.nodes:
        module = modules.get(node.target) if node.op == "call_module" else None
        if isinstance(module, AnalogOp):
            raise NIRExportError(
                f"node '{node.name}' ({type(module.op).__name__}) is an analog op; NIR has no node for "
                "normalisations, softmax, products of two signals or activations computed on values, so "
                "networks with them cannot be exported (they convert, simulate and save with spikeport)"
            )
        if isinstance(module, IFNeuron) and module.levels != 1:
            raise NIRExportError(
                f"node '{node.name}' sends graded spikes ({module.spike_bits} bits); NIR's IF neurons send "
                "binary spikes, so convert with spike_bits=1 to export"
            )
        if isinstance(module, SignedIFNeuron):
            raise NIRExportError(
                f"node '{node.name}' sends signed spikes; NIR's IF neurons spike one way only, so networks "
                "with signed spike sites (after analog ops) cannot be exported"
            )


def export_nir(
    snn: SpikingNetwork,
    path: str | Path | None = None,
    *,
    soft_reset: str = "metadata",
    scales: str = "fold",
):
    """Write ``snn`` as a NIR graph (HDF5 via ``nir.write``) and return the ``nir.NIRGraph``.

    ``soft_reset``: "metadata" (IF nodes, subtractive reset stated in each node's metadata) or "hard"
    (plain hard-reset IF nodes: what NIR's IF does, a different network when the SNN resets softly).
    ``scales``: where spikes meet an average pool, "fold" carries their values through the pool into the next
    layer's weights (readers without a Scale node, such as Norse's and sinabs', run the file; outputs equal
    to float rounding), "nodes" writes a Scale node there (an export and import is then bit for bit).
    """
    import nir

    if soft_reset not in ("metadata", "hard"):
        raise ValueError(f"soft_reset must be 'metadata' or 'hard', got {soft_reset!r}")
    if scales not in ("fold", "nodes"):
        raise ValueError(f"scales must be 'fold' or 'nodes', got {scales!r}")
    if snn.coding.nir_refusal is not None:
        raise NIRExportError(snn.coding.nir_refusal)
    refuse_what_nir_lacks(snn)
    graph = _Exporter(snn, soft_reset, scales == "fold").run()
    if path is not None:
        nir.write(str(path), graph)
        _drop_zero_resets(path)
    return graph


def _drop_zero_resets(path: str | Path) -> None:
    """Remove the IF nodes' ``v_reset`` from the file where it is 0, NIR's default.

    NIR added ``v_reset`` to IF in 1.0.5; readers before it (sinabs pins nir<=1.0.4) refuse a file that has
    it, and readers since then take a missing one as 0. Without it the file reads everywhere, the same.
    """
    import h5py

    resets: list = []

    def find(name: str, item) -> None:
        is_if = (
            isinstance(item, h5py.Group)
            and item.get("type") is not None
            and item["type"][()] in (b"IF", "IF")
        )
        if is_if and "v_reset" in item and not np.any(item["v_reset"][()]):
            resets.append(item)

    with h5py.File(path, "r+") as file:
        file.visititems(find)
        for item in resets:
            del item["v_reset"]


def import_nir(source) -> SpikingNetwork:
    """A SpikingNetwork from a NIR graph (a ``nir.NIRGraph`` or a file ``nir.write`` wrote).

    Spikes stay binary (each IF layer's ``spike_value`` is 1) and weights are taken as they are, so the
    network computes what the NIR graph says. Reset: hard, or soft where the IF nodes' metadata says
    "subtract" (as ``export_nir`` writes it).
    """
    import nir

    if isinstance(source, nir.NIRGraph):
        graph = source
    else:
        try:
            graph = nir.read(str(source))
        except ValueError as error:  # the tools that write the batch into the input's shape (Norse, Rockpool)
            if "type mismatch" not in str(error):
                raise
            graph = nir.read(str(source), type_check=False)
            if not _without_batch_axis(graph):
                raise
    return _Importer(graph).build()


def _without_batch_axis(graph) -> bool:
    """Drop a leading batch axis from the Input nodes' shape where their readers expect one axis less."""
    dropped = False
    for name, node in graph.nodes.items():
        if type(node).__name__ != "Input":
            continue
        shape = np.asarray(node.input_type["input"])
        readers = [graph.nodes[b] for a, b in graph.edges if a == name]
        expected = [np.asarray(r.input_type["input"]) for r in readers if getattr(r, "input_type", None)]
        if len(shape) > 1 and expected and all(np.array_equal(e, shape[1:]) for e in expected):
            node.input_type = {"input": shape[1:]}
            node.output_type = {"output": shape[1:]}
            dropped = True
    return dropped


class _Importer:
    def __init__(self, graph):
        self.graph = graph
        self.inbound: dict[str, list[str]] = {name: [] for name in graph.nodes}
        for src, dst in graph.edges:
            self.inbound[dst].append(src)

    def order(self) -> list[str]:
        done, order = set(), []

        def visit(name: str, path: tuple[str, ...]) -> None:
            if name in done:
                return
            if name in path:
                raise NIRExportError(
                    f"NIR graph has a cycle through '{name}'; spikeport imports feed-forward graphs"
                )
            for src in self.inbound[name]:
                visit(src, (*path, name))
            done.add(name)
            order.append(name)

        for name in self.graph.nodes:
            visit(name, ())
        return order

    def build(self) -> SpikingNetwork:
        import nir

        root, graph = nn.Module(), fx.Graph()
        values: dict[str, fx.Node] = {}
        thresholds, resets, potentials = {}, set(), set()
        input_shape = None
        for name in self.order():
            node = self.graph.nodes[name]
            inputs = [values[src] for src in self.inbound[name]]
            value = inputs[0] if inputs else None
            for other in inputs[1:]:  # NIR sums a node's inputs
                value = graph.call_function(operator.add, (value, other))
            if isinstance(node, nir.Input):
                input_shape = tuple(int(v) for v in node.input_type["input"])
                values[name] = graph.placeholder("x")
                continue
            if isinstance(node, nir.Output):
                graph.output(value)
                continue
            if value is None:
                raise NIRExportError(f"NIR node '{name}' has no input")
            target = _identifier(name)
            if isinstance(node, nir.IF):
                if not np.allclose(node.r, 1) or np.any(node.v_reset != 0):
                    raise NIRExportError(
                        f"IF node '{name}': only r = 1 and v_reset = 0 import (spikeport's IF)"
                    )
                root.add_module(target, nn.ReLU())  # the neuron's place; assembly puts the IF neuron here
                values[name] = graph.call_module(target, (value,))
                threshold = torch.from_numpy(np.asarray(node.v_threshold))
                if not bool((torch.isfinite(threshold) & (threshold > 0)).all()):
                    raise NIRExportError(
                        f"IF node '{name}': thresholds must be finite and > 0, got {threshold.min().item()}"
                    )
                thresholds[values[name].name] = _per_channel(threshold)
                meta = node.metadata or {}
                resets.add("soft" if meta.get("spikeport.reset") == "subtract" else "hard")
                potentials.add(float(meta.get("spikeport.initial_potential", 0.0)))
                continue
            if isinstance(node, nir.Scale):
                constant = f"{target}_scale"
                root.register_buffer(constant, torch.from_numpy(np.asarray(node.scale, dtype=np.float32)))
                values[name] = graph.call_function(operator.mul, (value, graph.get_attr(constant)))
                continue
            root.add_module(target, _module(name, node))
            values[name] = graph.call_module(target, (value,))
        if input_shape is None or not any(n.op == "output" for n in graph.nodes):
            raise NIRExportError("NIR graph needs one Input and one Output node")
        if len(resets) > 1 or len(potentials) > 1:
            raise NIRExportError("NIR graph mixes reset modes or initial potentials between IF layers")
        gm = fx.GraphModule(root, graph)
        propagate_shapes(gm, torch.zeros(2, *input_shape))
        prepared = PreparedModel(
            gm, input_shape, notes=["imported from NIR: binary spikes, weights as given"]
        )
        ones = {name: torch.ones(()) for name in thresholds}
        snn = assemble(
            prepared,
            thresholds,
            reset=resets.pop() if resets else "hard",
            initial_potential=potentials.pop() if potentials else 0.0,
            spike_values=ones,
            info={"method": "nir", "coding": "rate", "notes": prepared.notes},
        )
        problem = invalid_values(snn)
        if problem:
            raise NIRExportError(f"NIR graph does not import: {problem}")
        return snn  # with no source ANN: agreement needs ann= in sp.evaluate


def _identifier(name: str) -> str:
    """A module name for a NIR node: a Python identifier, and no keyword (fx writes code with it)."""
    cleaned = "".join(c if c.isalnum() or c == "_" else "_" for c in name)
    cleaned = cleaned if cleaned and not cleaned[0].isdigit() else f"n_{cleaned}"
    return f"{cleaned}_" if keyword.iskeyword(cleaned) else cleaned


def _per_channel(threshold: Tensor) -> Tensor:
    """A neuron-wise threshold as spikeport stores it: one value, or one per channel."""
    flat = threshold.reshape(threshold.shape[0], -1) if threshold.dim() > 1 else threshold.reshape(-1, 1)
    if bool((flat == flat.flatten()[0]).all()):
        return flat.flatten()[:1].reshape(())
    if threshold.dim() > 1 and bool((flat == flat[:, :1]).all()):
        return flat[:, 0].clone()
    raise NIRExportError(
        "IF thresholds that vary within a channel do not import (spikeport: per layer or channel)"
    )


def _module(name: str, node) -> nn.Module:
    import nir

    def tensor(value) -> Tensor:
        return torch.from_numpy(np.asarray(value, dtype=np.float32))

    if isinstance(node, nir.Affine | nir.Linear):
        weight = tensor(node.weight)
        layer = nn.Linear(weight.shape[1], weight.shape[0], bias=isinstance(node, nir.Affine))
        layer.weight.data.copy_(weight)
        if isinstance(node, nir.Affine):
            layer.bias.data.copy_(tensor(node.bias))
        return layer
    if isinstance(node, nir.Conv1d | nir.Conv2d):
        weight = tensor(node.weight)
        kind = nn.Conv1d if isinstance(node, nir.Conv1d) else nn.Conv2d
        if isinstance(node.padding, str):
            raise NIRExportError(
                f"conv node '{name}': padding {node.padding!r} does not import; give numbers"
            )
        layer = kind(
            weight.shape[1] * int(node.groups),
            weight.shape[0],
            tuple(weight.shape[2:]),
            stride=_ints(node.stride),
            padding=_ints(node.padding),
            dilation=_ints(node.dilation),
            groups=int(node.groups),
        )
        layer.weight.data.copy_(weight)
        layer.bias.data.copy_(tensor(node.bias))
        return layer
    if isinstance(node, nir.AvgPool2d | nir.SumPool2d):
        kernel, stride, padding = (_ints(v) for v in (node.kernel_size, node.stride, node.padding))
        if any(padding):
            raise NIRExportError(f"pool node '{name}': padded pools do not import")
        divisor = 1 if isinstance(node, nir.SumPool2d) else None
        return nn.AvgPool2d(kernel, stride, divisor_override=divisor)
    if isinstance(node, nir.Flatten):
        end = node.end_dim + 1 if node.end_dim >= 0 else node.end_dim
        return nn.Flatten(node.start_dim + 1 if node.start_dim >= 0 else node.start_dim, end)
    raise NIRExportError(
        f"NIR node '{name}' ({type(node).__name__}) does not import; spikeport reads Input, Output, Conv1d/2d, "
        "Affine, Linear, AvgPool2d, SumPool2d, Flatten, Scale and IF"
    )


def _ints(value):
    array = np.atleast_1d(np.asarray(value)).astype(int)
    return tuple(int(v) for v in array) if array.size > 1 else int(array[0])
