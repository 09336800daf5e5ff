"""What each traced op *is* to the converter.

Conversion only needs to know an op's role: synaptic layers (linear maps with weights), activations
(replaced by neurons), linear glue (adds, means, scalings), pure data movement, and analog ops (the
normalisations, softmax and products of transformers), which no neuron computes. Everything that is
linear in the signal is exact under rate coding (the mean of a linear map is the map of the mean), so
only activations and analog ops change. An op missing from this table is an error, never a guess.
"""

from __future__ import annotations

import builtins
import operator
from enum import Enum

import torch
import torch.nn.functional as F
from torch import fx, nn

from spikeport.errors import ConversionError
from spikeport.layers import (
    PADDING_MODULES,
    QCFS,
    AnalogProduct,
    CappedReLU,
    MatMul,
    PaddedMaxPool2d,
    ScaledDotProductAttention,
    Softmax,
    SpikeSite,
    TiledAvgPool2d,
    TiledMaxPool2d,
    clip_activation,
)
from spikeport.neurons import IFNeuron, SpikingMaxPool
from spikeport.neurons.fs import FSMaxPool, FSNeuron


class Role(str, Enum):
    INPUT = "input"
    OUTPUT = "output"
    WEIGHTED = "weighted"  # conv / linear: weights and bias
    POOL = "pool"  # average pooling: fixed weights
    AFFINE = "affine"  # per-channel scale and shift (BatchNorm not folded into a layer before it)
    ACTIVATION = "activation"  # replaced by spiking neurons
    # Computed on values, not by neurons: normalisations, a softmax inside the network, products of two signals.
    ANALOG = "analog"
    MAX_POOL = "max_pool"  # replaced by a gated spiking max-pool
    LINEAR = "linear"  # add, sub, mean, scaling by a constant
    STRUCTURAL = "structural"  # reshape, flatten, cat, slicing: moves data, computes nothing
    ATTRIBUTE = "attribute"  # sizes, shapes and constants: no signal
    REMOVE = "remove"  # dropout, identity, contiguous: dropped from the graph
    READOUT_SOFTMAX = "readout_softmax"  # a softmax that ends the network: dropped, argmax unchanged


MODULE_ROLES: dict[type[nn.Module], Role] = {
    nn.Conv1d: Role.WEIGHTED,
    nn.Conv2d: Role.WEIGHTED,
    nn.Linear: Role.WEIGHTED,
    nn.AvgPool1d: Role.POOL,
    nn.AvgPool2d: Role.POOL,
    TiledAvgPool2d: Role.POOL,
    nn.AdaptiveAvgPool1d: Role.POOL,
    nn.AdaptiveAvgPool2d: Role.POOL,
    nn.MaxPool1d: Role.MAX_POOL,
    nn.MaxPool2d: Role.MAX_POOL,
    PaddedMaxPool2d: Role.MAX_POOL,
    TiledMaxPool2d: Role.MAX_POOL,
    SpikingMaxPool: Role.MAX_POOL,
    nn.BatchNorm1d: Role.AFFINE,
    nn.BatchNorm2d: Role.AFFINE,
    nn.ReLU: Role.ACTIVATION,
    CappedReLU: Role.ACTIVATION,
    nn.ReLU6: Role.ACTIVATION,  # canonicalisation makes it a CappedReLU
    nn.Hardtanh: Role.ACTIVATION,  # from 0 only: checked there
    nn.SiLU: Role.ACTIVATION,
    nn.Sigmoid: Role.ACTIVATION,
    nn.GELU: Role.ACTIVATION,
    nn.Hardswish: Role.ACTIVATION,
    nn.Tanh: Role.ACTIVATION,
    nn.LeakyReLU: Role.ACTIVATION,
    QCFS: Role.ACTIVATION,
    IFNeuron: Role.ACTIVATION,
    FSNeuron: Role.ACTIVATION,
    FSMaxPool: Role.MAX_POOL,
    SpikeSite: Role.ACTIVATION,
    AnalogProduct: Role.ANALOG,
    MatMul: Role.ANALOG,
    ScaledDotProductAttention: Role.ANALOG,
    Softmax: Role.ANALOG,
    nn.LayerNorm: Role.ANALOG,
    nn.RMSNorm: Role.ANALOG,
    nn.LocalResponseNorm: Role.ANALOG,
    nn.Flatten: Role.STRUCTURAL,
    nn.Unflatten: Role.STRUCTURAL,
    # zeros (silent neurons at the border) or copies of the border (copied spike trains): data movement, exact
    **dict.fromkeys((m for pair in PADDING_MODULES.values() for m in pair), Role.STRUCTURAL),
    nn.Dropout: Role.REMOVE,
    nn.Dropout1d: Role.REMOVE,
    nn.Dropout2d: Role.REMOVE,
    nn.Identity: Role.REMOVE,
    nn.Softmax: Role.READOUT_SOFTMAX,
    nn.LogSoftmax: Role.READOUT_SOFTMAX,
}

