"""A GraphModule as plain data: a JSON description of its graph and modules, plus its tensors by name.

Only what spikeport itself builds is described: the module types and functions of the canonical graphs
(``graph.ops``) and spikeport's neuron modules. Each module type has a spec that reads its constructor
arguments from the module and builds it again, so loading runs no pickled code: a graph of known ops,
modules from a fixed list, and tensors. Anything outside those lists is refused when saving.

Loading treats the description as hostile. torch.fx turns a graph into Python source, pasting node names,
placeholder and method targets, module paths and keyword names into it, so every one of them is checked
(identifiers, or names from the allow-lists) before a node is created; values decode only to JSON scalars,
containers, slices, torch dtypes, FS codes, tensors of the file and earlier nodes; a module receives only its
own constructor arguments and declared state; and modules are built on the meta device, so sizes in a
description allocate nothing until the file's own tensors take their place.
"""

from __future__ import annotations

import builtins
import inspect
import keyword
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, fx, nn

from spikeport.fs_codes import code_from_dict, code_to_dict
from spikeport.graph.ops import ACTIVATION_FUNCTIONS, FUNCTION_ROLES, METHOD_ROLES
from spikeport.layers import (
    QCFS,
    AnalogProduct,
    MatMul,
    PaddedMaxPool2d,
    ScaledDotProductAttention,
    Softmax,
    SpikeSite,
    TiledAvgPool2d,
    TiledMaxPool2d,
)
from spikeport.neurons import IFNeuron, SpikingMaxPool
from spikeport.neurons.analog import AccumulatedOp, AnalogOp
from spikeport.neurons.fs import FSCode, FSMaxPool, FSNeuron
from spikeport.neurons.signed import SignedIFNeuron


class DescriptionError(ValueError):
    """A graph or module that the description format does not cover, or a description that is damaged."""


@dataclass(frozen=True)
class ModuleSpec:
    """How to describe and rebuild one module type: constructor arguments read from attributes."""

    cls: type[nn.Module]
    arguments: tuple[str, ...] = ()
    read: Callable[[nn.Module], dict] | None = None  # arguments not stored under their own name
    state: tuple[str, ...] = ()  # boolean flags set after construction (by assembly)
    children: tuple[str, ...] = ()  # submodules passed to the constructor, described recursively


def _bias(module: nn.Module) -> dict:
    return {"bias": module.bias is not None}


def _padded_max_pool(module: PaddedMaxPool2d) -> dict:
    return {"padding": module.padding, "kernel_size": module.pool.kernel_size, "stride": module.pool.stride}


_CONV = (
    "in_channels",
    "out_channels",
    "kernel_size",
    "stride",
    "padding",
    "dilation",
    "groups",
    "padding_mode",
)
_AVG = ("kernel_size", "stride", "padding", "ceil_mode", "count_include_pad")
_MAX = ("kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices")
_BN = ("num_features", "eps", "momentum", "affine", "track_running_stats")

