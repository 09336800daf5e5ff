"""Models saved with ``torch.export`` (``.pt2``), rebuilt from standard modules so the fx converter applies.

An exported program is a flat graph of aten ops whose parameters and buffers are lifted to graph inputs.
spikeport's converter only understands ordinary modules traced with ``torch.fx.symbolic_trace``, so we
translate the program back: convolutions, linear layers and batch norms become ``nn.Conv1d/2d``,
``nn.Linear`` and ``nn.BatchNorm1d/2d`` holding the exported weights (named after the original modules),
activations and pools become ``nn.ReLU`` / ``nn.AvgPool2d`` / ..., and the glue becomes plain
``torch.reshape``, ``torch.flatten``, ``torch.cat`` and ``+``. Both the default export IR and the
core-aten IR of ``ExportedProgram.run_decompositions()`` are understood.

The batch dimension: spikeport folds simulation time into the batch, so the rebuilt model must accept
any batch size. Reshapes are rebuilt from their output shape metadata with one free dimension (-1):

* a program exported with a dynamic batch has a symbolic size there, which becomes -1;
* a program exported with a static batch ``B`` (the example input's ``shape[0]``) hard-codes it, so a
  leading size equal to ``B``, or to a multiple of it (a reshape that folds other dims into the batch,
  as the core-aten form of ``nn.Linear`` on 3-d input does), becomes -1.

Only reshapes whose leading dimension carries the batch can be generalised this way; every op that
spikeport supports keeps the batch in dim 0.
"""

from __future__ import annotations

import builtins
import contextlib
import logging
import operator
import os
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.export import ExportedProgram
from torch.export.graph_signature import InputKind, OutputKind, TensorArgument

from spikeport.errors import ConversionError
from spikeport.frontends.registry import Registry, module_name
from spikeport.layers import PADDING_MODULES, clip_activation

__all__ = ["ATEN_OPS", "load_exported"]

aten = torch.ops.aten


@dataclass(eq=False)
class _Lifted:
    """A parameter, buffer or constant of the program; it becomes a graph attribute only when used as data."""

    fqn: str
    tensor: torch.Tensor
    is_parameter: bool


@dataclass(eq=False)
class _Transposed:
    """``t(weight)`` waiting for the ``addmm``/``mm`` that makes it an ``nn.Linear``."""

    weight: _Lifted
    source: str


@dataclass(eq=False)
class _Tuple:
    """A multi-output op (batch norm, max pool with indices); only its first output means something here."""

    first: Any
    source: str


@dataclass(eq=False)
class _Parts:
    """The outputs of a split (``split``, ``chunk``, ``unbind``): each a slice of the input, picked by getitem."""

    parts: list[fx.Node]
    source: str


@dataclass(eq=False)
class _Unusable:
    """A secondary output (batch statistics, pool indices); deserialised programs index them even unused."""

    what: str


class _Symbolic:
    """A symbolic size; reshapes read their sizes from shape metadata, so these never reach the graph."""


_SYMBOLIC = _Symbolic()
_Handler = Callable[["_Rebuilder", fx.Node, dict[str, Any]], Any]
# Keyed by overload (aten.add.Tensor), listed by op (add).
ATEN_OPS: Registry[torch._ops.OpOverload, _Handler] = Registry(
    "aten ops", lambda op: op.__name__.split(".")[0]
)


def _op_name(node: fx.Node) -> str:
    if node.op != "call_function":
        return node.op
    target = node.target
    if isinstance(target, torch._ops.OpOverload):
        return str(target)
    module = getattr(target, "__module__", None) or ""
    name = getattr(target, "__name__", repr(target))
    return f"{'operator' if module == '_operator' else module}.{name}".lstrip(".")


def _error(node: fx.Node, problem: str) -> ConversionError:
    return ConversionError(f"node '{node.name}' ({_op_name(node)}) {problem}")


def _bind(node: fx.Node) -> dict[str, Any]:
    """Arguments by schema name, defaults filled in, so handlers need not care how export spelled them."""
    bound: dict[str, Any] = {}
    for index, argument in enumerate(node.target._schema.arguments):
        if index < len(node.args) and not argument.kwarg_only:
            bound[argument.name] = node.args[index]
        elif argument.name in node.kwargs:
            bound[argument.name] = node.kwargs[argument.name]
        elif argument.has_default_value():
            bound[argument.name] = argument.default_value
    return bound


def _as_int(size: Any) -> int | None:
    if isinstance(size, int):
        return size
    if isinstance(size, torch.SymInt):
        return size.node.maybe_as_int()
    return None


def _meta_tensor(node: fx.Node) -> torch.Tensor:
    value = node.meta.get("val")
    if not isinstance(value, torch.Tensor):
        raise _error(node, "has no tensor shape metadata; re-export the model with torch.export.export")
    return value


def _mutates_first_arg(node: fx.Node) -> bool:
    arguments = node.target._schema.arguments if isinstance(node.target, torch._ops.OpOverload) else []
    alias = arguments[0].alias_info if arguments else None
    return alias is not None and alias.is_write