RELU_FUNCTIONS = {F.relu, torch.relu, torch.relu_, F.relu_}
RELU_METHODS = {"relu", "relu_"}


def _leaky_relu(node: fx.Node) -> nn.Module:
    slope = node.kwargs.get("negative_slope", node.args[1] if len(node.args) > 1 else 0.01)
    return nn.LeakyReLU(slope)


def _hardtanh(node: fx.Node) -> nn.Module:
    low = node.kwargs.get("min_val", node.args[1] if len(node.args) > 1 else -1.0)
    high = node.kwargs.get("max_val", node.args[2] if len(node.args) > 2 else 1.0)
    return capped_relu(low, high, f"F.hardtanh(min_val={low}, max_val={high})")


def capped_relu(low: float, high: float, what: str) -> nn.Module:
    """``clamp(x, low, high)`` as an activation (``layers.clip_activation``), or a ConversionError naming ``what``."""
    module = clip_activation(low, high)
    if module is None:
        raise ConversionError(
            f"{what} does not convert: a clip converts when it starts at 0 (a ReLU, or ReLU6 / Hardtanh(0, c))"
        )
    return module


def _gelu(node: fx.Node) -> nn.Module:
    return nn.GELU(approximate=node.kwargs.get("approximate", "none"))


# Functional spellings of the activations, with the module each becomes (built from the call's arguments).
ACTIVATION_FUNCTIONS: dict[object, object] = {
    **dict.fromkeys(RELU_FUNCTIONS, lambda node: nn.ReLU()),
    **dict.fromkeys([F.silu], lambda node: nn.SiLU()),
    **dict.fromkeys([torch.sigmoid, F.sigmoid], lambda node: nn.Sigmoid()),
    **dict.fromkeys([torch.tanh, F.tanh], lambda node: nn.Tanh()),
    **dict.fromkeys([F.hardswish], lambda node: nn.Hardswish()),
    **dict.fromkeys([F.gelu], _gelu),
    **dict.fromkeys([F.leaky_relu, F.leaky_relu_], _leaky_relu),
    **dict.fromkeys([F.relu6], lambda node: CappedReLU(6.0)),
    **dict.fromkeys([F.hardtanh, F.hardtanh_], _hardtanh),
}
ACTIVATION_METHODS: dict[str, object] = {
    **dict.fromkeys(RELU_METHODS, lambda node: nn.ReLU()),
    **dict.fromkeys(["sigmoid", "sigmoid_"], lambda node: nn.Sigmoid()),
    **dict.fromkeys(["tanh", "tanh_"], lambda node: nn.Tanh()),
}
ACTIVATION_MODULES = (nn.ReLU, nn.SiLU, nn.Sigmoid, nn.GELU, nn.Hardswish, nn.Tanh, nn.LeakyReLU, QCFS)
# Modules canonicalisation replaces by the activation they compute.
ACTIVATION_REPLACEMENTS = {
    nn.ReLU6: lambda m: CappedReLU(6.0),
    nn.Hardtanh: lambda m: capped_relu(
        m.min_val, m.max_val, f"nn.Hardtanh(min_val={m.min_val}, max_val={m.max_val})"
    ),
}

FUNCTION_ROLES: dict[object, Role] = {
    **dict.fromkeys(ACTIVATION_FUNCTIONS, Role.ACTIVATION),
    operator.add: Role.LINEAR,
    torch.add: Role.LINEAR,
    operator.sub: Role.LINEAR,
    torch.sub: Role.LINEAR,
    operator.mul: Role.LINEAR,  # linear only when one side is a constant: checked per node
    torch.mul: Role.LINEAR,
    operator.truediv: Role.LINEAR,
    torch.mean: Role.LINEAR,
    torch.sum: Role.LINEAR,
    F.avg_pool1d: Role.POOL,
    F.avg_pool2d: Role.POOL,
    F.adaptive_avg_pool1d: Role.POOL,
    F.adaptive_avg_pool2d: Role.POOL,
    F.max_pool1d: Role.MAX_POOL,
    F.max_pool2d: Role.MAX_POOL,
    torch.max_pool1d: Role.MAX_POOL,
    torch.max_pool2d: Role.MAX_POOL,
    torch.flatten: Role.STRUCTURAL,
    torch.reshape: Role.STRUCTURAL,
    torch.cat: Role.STRUCTURAL,
    torch.concat: Role.STRUCTURAL,
    torch.squeeze: Role.STRUCTURAL,
    torch.unsqueeze: Role.STRUCTURAL,
    torch.permute: Role.STRUCTURAL,
    torch.transpose: Role.STRUCTURAL,
    operator.getitem: Role.STRUCTURAL,
    F.pad: Role.STRUCTURAL,  # zeros or copies of the border: checked per node
    torch.unbind: Role.STRUCTURAL,
    torch.chunk: Role.STRUCTURAL,
    torch.split: Role.STRUCTURAL,
    builtins.getattr: Role.ATTRIBUTE,  # x.shape: checked per node
    operator.floordiv: Role.ATTRIBUTE,  # arithmetic on sizes (head_dim = C // heads); refused on signals
    # Analog ops in functional spelling: canonicalisation makes each a module of its own.
    F.layer_norm: Role.ANALOG,
    F.rms_norm: Role.ANALOG,
    F.local_response_norm: Role.ANALOG,
    F.scaled_dot_product_attention: Role.ANALOG,
    torch.matmul: Role.ANALOG,
    torch.bmm: Role.ANALOG,
    operator.matmul: Role.ANALOG,
    F.dropout: Role.REMOVE,
    F.dropout1d: Role.REMOVE,
    F.dropout2d: Role.REMOVE,
    F.softmax: Role.READOUT_SOFTMAX,
    F.log_softmax: Role.READOUT_SOFTMAX,
    torch.softmax: Role.READOUT_SOFTMAX,
    torch.log_softmax: Role.READOUT_SOFTMAX,
}