SPECS: dict[str, ModuleSpec] = {
    "Conv1d": ModuleSpec(nn.Conv1d, _CONV, _bias),
    "Conv2d": ModuleSpec(nn.Conv2d, _CONV, _bias),
    "Linear": ModuleSpec(nn.Linear, ("in_features", "out_features"), _bias),
    "AvgPool1d": ModuleSpec(nn.AvgPool1d, _AVG),
    "AvgPool2d": ModuleSpec(nn.AvgPool2d, (*_AVG, "divisor_override")),
    "TiledAvgPool2d": ModuleSpec(TiledAvgPool2d, _AVG),
    "AdaptiveAvgPool1d": ModuleSpec(nn.AdaptiveAvgPool1d, ("output_size",)),
    "AdaptiveAvgPool2d": ModuleSpec(nn.AdaptiveAvgPool2d, ("output_size",)),
    "MaxPool1d": ModuleSpec(nn.MaxPool1d, _MAX),
    "MaxPool2d": ModuleSpec(nn.MaxPool2d, _MAX),
    "TiledMaxPool2d": ModuleSpec(TiledMaxPool2d, ("kernel_size", "stride")),
    "PaddedMaxPool2d": ModuleSpec(PaddedMaxPool2d, read=_padded_max_pool),
    "BatchNorm1d": ModuleSpec(nn.BatchNorm1d, _BN),
    "BatchNorm2d": ModuleSpec(nn.BatchNorm2d, _BN),
    "Flatten": ModuleSpec(nn.Flatten, ("start_dim", "end_dim")),
    "Unflatten": ModuleSpec(nn.Unflatten, ("dim", "unflattened_size")),
    "ZeroPad1d": ModuleSpec(nn.ZeroPad1d, ("padding",)),
    "ZeroPad2d": ModuleSpec(nn.ZeroPad2d, ("padding",)),
    "Identity": ModuleSpec(nn.Identity),
    "ReLU": ModuleSpec(nn.ReLU),
    "SiLU": ModuleSpec(nn.SiLU),
    "Sigmoid": ModuleSpec(nn.Sigmoid),
    "Tanh": ModuleSpec(nn.Tanh),
    "Hardswish": ModuleSpec(nn.Hardswish),
    "GELU": ModuleSpec(nn.GELU, ("approximate",)),
    "LeakyReLU": ModuleSpec(nn.LeakyReLU, ("negative_slope",)),
    "AnalogProduct": ModuleSpec(AnalogProduct),
    "MatMul": ModuleSpec(MatMul),
    "Softmax": ModuleSpec(Softmax, ("dim",)),
    "ScaledDotProductAttention": ModuleSpec(ScaledDotProductAttention, ("is_causal", "scale")),
    "SpikeSite": ModuleSpec(SpikeSite),
    "LayerNorm": ModuleSpec(
        nn.LayerNorm,
        ("normalized_shape", "eps", "elementwise_affine"),
        lambda m: {"bias": m.bias is not None},
    ),
    "RMSNorm": ModuleSpec(nn.RMSNorm, ("normalized_shape", "eps", "elementwise_affine")),
    "LocalResponseNorm": ModuleSpec(nn.LocalResponseNorm, ("size", "alpha", "beta", "k")),
    "QCFS": ModuleSpec(QCFS, ("levels",), lambda m: {"threshold": float(m.threshold.detach())}),
    "IFNeuron": ModuleSpec(
        IFNeuron,
        ("initial_potential", "levels"),
        lambda m: {
            "threshold": m.threshold,
            "reset": m.reset_mode.value,
            "spike_value": m.spike_value,
            "bias": m.bias,
        },
        state=("owns_input",),
    ),
    "SpikingMaxPool": ModuleSpec(
        SpikingMaxPool,
        ("levels",),
        read=lambda m: {"spike_unit": m.spike_unit},
        state=("in_static_prefix",),
        children=("pool",),
    ),
    "FSNeuron": ModuleSpec(
        FSNeuron,
        ("activation", "rounding"),
        lambda m: {
            "scale": m.scale,
            "codes": None if m.codes is None else {str(k): c for k, c in m.codes.items()},
        },
    ),
    "FSMaxPool": ModuleSpec(FSMaxPool, read=lambda m: {"scale": m.scale}, children=("pool",)),
    "SignedIFNeuron": ModuleSpec(
        SignedIFNeuron, ("levels",), read=lambda m: {"threshold": m.threshold, "bias": m.bias}
    ),
    "AnalogOp": ModuleSpec(
        AnalogOp, ("ops_per_sample", "extra_ops_per_sample"), state=("in_static_prefix",), children=("op",)
    ),
    "AccumulatedOp": ModuleSpec(
        AccumulatedOp,
        ("ops_per_sample", "extra_ops_per_sample"),
        state=("in_static_prefix",),
        children=("op",),
    ),
}


def _function_name(function) -> str:
    return f"{function.__module__}.{function.__name__}"


# Canonical graphs call no getattr (x.shape became x.size()): a saved graph may not reach attributes.
FUNCTIONS: dict[str, Callable] = {
    _function_name(f): f
    for f in [*FUNCTION_ROLES, *ACTIVATION_FUNCTIONS, operator.neg]
    if callable(f) and f is not builtins.getattr
}
METHODS = frozenset(METHOD_ROLES)  # tensor methods a call_method node may name
NODE_OPS = frozenset({"placeholder", "get_attr", "call_function", "call_method", "call_module", "output"})
DTYPES = {str(v).removeprefix("torch."): v for v in vars(torch).values() if isinstance(v, torch.dtype)}
_PATH_PART = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|[0-9]+")  # a submodule's name: an attribute or an index


def _identifier(name, what: str) -> str:
    """``name`` if it is a plain Python identifier (no keyword, no dunder), else a DescriptionError."""
    if not (isinstance(name, str) and name.isidentifier() and not keyword.iskeyword(name)) or name.startswith(
        "__"
    ):
        raise DescriptionError(f"damaged description: {what} {name!r} is not a plain identifier")
    return name