def _innermost_module(node: fx.Node) -> tuple[str, str]:
    """(path, type) of the module a node was traced in, from export's ``nn_module_stack`` metadata."""
    stack = node.meta.get("nn_module_stack") or {}
    if not stack:
        return "", ""
    path, type_name = list(stack.values())[-1]
    return (path, type_name) if isinstance(path, str) else ("", "")


def _qualified(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _ancestors(path: str) -> list[str]:
    parts = path.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def _adopt(module: nn.Module, tensors: dict[str, torch.Tensor | None]) -> nn.Module:
    """Give a module built on the meta device the exported tensors (dtype kept, no random init wasted)."""
    for name, tensor in tensors.items():
        if tensor is None:
            continue
        copy = tensor.detach().clone()
        setattr(module, name, nn.Parameter(copy) if name in module._parameters else copy)
    return module


class _Rebuilder:
    """Translates an exported program node by node into a new fx graph of standard modules."""

    def __init__(self, program: ExportedProgram):
        self.program = program
        self.graph = fx.Graph()
        self.env: dict[fx.Node, Any] = {}
        self.leaves: dict[str, Any] = {}  # dotted path -> module or tensor of the rebuilt model
        self.containers: set[str] = set()  # ancestors of leaves
        self.shared: dict[tuple, str] = {}  # a weighted module called twice stays one module
        self.attributes: dict[str, fx.Node] = {}
        self.example_batch: int | None = None
        # Core aten merges the batch with other leading dims before a linear ([B, N, D] -> [B*N, D]) or a
        # batched product ([B, h, N, d] -> [B*h, N, d]) and splits them after; each merge -> the value before.
        self.merged: dict[fx.Node, fx.Node] = {}
        self._check_signature()
        state = {**program.state_dict, **program.constants}
        self.lifted: dict[str, _Lifted] = {}
        for spec in program.graph_signature.input_specs:
            if spec.kind in (InputKind.PARAMETER, InputKind.BUFFER, InputKind.CONSTANT_TENSOR):
                tensor = state[spec.target]
                self.lifted[spec.arg.name] = _Lifted(spec.target, tensor, spec.kind is InputKind.PARAMETER)
        # Paths that own tensors in the original model: kept for the modules that really own them.
        self.reserved = {prefix for lifted in self.lifted.values() for prefix in _ancestors(lifted.fqn)}

    def _check_signature(self) -> None:
        signature = self.program.graph_signature
        unsupported = [s for s in signature.input_specs if s.kind in (InputKind.CUSTOM_OBJ, InputKind.TOKEN)]
        if unsupported:
            raise ConversionError(
                f"the exported program takes a {unsupported[0].kind.name.lower()} input "
                f"'{unsupported[0].arg.name}'; spikeport supports tensor inputs, parameters and buffers only"
            )
        users = [s for s in signature.input_specs if s.kind is InputKind.USER_INPUT]
        if len(users) != 1 or not isinstance(users[0].arg, TensorArgument):
            names = ", ".join(getattr(s.arg, "name", "?") for s in users) or "none"
            raise ConversionError(
                f"the exported model must take exactly one input tensor, it takes {len(users)}: {names}"
            )
        for spec in signature.output_specs:
            if spec.kind is OutputKind.BUFFER_MUTATION:
                raise ConversionError(
                    f"the exported program updates buffer '{spec.target}', so it was exported in training "
                    "mode; call model.eval() before torch.export.export"
                )
            if spec.kind not in (OutputKind.USER_OUTPUT, OutputKind.USER_INPUT_MUTATION):
                raise ConversionError(
                    f"the exported program has a {spec.kind.name.lower()} output; spikeport needs an "
                    "inference program returning one tensor"
                )
        outputs = [s for s in signature.output_specs if s.kind is OutputKind.USER_OUTPUT]
        out_spec = self.program.call_spec.out_spec
        if len(outputs) != 1 or not isinstance(outputs[0].arg, TensorArgument) or not out_spec.is_leaf():
            kind = getattr(out_spec.type, "__name__", "structure") if out_spec is not None else "nothing"
            raise ConversionError(
                f"the exported model returns a {kind} of {len(outputs)} output(s); spikeport needs a "
                "model that returns a single tensor"
            )

    # ----------------------------------------------------------------------------- graph walk

    def build(self) -> fx.GraphModule:
        for node in self.program.graph.nodes:
            if node.op == "placeholder":
                self.env[node] = self._placeholder(node)
            elif node.op == "output":
                self._output(node)
            elif node.op == "call_function":
                self.env[node] = self._translate(node)
                if _mutates_first_arg(node) and isinstance(node.args[0], fx.Node):
                    self.env[node.args[0]] = self.env[node]  # later readers see the in-place result
            else:
                raise _error(
                    node, "is control flow or a submodule call; spikeport supports flat graphs of aten ops"
                )
        for node in reversed(self.graph.nodes):
            if node.op not in ("placeholder", "output") and not node.users:
                self.graph.erase_node(node)
        used = {n.target for n in self.graph.nodes if n.op in ("call_module", "get_attr")}
        root = {path: leaf for path, leaf in self.leaves.items() if path in used}
        module = fx.GraphModule(root, self.graph, class_name="ExportedModule")
        return module.eval()

    def _placeholder(self, node: fx.Node) -> Any:
        if node.name in self.lifted:
            return self.lifted[node.name]
        value = node.meta.get("val")
        if isinstance(value, torch.Tensor) and value.dim() > 0:
            self.example_batch = _as_int(value.shape[0])
        return self.graph.placeholder("x" if hasattr(builtins, node.name) else node.name)

    def _output(self, node: fx.Node) -> None:
        specs = self.program.graph_signature.output_specs
        index = next(i for i, s in enumerate(specs) if s.kind is OutputKind.USER_OUTPUT)
        source = node.args[0][index]
        self.graph.output(self._tensor(node, self.env[source]))

    def _translate(self, node: fx.Node) -> Any:
        if node.target is operator.getitem:
            return self._getitem(node)
        if not isinstance(node.target, torch._ops.OpOverload) and any(
            isinstance(self.env.get(arg), _Symbolic) for arg in node.all_input_nodes
        ):
            return _SYMBOLIC  # arithmetic on symbolic sizes, e.g. batch * 7 for a reshape
        if _innermost_module(node)[1].endswith(".LocalResponseNorm"):
            raise _error(
                node,
                "is part of a LocalResponseNorm, which torch.export writes as padding, pooling and powers; "
                "load the PyTorch model itself or its ONNX export, where it stays one op",
            )
        handler = ATEN_OPS.lookup(node.target, f"node '{node.name}' ({_op_name(node)})")
        return handler(self, node, {name: self._value(arg) for name, arg in _bind(node).items()})

    def _value(self, arg: Any) -> Any:
        if isinstance(arg, fx.Node):
            return self.env[arg]
        if isinstance(arg, list | tuple):
            return [self._value(a) for a in arg]
        return arg

    def _getitem(self, node: fx.Node) -> Any:
        source, index = self._value(node.args[0]), node.args[1]
        if isinstance(source, _Parts):
            return source.parts[index]
        if not isinstance(source, _Tuple):
            raise _error(node, "indexes a value that is not a batch-norm or max-pool result; not supported")
        return source.first if index == 0 else _Unusable(f"output {index} of '{source.source}'")

    # ----------------------------------------------------------------------------- values

    def _tensor(self, node: fx.Node, value: Any) -> fx.Node:
        """A node of the new graph for a tensor argument, rejecting what cannot be data."""
        if isinstance(value, fx.Node):
            return value
        if isinstance(value, _Lifted):
            return self._attribute(value)
        if isinstance(value, _Symbolic):
            raise _error(node, "uses a symbolic size as data; spikeport supports sizes only in view/reshape")
        if isinstance(value, _Transposed):
            raise _error(node, f"uses the transposed weight '{value.source}' outside a linear layer")
        if isinstance(value, _Unusable):
            raise _error(node, f"uses {value.what}; only the first output of such ops has an equivalent")
        if isinstance(value, _Tuple):
            raise _error(node, f"uses the tuple result of '{value.source}' directly")
        raise _error(node, f"expects a tensor, got {type(value).__name__}")

    def _operand(self, node: fx.Node, value: Any) -> fx.Node | int | float | bool:
        return value if isinstance(value, int | float | bool) else self._tensor(node, value)

    def _attribute(self, lifted: _Lifted) -> fx.Node:
        if lifted.fqn not in self.attributes:
            tensor = lifted.tensor.detach().clone()
            name = self._claim(lifted.fqn, nn.Parameter(tensor) if lifted.is_parameter else tensor)
            self.attributes[lifted.fqn] = self.graph.get_attr(name)
        return self.attributes[lifted.fqn]

    def _weight(self, node: fx.Node, value: Any, what: str) -> _Lifted | None:
        if value is None or isinstance(value, _Lifted):
            return value
        raise _error(node, f"has a computed {what}; spikeport needs it to be a parameter or buffer")

    # ----------------------------------------------------------------------------- naming

    def _free(self, path: str, owner: bool) -> bool:
        return (
            path not in self.leaves
            and path not in self.containers
            and (owner or path not in self.reserved)
            and not any(a in self.leaves for a in _ancestors(path))
        )

    def _claim(self, base: str, leaf: Any, owner: bool = False) -> str:
        """A unique dotted path for a new leaf, as close to ``base`` as the names already taken allow."""
        if any(a in self.leaves for a in _ancestors(base)):
            base = base.replace(".", "_")
        path = module_name(base, lambda name: not self._free(name, owner and name == base), path=True)
        self.leaves[path] = leaf
        self.containers.update(_ancestors(path))
        return path

    def _module_path(self, node: fx.Node, module: nn.Module, owner: str | None) -> str:
        """The original module's path when the node came from a module of the same type, else path.op."""
        path, type_name = _innermost_module(node)
        if path and type_name == _qualified(type(module)):
            return self._claim(path, module, owner=path == owner)
        stem = node.name.strip("_") or "op"
        return self._claim(f"{path}.{stem}" if path else stem, module)

    def _call(self, node: fx.Node, module: nn.Module, x: Any) -> fx.Node:
        return self.graph.call_module(self._module_path(node, module, None), (self._tensor(node, x),))

    def _call_weighted(self, node: fx.Node, module: nn.Module, tensors: dict[str, _Lifted | None], x: Any):
        key = (repr(module), tuple((n, t.fqn if t else None) for n, t in tensors.items()))
        if key not in self.shared:
            _adopt(module, {n: t.tensor if t else None for n, t in tensors.items()})
            first = next(t for t in tensors.values() if t is not None)
            owner = first.fqn.rpartition(".")[0]
            self.shared[key] = self._module_path(node, module, owner)
        return self.graph.call_module(self.shared[key], (self._tensor(node, x),))

    # ----------------------------------------------------------------------------- op handlers

    @ATEN_OPS.register(
        aten.conv1d.default,
        aten.conv2d.default,
        aten.conv1d.padding,
        aten.conv2d.padding,
        aten.convolution.default,
    )
    def _conv(self, node: fx.Node, a: dict[str, Any]) -> fx.Node:
        if a.get("transposed"):
            raise _error(node, "is a transposed convolution; supported: nn.Conv1d and nn.Conv2d")
        weight = self._weight(node, a["weight"], "weight")
        bias = self._weight(node, a["bias"], "bias")
        cls = {3: nn.Conv1d, 4: nn.Conv2d}.get(weight.tensor.dim())
        if cls is None:
            raise _error(node, f"has {weight.tensor.dim()}-d weights; supported: 1d and 2d convolutions")
        out_channels, in_per_group, *kernel = weight.tensor.shape
        padding = a["padding"] if isinstance(a["padding"], str) else tuple(a["padding"])
        conv = cls(
            in_per_group * a["groups"],
            out_channels,
            tuple(kernel),
            stride=tuple(a["stride"]),
            padding=padding,
            dilation=tuple(a["dilation"]),
            groups=a["groups"],
            bias=bias is not None,
            device="meta",
        )
        return self._call_weighted(node, conv, {"weight": weight, "bias": bias}, a["input"])

    @ATEN_OPS.register(aten.linear.default)
    def _linear(self, node: fx.Node, a: dict[str, Any]) -> fx.Node:
        weight = self._weight(node, a["weight"], "weight")
        return self._linear_module(node, weight, self._weight(node, a["bias"], "bias"), a["input"])

    @ATEN_OPS.register(aten.addmm.default, aten.mm.default)
    def _matmul(self, node: fx.Node, a: dict[str, Any]) -> fx.Node:
        if a.get("beta", 1) != 1 or a.get("alpha", 1) != 1:
            raise _error(node, "scales its terms (beta/alpha != 1); only plain linear layers are supported")
        if not isinstance(a["mat2"], _Transposed):
            raise _error(
                node, "is a matrix product that is not x @ weight.T; only linear layers are supported"
            )
        if node.target is aten.mm.default:
            return self._linear_module(node, a["mat2"].weight, None, a["self"])
        bias = self._weight(node, a["self"], "bias")
        return self._linear_module(node, a["mat2"].weight, bias, a["mat1"])

    def _linear_module(self, node: fx.Node, weight: _Lifted, bias: _Lifted | None, x: Any) -> fx.Node:
        if weight.tensor.dim() != 2 or (bias is not None and bias.tensor.dim() != 1):
            raise _error(node, "has weights that are not those of a linear layer")
        out_features, in_features = weight.tensor.shape
        linear = nn.Linear(in_features, out_features, bias=bias is not None, device="meta")
        # On [B*N, D] rows of [B, N, D] (core aten's form of a linear on 3-d input) the linear reads the 3-d
        # value: the batch stays at dim 0, and the reshape back to [B, N, out] that follows is then a no-op.
        x = self.merged.get(x, x) if isinstance(x, fx.Node) else x
        return self._call_weighted(node, linear, {"weight": weight, "bias": bias}, x)

    @ATEN_OPS.register(aten.t.default, aten.permute.default, aten.transpose.int)
    def _transpose(self, node: fx.Node, a: dict[str, Any]) -> Any:
        weight = a["self"]
        if not isinstance(weight, _Lifted):
            return self._permute(node, a)
        if weight.tensor.dim() != 2:
            raise _error(
                node, "reorders the dims of a parameter; only a linear weight's transpose is supported"
            )
        dims = a.get("dims", [a.get("dim0", 1), a.get("dim1", 0)])
        if sorted(d % 2 for d in dims) != [0, 1]:
            raise _error(node, f"reorders a weight's dims as {dims}; only a transpose is supported")
        return _Transposed(weight, node.name)

    def _permute(self, node: fx.Node, a: dict[str, Any]) -> fx.Node:
        """An activation's axes reordered. It may move the batch (a fused q/k/v projection does, until it is
        unbound); conversion checks that every op that computes sees the batch at dim 0."""
        rank = _meta_tensor(node.args[0]).dim()
        if node.target is aten.permute.default:
            dims = [d % rank for d in a["dims"]]
        elif node.target is aten.transpose.int:
            dims = list(range(rank))
            first, second = a["dim0"] % rank, a["dim1"] % rank
            dims[first], dims[second] = second, first
        else:
            dims = [1, 0] if rank == 2 else list(range(rank))
        return self.graph.call_function(torch.permute, (self._tensor(node, a["self"]), tuple(dims)))

    def _axis(self, node: fx.Node, dim: int) -> int:
        """A dim of the op's input, made positive; the batch axis is refused (samples must stay apart)."""
        shape = _meta_tensor(node.args[0]).shape
        axis = dim % len(shape)
        size = _as_int(shape[axis])
        if axis == 0 and (size is None or size == self.example_batch):
            raise _error(node, "acts on the batch axis; only ops on the other axes are supported")
        return axis

    def _index(self, node: fx.Node, x: Any, axis: int, item: Any) -> fx.Node:
        index = (*[slice(None)] * axis, item)
        return self.graph.call_function(operator.getitem, (self._tensor(node, x), index))

    @ATEN_OPS.register(aten.slice.Tensor)
    def _slice(self, node: fx.Node, a: dict[str, Any]) -> Any:
        size = _as_int(_meta_tensor(node.args[0]).shape[a["dim"]])
        start, end, step = a["start"] or 0, a["end"], a["step"]
        whole = start == 0 and step == 1 and (end is None or end >= (size or 2**62))
        if whole:  # the whole axis, as export writes the batch's part of x[:, 1:]
            return a["self"]
        window = slice(start, end, step).indices(size) if size is not None else (start, end, step)
        return self._index(node, a["self"], self._axis(node, a["dim"]), slice(*window))

    @ATEN_OPS.register(aten.select.int)
    def _select(self, node: fx.Node, a: dict[str, Any]) -> fx.Node:
        return self._index(node, a["self"], self._axis(node, a["dim"]), int(a["index"]))

    @ATEN_OPS.register(aten.split.Tensor, aten.split_with_sizes.default, aten.chunk.default, aten.unbind.int)
    def _split(self, node: fx.Node, a: dict[str, Any]) -> _Parts:
        axis = self._axis(node, a["dim"])
        sizes = [_as_int(value.shape[axis]) for value in node.meta["val"]]
        if node.target is aten.unbind.int:
            return _Parts([self._index(node, a["self"], axis, i) for i in range(len(sizes))], node.name)
        parts, start = [], 0
        for size in sizes:
            parts.append(self._index(node, a["self"], axis, slice(start, start + size)))
            start += size
        return _Parts(parts, node.name)

    @ATEN_OPS.register(
        aten.pad.default,
        aten.constant_pad_nd.default,
        aten.reflection_pad1d.default,
        aten.reflection_pad2d.default,
        aten.replication_pad1d.default,
        aten.replication_pad2d.default,
    )
    def _pad(self, node: fx.Node, a: dict[str, Any]) -> fx.Node:
        """Padding with zeros or with copies of the border (reflect, replicate, circular), last one or two axes."""
        name = node.target.__name__.split(".")[0]
        mode = {"reflection": "reflect", "replication": "replicate"}.get(
            name.split("_")[0], a.get("mode", "constant")
        )
        value = a.get("value") or 0.0
        if mode not in PADDING_MODULES or (mode == "constant" and value != 0):
            raise _error(
                node, f"pads in mode {mode!r} with value {value}; zeros or copies of the border convert"
            )
        pads = list(a["padding" if "padding" in a else "pad"])
        if len(pads) not in (2, 4) or len(pads) > 2 * (_meta_tensor(node.args[0]).dim() - 2):
            raise _error(node, f"pads {pads}: only the last one or two axes (width, height) may be padded")
        module = PADDING_MODULES[mode][len(pads) // 2 - 1](tuple(pads))
        return self._call(node, module, a["self"])

    @ATEN_OPS.register(aten.arange.start_step, aten.arange.default, aten.arange.start)
    def _index_arithmetic(self, node: fx.Node, a: dict[str, Any]) -> None:
        raise _error(
            node,
            "computes indices: core ATen writes reflect and replicate padding this way; save the program "
            "before run_decompositions() (or export to ONNX), where the padding stays one op",
        )

    @ATEN_OPS.register(aten.layer_norm.default, aten.native_layer_norm.default)
    def _layer_norm(self, node: fx.Node, a: dict[str, Any]) -> Any:
        weight, bias = self._weight(node, a["weight"], "weight"), self._weight(node, a["bias"], "bias")
        shape = tuple(a["normalized_shape"])
        norm = nn.LayerNorm(shape, eps=a["eps"], elementwise_affine=weight is not None, bias=bias is not None)
        norm = norm.to("meta")
        tensors = {"weight": weight, "bias": bias} if weight is not None else {}
        result = (
            self._call_weighted(node, norm, tensors, a["input"])
            if tensors
            else self._call(node, norm, a["input"])
        )
        return result if node.target is aten.layer_norm.default else _Tuple(result, node.name)

    @ATEN_OPS.register(aten.softmax.int, aten._softmax.default)
    def _softmax(self, node: fx.Node, a: dict[str, Any]) -> fx.Node:
        """A softmax: dropped where it ends the network, an analog op inside it (attention)."""
        self._axis(node, a["dim"])
        return self.graph.call_function(torch.softmax, (self._tensor(node, a["self"]), a["dim"]))

    @ATEN_OPS.register(aten.matmul.default, aten.bmm.default)
    def _product(self, node: fx.Node, a: dict[str, Any]) -> fx.Node:
        """A product of two signals (attention's q @ k^T and weights @ v): an analog op."""
        operands = [self._tensor(node, a["self"]), self._tensor(node, a["other" if "other" in a else "mat2"])]
        if all(operand in self.merged for operand in operands):  # a bmm over merged heads: on the 4-d values
            operands = [self.merged[operand] for operand in operands]
        return self.graph.call_function(torch.matmul, tuple(operands))

    @ATEN_OPS.register(aten.scaled_dot_product_attention.default)
    def _attention(self, node: fx.Node, a: dict[str, Any]) -> fx.Node:
        if a.get("attn_mask") is not None or a.get("dropout_p", 0.0) != 0.0 or a.get("enable_gqa"):
            raise _error(node, "has a mask, dropout or grouped heads; plain attention is supported")
        query, key, value = (self._tensor(node, a[name]) for name in ("query", "key", "value"))
        kwargs = {"is_causal": a.get("is_causal", False), "scale": a.get("scale")}
        return self.graph.call_function(F.scaled_dot_product_attention, (query, key, value), kwargs)

    @ATEN_OPS.register(aten.expand.default)
    def _expand(self, node: fx.Node, a: dict[str, Any]) -> fx.Node:
        """A parameter (a class token) repeated over the batch, as ViTs write it."""
        token = a["self"]
        if list(_meta_tensor(node.args[0]).shape) == list(_meta_tensor(node).shape):
            return token  # the core-aten form of a matmul expands its operands to their own sizes
        if not isinstance(token, _Lifted) or token.tensor.shape[0] != 1:
            raise _error(
                node, "expands a computed value; only a parameter's expansion over the batch is supported"
            )
        sizes = [_as_int(d) for d in _meta_tensor(node).shape[1:]]
        if any(size is None for size in sizes):
            raise _error(node, "expands to dynamic sizes other than the batch; not supported")
        inputs = next(n for n in self.graph.nodes if n.op == "placeholder")
        batch = self.graph.call_method("size", (inputs, 0))
        return self.graph.call_method("expand", (self._tensor(node, token), batch, *sizes))

    @ATEN_OPS.register(
        aten.batch_norm.default,
        aten.native_batch_norm.default,
        aten._native_batch_norm_legit_no_training.default,
        aten._native_batch_norm_legit.default,
        aten._native_batch_norm_legit.no_stats,
        aten._native_batch_norm_legit_functional.default,
    )
    def _batch_norm(self, node: fx.Node, a: dict[str, Any]) -> Any:
        if a.get("training", node.target is not aten._native_batch_norm_legit_no_training.default):
            raise _error(
                node,
                "normalises with batch statistics (training mode or track_running_stats=False); "
                "call model.eval() before torch.export.export",
            )
        weight, bias = self._weight(node, a["weight"], "weight"), self._weight(node, a["bias"], "bias")
        mean = self._weight(node, a["running_mean"], "running mean")
        var = self._weight(node, a["running_var"], "running variance")
        rank = _meta_tensor(node.args[0]).dim()
        cls = {2: nn.BatchNorm1d, 3: nn.BatchNorm1d, 4: nn.BatchNorm2d}.get(rank)
        if cls is None:
            raise _error(node, f"normalises a {rank}-d tensor; supported: BatchNorm1d and BatchNorm2d")
        features = mean.tensor.numel()
        bn = cls(features, eps=a["eps"], momentum=a["momentum"], affine=weight is not None, device="meta")
        tensors = {"weight": weight, "bias": bias, "running_mean": mean, "running_var": var}
        if weight is not None and bias is None:
            tensors["bias"] = _Lifted(f"{weight.fqn}_zero_bias", torch.zeros_like(weight.tensor), False)
        counter = f"{mean.fqn.rpartition('.')[0]}.num_batches_tracked".lstrip(".")
        batches = self.program.state_dict.get(counter, torch.tensor(0, dtype=torch.long))
        tensors["num_batches_tracked"] = _Lifted(counter, batches, False)
        result = self._call_weighted(node, bn, tensors, a["input"])
        return result if node.target is aten.batch_norm.default else _Tuple(result, node.name)

    @ATEN_OPS.register(aten.relu.default, aten.relu_.default)
    def _relu(self, node: fx.Node, a: dict[str, Any]) -> fx.Node:
        return self._call(node, nn.ReLU(), a["self"])

    @ATEN_OPS.register(aten.relu6.default, aten.hardtanh.default, aten.hardtanh_.default, aten.clamp.default)
    def _clip(self, node: fx.Node, a: dict[str, Any]) -> fx.Node:
        """ReLU6 (relu6 or hardtanh(0, 6); core ATen: clamp(0, 6)): a ReLU capped at the upper bound."""
        if node.target is aten.relu6.default:
            low, high = 0, 6.0
        elif "min_val" in a:
            low, high = a["min_val"], a["max_val"]
        else:
            low, high = a.get("min"), a.get("max")
        module = clip_activation(low, high)
        if module is None:
            raise _error(node, f"clips to [{low}, {high}]; a clip from 0 converts (a ReLU, or ReLU6)")
        return self._call(node, module, a["self"])

    @ATEN_OPS.register(
        aten.silu.default,
        aten.sigmoid.default,
        aten.tanh.default,
        aten.hardswish.default,
        aten.gelu.default,
        aten.leaky_relu.default,
    )
    def _smooth_activation(self, node: fx.Node, a: dict[str, Any]) -> fx.Node:
        """Activations only temporal coding (method='fs') converts; rate methods refuse them later, clearly."""
        name = node.target.__name__.split(".")[0]
        module = {
            "silu": nn.SiLU,
            "sigmoid": nn.Sigmoid,
            "tanh": nn.Tanh,
            "hardswish": nn.Hardswish,
            "gelu": lambda: nn.GELU(approximate=a.get("approximate", "none")),
            "leaky_relu": lambda: nn.LeakyReLU(a.get("negative_slope", 0.01)),
        }[name]()
        return self._call(node, module, a["self"])

    @ATEN_OPS.register(aten.avg_pool2d.default)
    def _avg_pool(self, node: fx.Node, a: dict[str, Any]) -> fx.Node:
        pool = nn.AvgPool2d(
            tuple(a["kernel_size"]),
            tuple(a["stride"]) or None,
            tuple(a["padding"]),
            a["ceil_mode"],
            a["count_include_pad"],
            a["divisor_override"],
        )
        return self._call(node, pool, a["self"])

    @ATEN_OPS.register(aten.adaptive_avg_pool2d.default, aten._adaptive_avg_pool2d.default)
    def _adaptive_pool(self, node: fx.Node, a: dict[str, Any]) -> fx.Node:
        return self._call(node, nn.AdaptiveAvgPool2d(tuple(a["output_size"])), a["self"])

    @ATEN_OPS.register(aten.mean.dim)
    def _mean(self, node: fx.Node, a: dict[str, Any]) -> fx.Node:
        """Global average pooling written as ``x.mean((2, 3))``: an AdaptiveAvgPool2d(1) (then a flatten)."""
        rank = _meta_tensor(node.args[0]).dim()
        dims = sorted(d % rank for d in a["dim"] or [])
        if rank != 4 or dims != [2, 3] or a.get("dtype") is not None:
            raise _error(node, "is a mean over other dims than H and W of a 4-d tensor; not supported")
        pooled = self._call(node, nn.AdaptiveAvgPool2d(1), a["self"])
        return pooled if a["keepdim"] else self.graph.call_function(torch.flatten, (pooled, 1))

    @ATEN_OPS.register(aten.max_pool2d.default, aten.max_pool2d_with_indices.default)
    def _max_pool(self, node: fx.Node, a: dict[str, Any]) -> Any:
        pool = nn.MaxPool2d(
            tuple(a["kernel_size"]),
            tuple(a["stride"]) or None,
            tuple(a["padding"]),
            tuple(a["dilation"]),
            ceil_mode=a["ceil_mode"],
        )
        result = self._call(node, pool, a["self"])
        return result if node.target is aten.max_pool2d.default else _Tuple(result, node.name)

    @ATEN_OPS.register(
        aten.view.default,
        aten.reshape.default,
        aten._unsafe_view.default,
        aten.unsqueeze.default,
        aten.squeeze.dim,
        aten.squeeze.dims,
    )
    def _reshape(self, node: fx.Node, a: dict[str, Any]) -> fx.Node:
        """Sizes from the output metadata, with the batch dimension freed (see the module docstring)."""
        sizes = [_as_int(d) for d in _meta_tensor(node).shape]
        free = [i for i, size in enumerate(sizes) if size is None]
        if len(free) > 1:
            raise _error(node, "reshapes to several dynamic dimensions; only the batch may be dynamic")
        if free:
            sizes[free[0]] = -1
        elif self.example_batch and sizes and sizes[0] % self.example_batch == 0:
            sizes[0] = -1
        source = self._tensor(node, a["self"])
        result = self.graph.call_function(torch.reshape, (source, tuple(sizes)))
        before = [_as_int(d) for d in _meta_tensor(node.args[0]).shape]
        kept = len(sizes) - 1  # trailing dims a merge of the leading ones keeps
        if 0 < kept < len(before) - 1 and before[-kept:] == sizes[1:]:
            self.merged[result] = source
        return result

    @ATEN_OPS.register(aten.flatten.using_ints)
    def _flatten(self, node: fx.Node, a: dict[str, Any]) -> fx.Node:
        end = () if a["end_dim"] == -1 else (a["end_dim"],)
        return self.graph.call_function(torch.flatten, (self._tensor(node, a["self"]), a["start_dim"], *end))

    @ATEN_OPS.register(aten.add.Tensor, aten.add.Scalar, aten.add_.Tensor)
    def _add(self, node: fx.Node, a: dict[str, Any]) -> fx.Node:
        if a.get("alpha", 1) != 1:
            raise _error(node, f"adds with alpha={a['alpha']}; spikeport supports plain sums (alpha=1)")
        operands = (self._operand(node, a["self"]), self._operand(node, a["other"]))
        return self.graph.call_function(operator.add, operands)

    @ATEN_OPS.register(aten.sub.Tensor, aten.sub.Scalar)
    def _sub(self, node: fx.Node, a: dict[str, Any]) -> fx.Node:
        if a.get("alpha", 1) != 1:
            raise _error(node, f"subtracts with alpha={a['alpha']}; spikeport supports plain differences")
        operands = (self._operand(node, a["self"]), self._operand(node, a["other"]))
        return self.graph.call_function(operator.sub, operands)

    @ATEN_OPS.register(aten.div.Tensor, aten.div.Scalar)
    def _div(self, node: fx.Node, a: dict[str, Any]) -> fx.Node:
        operands = (self._operand(node, a["self"]), self._operand(node, a["other"]))
        return self.graph.call_function(operator.truediv, operands)

    @ATEN_OPS.register(aten.mul.Tensor, aten.mul.Scalar)
    def _mul(self, node: fx.Node, a: dict[str, Any]) -> fx.Node:
        """A scaling by a constant, or a product of two signals (a gate: method='fs' only)."""
        operands = (self._operand(node, a["self"]), self._operand(node, a["other"]))
        return self.graph.call_function(operator.mul, operands)

    @ATEN_OPS.register(aten.cat.default)
    def _cat(self, node: fx.Node, a: dict[str, Any]) -> fx.Node:
        tensors = [self._tensor(node, t) for t in a["tensors"]]
        return self.graph.call_function(torch.cat, (tensors, a["dim"]))

    @ATEN_OPS.register(
        aten.dropout.default,
        aten.dropout_.default,
        aten.feature_dropout.default,
        aten.native_dropout.default,
        aten.clone.default,
        aten.detach.default,
        aten.detach_.default,
        aten.alias.default,
        aten.contiguous.default,
        aten.lift_fresh_copy.default,
    )
    def _identity(self, node: fx.Node, a: dict[str, Any]) -> Any:
        value = a.get("input", a.get("self"))
        return _Tuple(value, node.name) if node.target is aten.native_dropout.default else value

    @ATEN_OPS.register(aten._to_copy.default, aten.to.dtype, aten.to.device, aten.to.dtype_layout)
    def _copy(self, node: fx.Node, a: dict[str, Any]) -> Any:
        source, result = _meta_tensor(node.args[0]), _meta_tensor(node)
        if (source.dtype, source.device) != (result.dtype, result.device):
            raise _error(
                node,
                f"converts {source.dtype} on {source.device} to {result.dtype} on {result.device}; only "
                "copies that keep dtype and device are supported",
            )
        return a["self"]

    @ATEN_OPS.register(
        aten._assert_tensor_metadata.default,
        aten._assert_scalar.default,
        aten._assert_async.default,
        aten._assert_async.msg,
        aten.sym_constrain_range.default,
        aten.sym_constrain_range_for_size.default,
    )
    def _drop(self, node: fx.Node, a: dict[str, Any]) -> None:
        return None

    @ATEN_OPS.register(aten.sym_size.int, aten.sym_numel.default, aten.sym_stride.int)
    def _symbolic(self, node: fx.Node, a: dict[str, Any]) -> _Symbolic:
        return _SYMBOLIC


@contextlib.contextmanager
def _quiet_export_log() -> Iterator[list[logging.LogRecord]]:
    """torch.export.load logs a full traceback before failing; keep it, quietly, for our one-line error."""
    records: list[logging.LogRecord] = []

    def swallow(record: logging.LogRecord) -> bool:
        records.append(record)
        return False

    logger = logging.getLogger("torch.export")
    logger.addFilter(swallow)
    try:
        yield records
    finally:
        logger.removeFilter(swallow)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0].split(". ")[0] if text else type(error).__name__


def _read(path: Path) -> ExportedProgram:
    if not path.is_file():
        raise ConversionError(f"cannot load '{path}': no such file")
    how = "save it with torch.export.save(torch.export.export(model, example_args), path)"
    if not zipfile.is_zipfile(path):
        raise ConversionError(f"'{path}' is not a torch.export archive (not a zip file); {how}")
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
    if "version" not in names and not any(n.rpartition("/")[2] == "archive_format" for n in names):
        raise ConversionError(f"'{path}' is a zip file but not a torch.export archive (torch.save?); {how}")
    with _quiet_export_log() as records:
        try:
            program = torch.export.load(path)
        except Exception as error:
            causes = [r.exc_info[1] for r in records if r.exc_info and r.exc_info[1] is not None]
            reason = _first_line(causes[0] if causes else error)
            raise ConversionError(f"cannot read '{path}' as a torch.export program: {reason}") from None
    if not isinstance(program, ExportedProgram):
        raise ConversionError(f"'{path}' holds a {type(program).__name__}, not a torch.export program")
    return program


def load_exported(source: str | os.PathLike[str] | ExportedProgram) -> fx.GraphModule:
    """An ``fx.GraphModule`` of standard modules computing what a ``.pt2`` file or ``ExportedProgram`` does.

    The result traces with ``torch.fx.symbolic_trace``, is in eval mode and accepts any batch size:
    reshapes get a free (-1) batch dimension, also in programs exported with a static batch (see the
    module docstring for the rule). Raises ConversionError, naming the node, for anything spikeport
    has no equivalent of, for programs with several inputs or outputs, and for unreadable files.
    """
    if isinstance(source, ExportedProgram):
        program = source
    elif isinstance(source, str | os.PathLike):
        program = _read(Path(source))
    else:
        raise ConversionError(
            f"expected a .pt2 path or a torch.export.ExportedProgram, got {type(source).__name__}"
        )
    return _Rebuilder(program).build()