METHOD_ROLES: dict[str, Role] = {
    **dict.fromkeys(ACTIVATION_METHODS, Role.ACTIVATION),
    **dict.fromkeys(["add", "add_", "sub", "sub_", "mul", "div", "mean", "sum"], Role.LINEAR),
    **dict.fromkeys(
        [
            "view",
            "reshape",
            "flatten",
            "squeeze",
            "unsqueeze",
            "permute",
            "transpose",
            "__getitem__",
            "expand",
            "unbind",
            "chunk",
            "split",
        ],
        Role.STRUCTURAL,
    ),
    **dict.fromkeys(["matmul", "bmm"], Role.ANALOG),
    **dict.fromkeys(["size", "dim"], Role.ATTRIBUTE),
    **dict.fromkeys(["contiguous", "clone", "detach"], Role.REMOVE),
    **dict.fromkeys(["softmax", "log_softmax"], Role.READOUT_SOFTMAX),
}

MAX_POOL_MODULES = (nn.MaxPool1d, nn.MaxPool2d, PaddedMaxPool2d)

# Ops whose two operands must not both carry the signal (a product of two signals is not linear).
SCALING_FUNCTIONS = {operator.mul, torch.mul, operator.truediv}
SCALING_METHODS = {"mul", "div"}


def describe(node: fx.Node, modules: dict[str, nn.Module]) -> str:
    """A short human name of what a node computes, for error messages."""
    if node.op == "call_module":
        return f"{type(modules[node.target]).__name__} module '{node.target}'"
    if node.op == "call_function":
        name = getattr(node.target, "__name__", str(node.target))
        module = getattr(node.target, "__module__", "") or ""
        prefix = (
            "torch.nn.functional."
            if "functional" in module
            else ("operator." if module == "_operator" else "torch.")
        )
        return f"function {prefix}{name}"
    if node.op == "call_method":
        return f"method .{node.target}()"
    return node.op


def supported_summary() -> str:
    """One line listing what the converter accepts, for error messages."""
    internal = (
        IFNeuron,
        SpikingMaxPool,
        FSNeuron,
        FSMaxPool,
        AnalogProduct,
        MatMul,
        ScaledDotProductAttention,
        Softmax,
        SpikeSite,
        PaddedMaxPool2d,
        TiledAvgPool2d,
        TiledMaxPool2d,
    )
    modules = ", ".join(sorted({cls.__name__ for cls in MODULE_ROLES if cls not in internal}))
    return (
        f"supported modules: {modules}; functions: relu, silu, sigmoid, tanh, gelu, hardswish, leaky_relu, "
        "add/sub, mul/div by a constant, products of two signals (x * y, x @ y, matmul/bmm), layer_norm, rms_norm, "
        "local_response_norm, softmax, scaled_dot_product_attention (no mask from data), mean/sum, avg and max "
        "pools, flatten/reshape/view/cat/getitem/permute/transpose/expand/unbind/chunk/split, zero, reflect, replicate or circular padding, dropout"
    )


def role_of(node: fx.Node, modules: dict[str, nn.Module]) -> Role | None:
    """The node's role, or None when spikeport does not know the op."""
    if node.op == "placeholder":
        return Role.INPUT
    if node.op == "output":
        return Role.OUTPUT
    if node.op == "get_attr":
        return Role.ATTRIBUTE
    if node.op == "call_module":
        return MODULE_ROLES.get(type(modules[node.target]))
    if node.op == "call_function":
        return FUNCTION_ROLES.get(node.target)
    if node.op == "call_method":
        return METHOD_ROLES.get(node.target)
    return None