def _path(target, what: str) -> str:
    """A dotted module path (``layer1.0.conv``), each part an identifier or an index."""
    parts = target.split(".") if isinstance(target, str) else [None]
    if not all(isinstance(p, str) and _PATH_PART.fullmatch(p) and not p.startswith("__") for p in parts):
        raise DescriptionError(f"damaged description: {what} {target!r} is not a module path")
    return target


def _encode(value, tensors: dict[str, Tensor], prefix: str):
    """A constructor argument or node argument as JSON (tensors stored apart, by name)."""
    if isinstance(value, fx.Node):
        return {"node": value.name}
    if isinstance(value, Tensor):
        tensors[prefix] = value.detach().contiguous().clone()
        return {"tensor": prefix}
    if isinstance(value, FSCode):
        return {"fs_code": code_to_dict(value)}
    if isinstance(value, tuple):
        return {"tuple": [_encode(v, tensors, f"{prefix}.{i}") for i, v in enumerate(value)]}
    if isinstance(value, list):
        return [_encode(v, tensors, f"{prefix}.{i}") for i, v in enumerate(value)]
    if isinstance(value, dict):
        return {"dict": {str(k): _encode(v, tensors, f"{prefix}.{k}") for k, v in value.items()}}
    if isinstance(value, slice):
        return {"slice": [value.start, value.stop, value.step]}
    if isinstance(value, torch.dtype):
        return {"dtype": str(value).removeprefix("torch.")}
    if value is Ellipsis:
        return {"ellipsis": True}
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise DescriptionError(f"cannot describe a value of type {type(value).__name__} ({value!r})")


def _decode(raw, tensors: dict[str, Tensor], nodes: dict[str, fx.Node] | None = None):
    if isinstance(raw, list):
        return [_decode(v, tensors, nodes) for v in raw]
    if not isinstance(raw, dict):
        return raw
    (kind, body), *rest = raw.items()
    if rest:
        raise DescriptionError(f"damaged description: unexpected entry {raw!r}")
    if kind == "node" and isinstance(body, str):
        if nodes is None or body not in nodes:
            raise DescriptionError(f"damaged description: no node {body!r} before its use")
        return nodes[body]
    if kind == "tensor" and isinstance(body, str):
        if body not in tensors:
            raise DescriptionError(f"damaged file: tensor {body!r} is missing")
        return tensors[body]
    if kind == "fs_code" and isinstance(body, dict):
        return code_from_dict(body)
    if kind == "tuple" and isinstance(body, list):
        return tuple(_decode(v, tensors, nodes) for v in body)
    if kind == "dict" and isinstance(body, dict):
        return {k: _decode(v, tensors, nodes) for k, v in body.items()}
    if kind == "slice" and isinstance(body, list) and len(body) == 3:
        if not all(v is None or type(v) is int for v in body):
            raise DescriptionError(f"damaged description: slice bounds {body!r} are not integers")
        return slice(*body)
    if kind == "dtype" and body in DTYPES:
        return DTYPES[body]
    if kind == "ellipsis" and body is True:
        return Ellipsis
    raise DescriptionError(f"damaged description: unknown value {raw!r}")


def describe_module(module: nn.Module, tensors: dict[str, Tensor], prefix: str) -> dict:
    """``{"type", "arguments", "state", "children"}``; parameters and buffers go to ``tensors``."""
    kind = type(module).__name__
    spec = SPECS.get(kind)
    if spec is None or type(module) is not spec.cls:
        raise DescriptionError(
            f"module '{prefix.split('/', 1)[-1]}' ({kind}) has no saved-format description; saveable modules: "
            f"{', '.join(sorted(SPECS))}"
        )
    arguments = {name: getattr(module, name) for name in spec.arguments}
    if spec.read is not None:
        arguments.update(spec.read(module))
    children = {
        name: describe_module(getattr(module, name), tensors, f"{prefix}.{name}") for name in spec.children
    }
    for name, value in module.state_dict(keep_vars=False).items():
        if "." not in name:  # children store their own
            tensors[f"{prefix}#{name}"] = value.detach().contiguous().clone()
    for name, value in module.named_buffers(recurse=False):
        if name not in module.state_dict():  # non-persistent buffers (fan-outs) are part of the network too
            tensors[f"{prefix}#{name}"] = value.detach().contiguous().clone()
    return {
        "type": kind,
        "arguments": {k: _encode(v, tensors, f"{prefix}@{k}") for k, v in arguments.items()},
        "state": {name: _encode(getattr(module, name), tensors, f"{prefix}!{name}") for name in spec.state},
        "children": children,
    }


