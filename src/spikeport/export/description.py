"""A GraphModule as plain data: a JSON description of its graph and modules, plus its tensors by name.

Only what spikeport itself builds is described: the module types and functions of the canonical graphs
(``graph.ops``) and spikeport's neuron modules. Each module type has a spec that reads its constructor
arguments from the module and builds it again, so loading runs no pickled code: a graph of known ops,
modules from a fixed list, and tensors. Anything outside those lists is refused when saving.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, fx, nn

from spikeport.graph.ops import ACTIVATION_FUNCTIONS, FUNCTION_ROLES
from spikeport.layers import PaddedMaxPool2d, TiledAvgPool2d, TiledMaxPool2d
from spikeport.neurons import IFNeuron, SpikingMaxPool
from spikeport.neurons.fs import AnalogProduct, FSMaxPool, FSNeuron
from spikeport.qcfs import QCFS


class DescriptionError(ValueError):
    """A graph or module that the description format does not cover, or a description that is damaged."""


@dataclass(frozen=True)
class ModuleSpec:
    """How to describe and rebuild one module type: constructor arguments read from attributes."""

    cls: type[nn.Module]
    arguments: tuple[str, ...] = ()
    read: Callable[[nn.Module], dict] | None = None  # arguments not stored under their own name
    state: tuple[str, ...] = ()  # plain attributes set after construction (flags assembly sets)
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
    "QCFS": ModuleSpec(QCFS, ("levels",), lambda m: {"threshold": float(m.threshold.detach())}),
    "IFNeuron": ModuleSpec(
        IFNeuron,
        ("initial_potential",),
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
}


def _function_name(function) -> str:
    return f"{function.__module__}.{function.__name__}"


FUNCTIONS: dict[str, Callable] = {
    _function_name(f): f for f in [*FUNCTION_ROLES, *ACTIVATION_FUNCTIONS, operator.neg] if callable(f)
}


def _encode(value, tensors: dict[str, Tensor], prefix: str):
    """A constructor argument or node argument as JSON (tensors stored apart, by name)."""
    from spikeport.fs_codes import code_to_dict
    from spikeport.neurons.fs import FSCode

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
    from spikeport.fs_codes import code_from_dict

    if isinstance(raw, list):
        return [_decode(v, tensors, nodes) for v in raw]
    if not isinstance(raw, dict):
        return raw
    (kind, body), *rest = raw.items()
    if rest:
        raise DescriptionError(f"damaged description: unexpected entry {raw!r}")
    if kind == "node":
        if nodes is None or body not in nodes:
            raise DescriptionError(f"damaged description: no node {body!r} before its use")
        return nodes[body]
    if kind == "tensor":
        if body not in tensors:
            raise DescriptionError(f"damaged file: tensor {body!r} is missing")
        return tensors[body]
    if kind == "fs_code":
        return code_from_dict(body)
    if kind == "tuple":
        return tuple(_decode(v, tensors, nodes) for v in body)
    if kind == "dict":
        return {k: _decode(v, tensors, nodes) for k, v in body.items()}
    if kind == "slice":
        return slice(*body)
    if kind == "dtype":
        return getattr(torch, body)
    if kind == "ellipsis":
        return Ellipsis
    raise DescriptionError(f"damaged description: unknown value kind {kind!r}")


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


def build_module(raw: dict, tensors: dict[str, Tensor], prefix: str) -> nn.Module:
    spec = SPECS.get(raw.get("type"))
    if spec is None:
        raise DescriptionError(f"module '{prefix}' has unknown type {raw.get('type')!r}")
    arguments = {k: _decode(v, tensors) for k, v in raw["arguments"].items()}
    if "codes" in arguments and arguments["codes"] is not None:
        arguments["codes"] = {int(k): code for k, code in arguments["codes"].items()}
    children = {
        name: build_module(child, tensors, f"{prefix}.{name}") for name, child in raw["children"].items()
    }
    module = spec.cls(*children.values(), **arguments)
    for name, value in raw["state"].items():
        setattr(module, name, _decode(value, tensors))
    own = {k.split("#", 1)[1]: v for k, v in tensors.items() if k.startswith(f"{prefix}#")}
    persistent = module.state_dict()
    missing = {k for k in persistent if "." not in k} - set(own)
    if missing:
        raise DescriptionError(f"damaged file: module '{prefix}' lacks {', '.join(sorted(missing))}")
    # assign: the saved tensors as they are (a float64 network stays float64), not copied into fresh ones
    module.load_state_dict({k: v for k, v in own.items() if k in persistent}, strict=False, assign=True)
    for name, _ in module.named_buffers(recurse=False):
        if name not in persistent and name in own:  # fan-outs
            setattr(module, name, own[name].clone())
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
    root = nn.Module()
    for target, description in raw["modules"].items():
        _set_path(root, target, build_module(description, tensors, f"{prefix}{target}"))
    graph = fx.Graph()
    nodes: dict[str, fx.Node] = {}
    for entry in raw["nodes"]:
        op, target = entry["op"], entry["target"]
        if op == "call_function":
            if target not in FUNCTIONS:
                raise DescriptionError(
                    f"node '{entry['name']}' calls {target}, which this spikeport does not know"
                )
            target = FUNCTIONS[target]
        elif op == "get_attr":
            _set_path(root, target, tensors[f"{prefix}{target}"])
        args = _decode(entry["args"], tensors, nodes)
        kwargs = _decode(entry["kwargs"], tensors, nodes)
        node = graph.create_node(op, target, tuple(args), dict(kwargs), name=entry["name"])
        if entry.get("sample_shape") is not None:
            node.meta["sample_shape"] = tuple(entry["sample_shape"])
        nodes[entry["name"]] = node
    graph.lint()
    return fx.GraphModule(root, graph)


def _set_path(root: nn.Module, path: str, value) -> None:
    *parents, last = path.split(".")
    owner = root
    for name in parents:
        if not hasattr(owner, name):
            owner.add_module(name, nn.Module())
        owner = getattr(owner, name)
    if isinstance(value, nn.Module):
        owner.add_module(last, value)
    else:
        owner.register_buffer(last, value)