def _constructor_arguments(spec: ModuleSpec) -> frozenset[str]:
    """The keywords a description may pass: the constructor's, less where to allocate (never from a file)."""
    named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    parameters = inspect.signature(spec.cls).parameters.values()
    names = {p.name for p in parameters if p.kind in named} - {"device", "dtype"}
    return frozenset(names - set(spec.children))


def _entries(raw, keys: frozenset[str], what: str) -> dict:
    if not isinstance(raw, dict) or not set(raw) <= keys:
        extra = sorted(set(raw) - keys) if isinstance(raw, dict) else raw
        raise DescriptionError(f"damaged description: {what} has unexpected entries {extra!r}")
    return raw


def build_module(raw: dict, tensors: dict[str, Tensor], prefix: str) -> nn.Module:
    spec = SPECS.get(raw.get("type")) if isinstance(raw, dict) else None
    if spec is None:
        kind = raw.get("type") if isinstance(raw, dict) else raw
        raise DescriptionError(f"module '{prefix}' has unknown type {kind!r}")
    where = f"module '{prefix}' ({raw['type']})"
    raw_arguments = _entries(raw.get("arguments", {}), _constructor_arguments(spec), f"{where}'s arguments")
    arguments = {k: _decode(v, tensors) for k, v in raw_arguments.items()}
    if "codes" in arguments and arguments["codes"] is not None:
        arguments["codes"] = {int(k): code for k, code in arguments["codes"].items()}
    raw_children = _entries(raw.get("children", {}), frozenset(spec.children), f"{where}'s children")
    if set(raw_children) != set(spec.children):
        raise DescriptionError(f"damaged description: {where} lacks a submodule")
    children = [build_module(raw_children[name], tensors, f"{prefix}.{name}") for name in spec.children]
    with torch.device("meta"):  # sizes from the description allocate nothing; the file's tensors come next
        module = spec.cls(*children, **arguments)
    for name, value in _entries(raw.get("state", {}), frozenset(spec.state), f"{where}'s state").items():
        if not isinstance(value, bool):
            raise DescriptionError(f"damaged description: {where}'s flag {name} is {value!r}, not a bool")
        setattr(module, name, value)
    own = {k.split("#", 1)[1]: v for k, v in tensors.items() if k.startswith(f"{prefix}#")}
    persistent = module.state_dict()
    missing = {k for k in persistent if "." not in k} - set(own)
    if missing:
        raise DescriptionError(f"damaged file: {where} lacks {', '.join(sorted(missing))}")
    # assign: the saved tensors as they are (a float64 network stays float64), not copied into fresh ones;
    # strict about shapes, so a description whose sizes disagree with its tensors is refused
    try:
        module.load_state_dict({k: v for k, v in own.items() if k in persistent}, strict=False, assign=True)
    except RuntimeError as error:  # torch lists each mismatch on a line of its own
        reasons = "; ".join(line.strip() for line in str(error).splitlines()[1:] if line.strip())
        raise DescriptionError(
            f"damaged file: {where}'s tensors do not fit its arguments: {reasons}"
        ) from None
    for name, _ in module.named_buffers(recurse=False):
        if name not in persistent and name in own:  # fan-outs
            setattr(module, name, own[name].clone())
    unset = [name for name, t in (*module.named_parameters(), *module.named_buffers()) if t.is_meta]
    if unset:
        raise DescriptionError(f"damaged file: {where} lacks {', '.join(unset)}")
    return module


def describe_graph(gm: fx.GraphModule, tensors: dict[str, Tensor], prefix: str) -> dict:
    """The graph's nodes in order and every module a node calls."""
    nodes, modules = [], {}
    for node in gm.graph.nodes:
        target = node.target
        if node.op == "call_function":
            name = _function_name(target)
            if FUNCTIONS.get(name) is not target:
                raise DescriptionError(
                    f"node '{node.name}' calls {name}, which the saved format does not cover"
                )
            target = name
        elif node.op == "call_module" and target not in modules:
            modules[target] = describe_module(gm.get_submodule(target), tensors, f"{prefix}{target}")
        elif node.op == "get_attr":
            tensors[f"{prefix}{target}"] = getattr(gm, target).detach().contiguous().clone()
        nodes.append(
            {
                "name": node.name,
                "op": node.op,
                "target": target,
                "args": _encode(node.args, tensors, f"{prefix}{node.name}@args"),
                "kwargs": _encode(node.kwargs, tensors, f"{prefix}{node.name}@kwargs"),
                "sample_shape": list(node.meta["sample_shape"]) if "sample_shape" in node.meta else None,
            }
        )
    return {"nodes": nodes, "modules": modules}


def build_graph(raw: dict, tensors: dict[str, Tensor], prefix: str) -> fx.GraphModule:
    raw = _entries(raw, frozenset({"nodes", "modules"}), "a graph")
    if not isinstance(raw.get("modules"), dict) or not isinstance(raw.get("nodes"), list):
        raise DescriptionError("damaged description: a graph needs a dict of modules and a list of nodes")
    root = nn.Module()
    for target, description in raw["modules"].items():
        _set_path(root, _path(target, "module"), build_module(description, tensors, f"{prefix}{target}"))
    graph = fx.Graph()
    nodes: dict[str, fx.Node] = {}
    for entry in raw["nodes"]:
        name, op, target, args, kwargs = _node(entry, root, tensors, nodes, prefix)
        node = graph.create_node(op, target, args, kwargs, name=name)
        if node.name != name:
            raise DescriptionError(f"damaged description: node name {name!r} is used twice")
        shape = entry.get("sample_shape")
        if shape is not None:
            if not (isinstance(shape, list) and all(type(v) is int and v >= 0 for v in shape)):
                raise DescriptionError(f"damaged description: node '{name}' has sample shape {shape!r}")
            node.meta["sample_shape"] = tuple(shape)
        nodes[name] = node
    graph.lint()
    return fx.GraphModule(root, graph)


_NODE_ENTRIES = frozenset({"name", "op", "target", "args", "kwargs", "sample_shape"})


def _node(entry: dict, root: nn.Module, tensors: dict[str, Tensor], nodes: dict[str, fx.Node], prefix: str):
    """One node's (name, op, target, args, kwargs), every string that fx pastes into code checked first."""
    entry = _entries(entry, _NODE_ENTRIES, "a node")
    name, op, target = _identifier(entry.get("name"), "node name"), entry.get("op"), entry.get("target")
    if op not in NODE_OPS:
        raise DescriptionError(f"damaged description: node '{name}' has op {op!r}; ops: {sorted(NODE_OPS)}")
    if op == "placeholder":
        target = _identifier(target, "input name")
    elif op == "output" and target != "output":
        raise DescriptionError(f"damaged description: output node '{name}' has target {target!r}")
    elif op == "call_function":
        if target not in FUNCTIONS:
            raise DescriptionError(f"node '{name}' calls {target!r}, which this spikeport does not know")
        target = FUNCTIONS[target]
    elif op == "call_method" and target not in METHODS:
        raise DescriptionError(f"node '{name}' calls method {target!r}, which this spikeport does not know")
    elif op == "call_module" and not isinstance(_module_at(root, _path(target, "module")), nn.Module):
        raise DescriptionError(f"damaged description: node '{name}' calls no module at {target!r}")
    elif op == "get_attr":
        constant = tensors.get(f"{prefix}{_path(target, 'constant')}")
        if constant is None:
            raise DescriptionError(f"damaged file: constant {target!r} of node '{name}' is missing")
        _set_path(root, target, constant)
    args, kwargs = _decode(entry.get("args"), tensors, nodes), _decode(entry.get("kwargs"), tensors, nodes)
    if not isinstance(args, tuple | list) or not isinstance(kwargs, dict):
        raise DescriptionError(f"damaged description: node '{name}' has arguments {args!r}, {kwargs!r}")
    for key in kwargs:
        _identifier(key, f"node '{name}''s keyword")
    return name, op, target, tuple(args), kwargs


def _module_at(root: nn.Module, path: str) -> nn.Module | None:
    try:
        return root.get_submodule(path)
    except AttributeError:
        return None


def _set_path(root: nn.Module, path: str, value) -> None:
    *parents, last = path.split(".")
    owner = root
    for name in parents:  # add_module refuses a name that is already another kind of attribute
        if name not in dict(owner.named_children()):
            owner.add_module(name, nn.Module())
        owner = owner.get_submodule(name)
    if isinstance(value, nn.Module):
        owner.add_module(last, value)
    else:
        owner.register_buffer(last, value)
