"""Keras layers rebuilt as torch modules in an fx graph, channels-last translated to channels-first.

Every image tensor (Keras shape ``(H, W, C)``, batch left out) lives in the graph as NCHW; every other
tensor keeps its Keras layout. Shapes are tracked in Keras order so that Keras' rules (TF 'same'
padding, Reshape targets, Concatenate axes) can be applied as written.

The one place where layouts show through is flattening: Keras flattens H, W, C; torch flattens C, H, W.
A Flatten therefore emits a plain ``torch.flatten`` and remembers the ``(H, W, C)`` it came from; the
Dense (or BatchNorm) that reads it permutes its weight rows instead, which is exact and costs nothing.
Any other reader gets the Keras order spelled out (``reshape -> permute -> flatten``).
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import fx, nn

from spikeport.errors import ConversionError
from spikeport.frontends.keras_config import INPUT_CLASS, Call, LayerSpec, ModelGraph, Shape
from spikeport.frontends.registry import Registry, module_name
from spikeport.layers import CappedReLU, PaddedMaxPool2d

__all__ = ["KERAS_ACTIVATIONS", "KERAS_LAYERS", "build_graph_module"]

WeightLookup = Callable[[LayerSpec], "list[np.ndarray] | None"]
_Handler = Callable[["GraphBuilder", Call, "list[Value]"], "Value"]
KERAS_LAYERS: Registry[str, _Handler] = Registry("Keras layers")

# Keras activations with the same function in torch (all but relu convert with method="fs" only).
KERAS_ACTIVATIONS: Registry[str, Callable[[], nn.Module]] = Registry("Keras activations")
KERAS_ACTIVATIONS.register("relu")(nn.ReLU)
KERAS_ACTIVATIONS.register("relu6")(lambda: CappedReLU(6.0))
KERAS_ACTIVATIONS.register("sigmoid")(nn.Sigmoid)
KERAS_ACTIVATIONS.register("tanh")(nn.Tanh)
KERAS_ACTIVATIONS.register("swish", "silu")(nn.SiLU)
KERAS_ACTIVATIONS.register("gelu")(nn.GELU)  # Keras' default is the exact (erf) form, as torch's
KERAS_ACTIVATIONS.register("hard_swish", "hard_silu")(nn.Hardswish)

TO_CHANNELS_LAST = (0, 2, 3, 1)
TO_CHANNELS_FIRST = (0, 3, 1, 2)


@dataclass(frozen=True)
class PoolGeometry:
    """Where a Keras 2-D pool's windows lie: what both pooling kinds need before choosing a torch form."""

    pool_size: tuple[int, int]
    strides: tuple[int, int]
    pads: tuple[int, int, int, int]  # top, bottom, left, right
    out_shape: Shape  # (H, W, C) after pooling
    ceil_mode_is_exact: bool  # torch's ceil_mode windows are these windows


@dataclass(frozen=True, eq=False)
class Value:
    """A tensor of the graph: its node, its Keras shape (no batch) and whether it is a CHW-ordered flatten."""

    node: fx.Node
    shape: Shape
    flat_hwc: tuple[int, int, int] | None = None  # set when node = flatten(NCHW) of a Keras (H, W, C)

    @property
    def is_image(self) -> bool:
        return len(self.shape) == 3 and self.flat_hwc is None

    def torch_shape(self) -> Shape:
        if self.is_image:
            height, width, channels = self.shape
            return (channels, height, width)
        return self.shape


def _pair(value: Any, what: str) -> tuple[int, int]:
    if isinstance(value, int):
        return (value, value)
    if isinstance(value, list | tuple) and len(value) == 2 and all(isinstance(v, int) for v in value):
        return (value[0], value[1])
    raise ValueError(f"{what} must be an int or two ints, got {value!r}")


def _tensor(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))


def _numel(shape: Shape) -> int | None:
    return None if any(size is None for size in shape) else math.prod(shape)  # type: ignore[arg-type]


def same_padding(size: int | None, kernel: int, stride: int, dilation: int) -> tuple[int, int, int | None]:
    """TF 'same': (before, after, output size); the odd pixel goes after (bottom / right)."""
    span = (kernel - 1) * dilation + 1
    if size is None:
        if stride != 1:
            raise ValueError("'same' padding with stride > 1 needs a known input size")
        total = span - 1
        return total // 2, total - total // 2, None
    out = -(-size // stride)
    total = max((out - 1) * stride + span - size, 0)
    return total // 2, total - total // 2, out


def valid_output(size: int | None, kernel: int, stride: int, dilation: int = 1) -> int | None:
    if size is None:
        return None
    return (size - ((kernel - 1) * dilation + 1)) // stride + 1


def ceil_mode_output(size: int, kernel: int, stride: int, pad: int) -> int:
    """Output length of a torch pool with ``ceil_mode=True`` (a window must start inside input + left pad)."""
    out = -(-(size + 2 * pad - kernel) // stride) + 1
    if (out - 1) * stride >= size + pad:
        out -= 1
    return out


class GraphBuilder:
    """Walks the calls of a ModelGraph and emits one fx graph with named submodules."""

    def __init__(self, model: ModelGraph, weights: WeightLookup, source: str):
        self.model = model
        self.weights_of = weights
        self.source = source
        self.graph = fx.Graph()
        self.root = nn.Module()
        self.values: dict[str, Value] = {}
        self.notes: list[str] = []
        self.consumers = model.consumers()
        self.outputs = set(model.output_keys)
        self.targets: dict[tuple[int, str], str] = {}  # (id(spec), role) -> submodule name, for shared layers
        self.keras_ordered: dict[fx.Node, Value] = {}

    # -- plumbing -----------------------------------------------------------------------------------------
    def fail(self, spec: LayerSpec, message: str) -> ConversionError:
        return ConversionError(f"{self.source}: {spec.label}: {message}")

    def module(self, spec: LayerSpec, role: str, make: Callable[[], nn.Module]) -> str:
        """The submodule for ``spec`` (made once, reused by every call of a shared layer)."""
        key = (id(spec), role)
        if key not in self.targets:
            name = module_name("_".join(spec.qualified) + (f"_{role}" if role else ""), self.taken)
            self.root.add_module(name, make())
            self.targets[key] = name
        return self.targets[key]

    def taken(self, name: str) -> bool:
        return hasattr(self.root, name)

    def call_module(self, target: str, node: fx.Node) -> fx.Node:
        return self.graph.call_module(target, (node,))

    def function(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> fx.Node:
        return self.graph.call_function(fn, args, kwargs)

    def arrays(self, spec: LayerSpec, count: int) -> list[np.ndarray]:
        arrays = self.weights_of(spec)
        if arrays is None:
            raise self.fail(
                spec, "its weights are missing from the file; save the model again after building it"
            )
        if len(arrays) != count:
            raise self.fail(
                spec,
                f"expected {count} weight arrays, the file holds {len(arrays)}; quantized, LoRA or otherwise "
                "modified layers are not supported",
            )
        return arrays

    def check_shape(self, spec: LayerSpec, array: np.ndarray, expected: tuple[int, ...], what: str) -> None:
        if tuple(array.shape) != expected:
            raise self.fail(spec, f"{what} has shape {tuple(array.shape)}, expected {expected}")

    def channels_last(self, spec: LayerSpec) -> None:
        data_format = spec.config.get("data_format") or "channels_last"
        if data_format != "channels_last":
            raise self.fail(
                spec, f"data_format={data_format!r} is not supported; use channels_last (the Keras default)"
            )

    def image(self, spec: LayerSpec, value: Value) -> Value:
        if not value.is_image:
            raise self.fail(
                spec, f"expects a 4-D image tensor (N, H, W, C), got shape (N, {_dims(value.shape)})"
            )
        return value

    def is_final(self, call: Call) -> bool:
        return call.output in self.outputs and self.consumers.get(call.output, 0) == 0

    def drop_final_softmax(self, call: Call, value: Value) -> Value:
        if not self.is_final(call):
            raise self.fail(
                call.spec,
                "softmax is only supported as the last operation of the model (it is dropped for conversion); "
                "remove it or move it to the end",
            )
        self.notes.append(
            f"dropped the final softmax of {call.spec.label}: the module returns the logits before it "
            "(the argmax is unchanged)"
        )
        return value

    def activation(self, call: Call, value: Value, activation: Any, fused: bool) -> Value:
        name = _activation_name(activation)
        if name is None:
            raise self.fail(
                call.spec,
                f"custom activation {activation!r} is not supported; use relu or linear (softmax at the end)",
            )
        if name == "linear":
            return value
        if make := KERAS_ACTIVATIONS.get(name):
            target = self.module(call.spec, name if fused else "", make)
            return Value(self.call_module(target, value.node), value.shape, value.flat_hwc)
        if name == "softmax":
            return self.drop_final_softmax(call, value)
        raise self.fail(
            call.spec,
            f"activation {name!r} is not supported; use {', '.join(KERAS_ACTIVATIONS.supported())} or linear "
            "(softmax only at the end)",
        )

    def keras_order(self, value: Value) -> Value:
        """The same tensor with its flatten order spelled out as Keras' H, W, C."""
        if value.flat_hwc is None:
            return value
        if value.node not in self.keras_ordered:
            height, width, channels = value.flat_hwc
            node = self.function(torch.reshape, value.node, (-1, channels, height, width))
            node = self.function(torch.permute, node, TO_CHANNELS_LAST)
            self.keras_ordered[value.node] = Value(self.function(torch.flatten, node, 1), value.shape)
        return self.keras_ordered[value.node]

    def channels_last_node(self, value: Value) -> fx.Node:
        """A node whose dims are in Keras order (an NHWC view for images)."""
        if value.is_image:
            return self.function(torch.permute, value.node, TO_CHANNELS_LAST)
        return self.keras_order(value).node

    # -- layers ---------------------------------------------------------------------------------------------
    @KERAS_LAYERS.register(INPUT_CLASS)
    def input_layer(self, call: Call, inputs: list[Value]) -> Value:
        shape = self.model.input_shapes[call.output]
        return Value(self.graph.placeholder(module_name(call.spec.name)), shape)

    @KERAS_LAYERS.register("Dropout", "SpatialDropout2D", "AlphaDropout", "GaussianDropout", "GaussianNoise")
    def identity(self, call: Call, inputs: list[Value]) -> Value:
        return inputs[0]

    @KERAS_LAYERS.register("Conv2D", "Convolution2D")
    def conv2d(self, call: Call, inputs: list[Value]) -> Value:
        spec, config = call.spec, call.spec.config
        self.channels_last(spec)
        x = self.image(spec, inputs[0])
        channels = x.shape[2]
        filters = int(config["filters"])
        groups = int(config.get("groups") or 1)
        use_bias = bool(config.get("use_bias", True))
        kernel_size = _pair(config["kernel_size"], "kernel_size")
        if channels is None or channels % groups:
            raise self.fail(
                spec, f"input channels {channels} are unknown or not divisible by groups={groups}"
            )
        arrays = self.arrays(spec, 2 if use_bias else 1)
        self.check_shape(spec, arrays[0], (*kernel_size, channels // groups, filters), "kernel")
        weight = _tensor(arrays[0]).permute(3, 2, 0, 1)  # (kh, kw, in, out) -> (out, in, kh, kw)
        bias = _tensor(arrays[1]) if use_bias else None
        return self.convolution(call, x, weight, bias, groups)

    @KERAS_LAYERS.register("DepthwiseConv2D")
    def depthwise_conv2d(self, call: Call, inputs: list[Value]) -> Value:
        spec, config = call.spec, call.spec.config
        self.channels_last(spec)
        x = self.image(spec, inputs[0])
        channels = x.shape[2]
        multiplier = int(config.get("depth_multiplier", 1))
        use_bias = bool(config.get("use_bias", True))
        kernel_size = _pair(config["kernel_size"], "kernel_size")
        if channels is None:
            raise self.fail(spec, "the number of input channels is unknown")
        arrays = self.arrays(spec, 2 if use_bias else 1)
        self.check_shape(spec, arrays[0], (*kernel_size, channels, multiplier), "depthwise kernel")
        # Keras output channel c * multiplier + m reads input channel c: exactly torch's grouped layout.
        kernel = _tensor(arrays[0]).reshape(*kernel_size, channels * multiplier)
        weight = kernel.permute(2, 0, 1).unsqueeze(1)
        bias = _tensor(arrays[1]) if use_bias else None
        return self.convolution(call, x, weight, bias, groups=channels)

    @KERAS_LAYERS.register("SeparableConv2D", "SeparableConvolution2D")
    def separable_conv2d(self, call: Call, inputs: list[Value]) -> Value:
        """A depthwise conv (padding, strides, dilation) and a pointwise 1x1 conv with the bias and activation."""
        spec, config = call.spec, call.spec.config
        self.channels_last(spec)
        x = self.image(spec, inputs[0])
        channels, multiplier = x.shape[2], int(config.get("depth_multiplier", 1))
        if channels is None:
            raise self.fail(spec, "the number of input channels is unknown")
        use_bias = bool(config.get("use_bias", True))
        arrays = self.arrays(spec, 3 if use_bias else 2)
        kernel_size = _pair(config["kernel_size"], "kernel_size")
        self.check_shape(spec, arrays[0], (*kernel_size, channels, multiplier), "depthwise kernel")
        depthwise = (
            _tensor(arrays[0]).reshape(*kernel_size, channels * multiplier).permute(2, 0, 1).unsqueeze(1)
        )
        spread = self.convolution(call, x, depthwise, None, groups=channels, activation=False)
        pointwise = _tensor(arrays[1])  # (1, 1, channels * multiplier, filters)
        filters = int(pointwise.shape[-1])
        self.check_shape(spec, arrays[1], (1, 1, channels * multiplier, filters), "pointwise kernel")

        def make() -> nn.Conv2d:
            conv = nn.Conv2d(channels * multiplier, filters, 1, bias=use_bias)
            with torch.no_grad():
                conv.weight.copy_(pointwise[0, 0].T.reshape(filters, -1, 1, 1))
                if use_bias:
                    self.check_shape(spec, arrays[2], (filters,), "bias")
                    conv.bias.copy_(_tensor(arrays[2]))
            return conv

        target = self.module(spec, "pointwise", make)
        value = Value(self.call_module(target, spread.node), (*spread.shape[:2], filters))
        return self.activation(call, value, config.get("activation", "linear"), fused=True)

    def convolution(
        self,
        call: Call,
        x: Value,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        groups: int,
        activation: bool = True,
    ) -> Value:
        """Conv2D and DepthwiseConv2D: padding, the conv module, then the fused activation (``activation``)."""
        spec, config = call.spec, call.spec.config
        kernel_size = (int(weight.shape[2]), int(weight.shape[3]))
        strides = _pair(config.get("strides", 1), "strides")
        dilation = _pair(config.get("dilation_rate", 1), "dilation_rate")
        height, width, channels = x.shape
        (top, bottom, left, right), out_size = self.padding(
            spec, (height, width), kernel_size, strides, dilation
        )
        node = x.node
        symmetric = top == bottom and left == right
        if not symmetric:  # TF puts the odd pixel at the bottom/right; torch pads symmetrically
            pad = self.module(spec, "pad", lambda: nn.ZeroPad2d((left, right, top, bottom)))
            node = self.call_module(pad, node)

        def make() -> nn.Conv2d:
            conv = nn.Conv2d(
                int(channels),  # type: ignore[arg-type]
                int(weight.shape[0]),
                kernel_size,
                stride=strides,
                padding=(top, left) if symmetric else 0,
                dilation=dilation,
                groups=groups,
                bias=bias is not None,
            )
            with torch.no_grad():
                conv.weight.copy_(weight)
                if bias is not None:
                    self.check_shape(spec, bias.numpy(), (int(weight.shape[0]),), "bias")
                    conv.bias.copy_(bias)
            return conv

        conv = self.module(spec, "", make)
        value = Value(self.call_module(conv, node), (*out_size, int(weight.shape[0])))
        if not activation:
            return value
        return self.activation(call, value, config.get("activation", "linear"), fused=True)

    def padding(
        self,
        spec: LayerSpec,
        size: tuple[int | None, int | None],
        kernel: tuple[int, int],
        strides: tuple[int, int],
        dilation: tuple[int, int],
    ) -> tuple[tuple[int, int, int, int], tuple[int | None, int | None]]:
        """(top, bottom, left, right) and the output (H, W) of a Keras 'valid' / 'same' window op."""
        padding = str(spec.config.get("padding", "valid")).lower()
        if padding == "valid":
            out = tuple(valid_output(size[i], kernel[i], strides[i], dilation[i]) for i in range(2))
            if any(o is not None and o < 1 for o in out):
                raise self.fail(spec, f"the input ({_dims(size)}) is smaller than the window {kernel}")
            return (0, 0, 0, 0), out  # type: ignore[return-value]
        if padding != "same":
            raise self.fail(spec, f"padding={padding!r} is not supported; use 'valid' or 'same'")
        try:
            top, bottom, out_h = same_padding(size[0], kernel[0], strides[0], dilation[0])
            left, right, out_w = same_padding(size[1], kernel[1], strides[1], dilation[1])
        except ValueError as error:
            raise self.fail(spec, f"{error}; give the model a fixed input shape") from None
        return (top, bottom, left, right), (out_h, out_w)

    @KERAS_LAYERS.register("Dense")
    def dense(self, call: Call, inputs: list[Value]) -> Value:
        spec, config = call.spec, call.spec.config
        x = inputs[0]
        units = int(config["units"])
        use_bias = bool(config.get("use_bias", True))
        features = x.shape[-1] if x.shape else None
        arrays = self.arrays(spec, 2 if use_bias else 1)
        kernel = arrays[0]
        if (
            kernel.ndim != 2
            or kernel.shape[1] != units
            or (features is not None and kernel.shape[0] != features)
        ):
            raise self.fail(spec, f"kernel has shape {tuple(kernel.shape)}, expected ({features}, {units})")
        if x.flat_hwc is not None:  # rows in Keras' H, W, C order -> torch's C, H, W order
            height, width, channels = x.flat_hwc
            weight = (
                _tensor(kernel).reshape(height, width, channels, units).permute(3, 2, 0, 1).reshape(units, -1)
            )
        else:
            weight = _tensor(kernel).T

        def make() -> nn.Linear:
            linear = nn.Linear(int(kernel.shape[0]), units, bias=use_bias)
            with torch.no_grad():
                linear.weight.copy_(weight)
                if use_bias:
                    self.check_shape(spec, arrays[1], (units,), "bias")
                    linear.bias.copy_(_tensor(arrays[1]))
            return linear

        target = self.module(spec, "", make)
        if x.is_image:  # Dense on an image acts on channels, i.e. along the last Keras axis
            node = self.call_module(target, self.function(torch.permute, x.node, TO_CHANNELS_LAST))
            node = self.function(torch.permute, node, TO_CHANNELS_FIRST)
        else:
            node = self.call_module(target, x.node)
        value = Value(node, (*x.shape[:-1], units))
        return self.activation(call, value, config.get("activation", "linear"), fused=True)

    @KERAS_LAYERS.register("LayerNormalization")
    def layer_norm(self, call: Call, inputs: list[Value]) -> Value:
        """Normalisation over the last axis (tokens' features, or an image's channels): an analog op."""
        spec, config = call.spec, call.spec.config
        x = inputs[0]
        axis = config.get("axis", -1)
        axis = axis[0] if isinstance(axis, list | tuple) and len(axis) == 1 else axis
        if axis not in (-1, len(x.shape)) or len(x.shape) != 2 or x.shape[-1] is None:
            raise self.fail(
                spec,
                f"axis={config.get('axis')!r} on (N, {_dims(x.shape)}) is not supported; only the last axis of "
                "(N, tokens, features)",
            )
        if config.get("rms_scaling"):
            raise self.fail(spec, "rms_scaling=True is not supported; use RMSNormalization's PyTorch form")
        scale, center = bool(config.get("scale", True)), bool(config.get("center", True))
        arrays = iter(self.arrays(spec, int(scale) + int(center)))
        features = int(x.shape[-1])

        def make() -> nn.Module:
            norm = nn.LayerNorm(features, eps=float(config.get("epsilon", 1e-3)), bias=center)
            with torch.no_grad():
                norm.weight.copy_(_tensor(next(arrays)) if scale else torch.ones(features))
                if center:
                    norm.bias.copy_(_tensor(next(arrays)))
            return norm

        target = self.module(spec, "", make)
        return Value(self.call_module(target, x.node), x.shape, x.flat_hwc)

    @KERAS_LAYERS.register("BatchNormalization")
    def batch_norm(self, call: Call, inputs: list[Value]) -> Value:
        spec, config = call.spec, call.spec.config
        x = inputs[0]
        axis = config.get("axis", -1)
        if isinstance(axis, list | tuple) and len(axis) == 1:
            axis = axis[0]
        rank = len(x.shape)
        if not isinstance(axis, int) or (axis + rank + 1 if axis < 0 else axis) != rank or rank not in (1, 3):
            raise self.fail(
                spec,
                f"axis={config.get('axis')!r} on a tensor of shape (N, {_dims(x.shape)}) is not supported; only "
                "the channel axis (-1) of a 4-D image or of a 2-D (N, features) tensor",
            )
        if config.get("renorm"):
            raise self.fail(spec, "renorm=True is not supported")
        scale, center = bool(config.get("scale", True)), bool(config.get("center", True))
        arrays = iter(self.arrays(spec, int(scale) + int(center) + 2))
        features = x.shape[-1]
        if features is None:
            raise self.fail(spec, "the number of features is unknown")
        gamma = _tensor(next(arrays)) if scale else torch.ones(features)
        beta = _tensor(next(arrays)) if center else torch.zeros(features)
        mean, variance = _tensor(next(arrays)), _tensor(next(arrays))
        params = [gamma, beta, mean, variance]
        for param, what in zip(params, ("gamma", "beta", "moving_mean", "moving_variance"), strict=True):
            self.check_shape(spec, param.numpy(), (features,), what)
        if x.flat_hwc is not None:  # per-feature parameters follow the flatten order
            height, width, channels = x.flat_hwc
            params = [p.reshape(height, width, channels).permute(2, 0, 1).reshape(-1) for p in params]

        def make() -> nn.Module:
            norm_class = nn.BatchNorm2d if rank == 3 else nn.BatchNorm1d
            norm = norm_class(int(features), eps=float(config.get("epsilon", 1e-3)))
            with torch.no_grad():
                targets = (norm.weight, norm.bias, norm.running_mean, norm.running_var)
                for tensor, param in zip(targets, params, strict=True):
                    tensor.copy_(param)
            return norm.eval()

        target = self.module(spec, "", make)
        return Value(self.call_module(target, x.node), x.shape, x.flat_hwc)

    @KERAS_LAYERS.register("Activation")
    def activation_layer(self, call: Call, inputs: list[Value]) -> Value:
        return self.activation(call, inputs[0], call.spec.config.get("activation"), fused=False)

    @KERAS_LAYERS.register("ReLU")
    def relu_layer(self, call: Call, inputs: list[Value]) -> Value:
        config = call.spec.config
        if config.get("negative_slope") or config.get("threshold"):
            options = {k: config.get(k) for k in ("max_value", "negative_slope", "threshold")}
            raise self.fail(
                call.spec,
                f"only a ReLU from 0, capped or not, is supported (negative_slope=0, threshold=0), got {options}",
            )
        ceiling = config.get("max_value")
        if ceiling is None:
            return self.activation(call, inputs[0], "relu", fused=False)
        target = self.module(call.spec, "", lambda: CappedReLU(float(ceiling)))  # ReLU6 and its kin
        return Value(self.call_module(target, inputs[0].node), inputs[0].shape, inputs[0].flat_hwc)

    @KERAS_LAYERS.register("Softmax")
    def softmax_layer(self, call: Call, inputs: list[Value]) -> Value:
        axis = call.spec.config.get("axis", -1)
        if axis not in (-1, [-1], len(inputs[0].shape), [len(inputs[0].shape)]):
            raise self.fail(call.spec, f"softmax over axis={axis!r} is not supported; only the last axis")
        return self.drop_final_softmax(call, inputs[0])

    @KERAS_LAYERS.register("Flatten")
    def flatten(self, call: Call, inputs: list[Value]) -> Value:
        self.channels_last(call.spec)
        x = inputs[0]
        if len(x.shape) == 1:
            return x
        numel = _numel(x.shape)
        if numel is None:
            raise self.fail(call.spec, f"cannot flatten a tensor of unknown size (N, {_dims(x.shape)})")
        node = self.function(torch.flatten, x.node, 1)
        height, width, channels = x.shape if x.is_image else (1, 1, 1)
        orders_differ = x.is_image and height * width > 1 and channels > 1  # type: ignore[operator]
        return Value(node, (numel,), x.shape if orders_differ else None)  # type: ignore[arg-type]

    def pool_geometry(self, call: Call, x: Value) -> PoolGeometry:
        """Pool size, strides (Keras: default to the pool size), padding and output size of a 2-D pool."""
        config = call.spec.config
        self.channels_last(call.spec)
        self.image(call.spec, x)
        pool_size = _pair(config.get("pool_size", 2), "pool_size")
        strides = _pair(config.get("strides") or pool_size, "strides")
        height, width, channels = x.shape
        pads, out = self.padding(call.spec, (height, width), pool_size, strides, (1, 1))
        ceil_exact = self.ceil_mode_is_exact((height, width), pool_size, strides, (pads[0], pads[2]), out)
        return PoolGeometry(pool_size, strides, pads, (*out, channels), ceil_exact)

    @KERAS_LAYERS.register("MaxPooling2D", "MaxPool2D")
    def max_pool(self, call: Call, inputs: list[Value]) -> Value:
        spec, node = call.spec, inputs[0].node
        geometry = self.pool_geometry(call, inputs[0])
        pool_size, strides, (top, bottom, left, right) = geometry.pool_size, geometry.strides, geometry.pads
        if top == bottom and left == right:
            make: Callable[[], nn.Module] = lambda: nn.MaxPool2d(pool_size, strides, padding=(top, left))  # noqa: E731
        elif geometry.ceil_mode_is_exact:
            make = lambda: nn.MaxPool2d(pool_size, strides, padding=(top, left), ceil_mode=True)  # noqa: E731
        else:  # -inf padding is exactly what 'same' means for a max
            make = lambda: PaddedMaxPool2d((left, right, top, bottom), pool_size, strides)  # noqa: E731
        target = self.module(spec, "", make)
        return Value(self.call_module(target, node), geometry.out_shape)

    @KERAS_LAYERS.register("AveragePooling2D", "AvgPool2D")
    def average_pool(self, call: Call, inputs: list[Value]) -> Value:
        spec, node = call.spec, inputs[0].node
        geometry = self.pool_geometry(call, inputs[0])
        pool_size, strides, (top, bottom, left, right) = geometry.pool_size, geometry.strides, geometry.pads
        if top == bottom and left == right:  # padding (if any) is left out of each average, as in Keras
            make: Callable[[], nn.Module] = lambda: nn.AvgPool2d(  # noqa: E731
                pool_size, strides, padding=(top, left), count_include_pad=False
            )
        else:
            # TF averages over the real pixels of a border window; the Keras torch backend pads every
            # dimension by replicating the edge. The two agree only when each padded dimension has a pool
            # size of 2 (a border window then holds one real pixel along it), and then either torch form
            # below is exact.
            padded = [i for i, total in enumerate((top + bottom, left + right)) if total]
            if any(pool_size[i] != 2 for i in padded):
                raise self.fail(
                    spec,
                    f"padding='same' here pads unevenly ({top},{bottom}) x ({left},{right}) and Keras backends "
                    "disagree on such averages; use padding='valid', a pool size of 2, or an input size "
                    "divisible by the stride",
                )
            if geometry.ceil_mode_is_exact:
                make = lambda: nn.AvgPool2d(  # noqa: E731
                    pool_size, strides, ceil_mode=True, count_include_pad=False
                )
            else:
                pad = self.module(spec, "pad", lambda: nn.ReplicationPad2d((left, right, top, bottom)))
                node = self.call_module(pad, node)
                make = lambda: nn.AvgPool2d(pool_size, strides)  # noqa: E731
        target = self.module(spec, "", make)
        return Value(self.call_module(target, node), geometry.out_shape)

    @staticmethod
    def ceil_mode_is_exact(
        size: tuple[int | None, int | None],
        kernel: tuple[int, int],
        strides: tuple[int, int],
        before: tuple[int, int],
        out: tuple[int | None, int | None],
    ) -> bool:
        """Whether torch's ceil_mode windows (start i * stride - before, clipped) are Keras' 'same' windows."""
        for i in range(2):
            if size[i] is None or before[i] > kernel[i] // 2:
                return False
            if ceil_mode_output(size[i], kernel[i], strides[i], before[i]) != out[i]:  # type: ignore[arg-type]
                return False
        return True

    @KERAS_LAYERS.register("GlobalAveragePooling2D", "GlobalAvgPool2D")
    def global_average_pool(self, call: Call, inputs: list[Value]) -> Value:
        self.channels_last(call.spec)
        x = self.image(call.spec, inputs[0])
        target = self.module(call.spec, "", lambda: nn.AdaptiveAvgPool2d(1))
        node = self.call_module(target, x.node)
        channels = x.shape[2]
        if call.spec.config.get("keepdims"):
            return Value(node, (1, 1, channels))
        return Value(self.function(torch.flatten, node, 1), (channels,))

    @KERAS_LAYERS.register("GlobalMaxPooling2D", "GlobalMaxPool2D")
    def global_max_pool(self, call: Call, inputs: list[Value]) -> Value:
        self.channels_last(call.spec)
        x = self.image(call.spec, inputs[0])
        height, width, channels = x.shape
        if height is None or width is None:
            raise self.fail(call.spec, "the image size is unknown; give the model a fixed input size")
        target = self.module(call.spec, "", lambda: nn.MaxPool2d((int(height), int(width))))
        node = self.call_module(target, x.node)
        if call.spec.config.get("keepdims"):
            return Value(node, (1, 1, channels))
        return Value(self.function(torch.flatten, node, 1), (channels,))

    @KERAS_LAYERS.register("Rescaling")
    def rescaling(self, call: Call, inputs: list[Value]) -> Value:
        """``x * scale + offset`` (scalars or per channel): a per-channel affine, folded into the next layer."""
        config = call.spec.config
        return self.affine(call, inputs[0], config.get("scale", 1.0), config.get("offset", 0.0))

    @KERAS_LAYERS.register("Normalization")
    def normalization(self, call: Call, inputs: list[Value]) -> Value:
        """``(x - mean) / max(sqrt(variance), 1e-7)`` per channel: an affine as Rescaling."""
        spec, config = call.spec, call.spec.config
        if config.get("invert"):
            raise self.fail(spec, "invert=True (de-normalisation) is not supported")
        axis = config.get("axis", -1)
        if (
            axis not in (-1, [-1], (-1,), None)
            and axis != len(inputs[0].shape)
            and axis != [len(inputs[0].shape)]
        ):
            raise self.fail(spec, f"axis={axis!r} is not supported; only the channel axis (-1)")
        if config.get("mean") is not None:
            mean, variance = np.asarray(config["mean"]), np.asarray(config["variance"])
        else:
            arrays = self.weights_of(spec)
            if not arrays or len(arrays) < 2:
                raise self.fail(
                    spec, "its mean and variance are missing; adapt() it or give mean and variance"
                )
            mean, variance = arrays[0], arrays[1]
        std = np.maximum(np.sqrt(np.asarray(variance, dtype=np.float64)), 1e-7)
        scale = (1.0 / std).reshape(-1)
        return self.affine(call, inputs[0], scale, -(np.asarray(mean).reshape(-1) * scale))

    def affine(self, call: Call, x: Value, scale: Any, offset: Any) -> Value:
        features = x.shape[-1]
        if features is None or len(x.shape) not in (1, 3):
            raise self.fail(
                call.spec, f"expects an image (N, H, W, C) or (N, features), got (N, {_dims(x.shape)})"
            )
        scale = torch.as_tensor(np.asarray(scale, dtype=np.float32)).reshape(-1)
        offset = torch.as_tensor(np.asarray(offset, dtype=np.float32)).reshape(-1)
        for values, what in ((scale, "scale"), (offset, "offset")):
            if values.numel() not in (1, features) or (x.flat_hwc is not None and values.numel() > 1):
                raise self.fail(
                    call.spec,
                    f"its {what} has {values.numel()} values for (N, {_dims(x.shape)}); one value, or one per "
                    "channel of an image or feature of an unflattened vector, converts",
                )
        scale, offset = scale.expand(int(features)), offset.expand(int(features))

        def make() -> nn.Module:  # a batch norm of mean 0 and variance 1: weight * x + bias
            norm = (nn.BatchNorm2d if len(x.shape) == 3 else nn.BatchNorm1d)(int(features), eps=0.0)
            with torch.no_grad():
                norm.weight.copy_(scale)
                norm.bias.copy_(offset)
            return norm.eval()

        target = self.module(call.spec, "", make)
        return Value(self.call_module(target, x.node), x.shape, x.flat_hwc)

    @KERAS_LAYERS.register("ZeroPadding2D")
    def zero_padding(self, call: Call, inputs: list[Value]) -> Value:
        self.channels_last(call.spec)
        x = self.image(call.spec, inputs[0])
        padding = call.spec.config.get("padding", 1)
        if isinstance(padding, int):
            (top, bottom), (left, right) = (padding, padding), (padding, padding)
        elif (
            isinstance(padding, list | tuple)
            and len(padding) == 2
            and all(isinstance(p, int) for p in padding)
        ):
            (top, bottom), (left, right) = (padding[0], padding[0]), (padding[1], padding[1])
        else:
            (top, bottom), (left, right) = (_pair(p, "padding") for p in padding)
        height, width, channels = x.shape
        target = self.module(call.spec, "", lambda: nn.ZeroPad2d((left, right, top, bottom)))
        shape = (
            None if height is None else height + top + bottom,
            None if width is None else width + left + right,
            channels,
        )
        return Value(self.call_module(target, x.node), shape)

    @KERAS_LAYERS.register("Add")
    def add(self, call: Call, inputs: list[Value]) -> Value:
        if len(inputs) < 2:
            raise self.fail(call.spec, "needs at least two inputs")
        layouts = {x.flat_hwc for x in inputs}
        if len(layouts) > 1:
            inputs = [self.keras_order(x) for x in inputs]
        shapes = {x.shape for x in inputs}
        if len(shapes) > 1:
            raise self.fail(call.spec, f"inputs differ in shape: {sorted(map(str, shapes))}")
        node = inputs[0].node
        for x in inputs[1:]:
            node = self.function(operator.add, node, x.node)
        return Value(node, inputs[0].shape, inputs[0].flat_hwc)

    @KERAS_LAYERS.register("Concatenate")
    def concatenate(self, call: Call, inputs: list[Value]) -> Value:
        inputs = [self.keras_order(x) for x in inputs]
        rank = len(inputs[0].shape)
        if any(len(x.shape) != rank for x in inputs):
            raise self.fail(call.spec, "inputs differ in rank")
        axis = int(call.spec.config.get("axis", -1))
        axis = axis + rank + 1 if axis < 0 else axis  # counting the batch
        if not 1 <= axis <= rank:
            raise self.fail(call.spec, f"axis {axis} is out of range for rank {rank + 1}")
        dim = {1: 2, 2: 3, 3: 1}[axis] if rank == 3 else axis  # Keras H, W, C -> torch dims 2, 3, 1
        shape = list(inputs[0].shape)
        sizes = [x.shape[axis - 1] for x in inputs]
        shape[axis - 1] = None if any(s is None for s in sizes) else sum(sizes)  # type: ignore[arg-type]
        node = self.function(torch.cat, [x.node for x in inputs], dim=dim)
        return Value(node, tuple(shape))

    @KERAS_LAYERS.register("Reshape")
    def reshape(self, call: Call, inputs: list[Value]) -> Value:
        x = inputs[0]
        target = [int(v) for v in call.spec.config["target_shape"]]
        numel = _numel(x.shape)
        if target.count(-1) > 1 or numel is None:
            raise self.fail(call.spec, f"cannot reshape (N, {_dims(x.shape)}) to {tuple(target)}")
        if -1 in target:
            known = math.prod(v for v in target if v != -1)
            target[target.index(-1)] = numel // known if known else 0
        if math.prod(target) != numel:
            raise self.fail(call.spec, f"cannot reshape {numel} values to {tuple(target)}")
        shape = tuple(target)
        if len(shape) == 1:  # a flatten in disguise: no data movement needed
            return self.flatten(call, inputs) if len(x.shape) > 1 else x
        if len(shape) == 3 and x.flat_hwc == shape:  # undoing a flatten: the data is already C, H, W
            height, width, channels = shape
            return Value(self.function(torch.reshape, x.node, (-1, channels, height, width)), shape)
        node = self.function(torch.reshape, self.channels_last_node(x), (-1, *shape))
        if len(shape) == 3:
            node = self.function(torch.permute, node, TO_CHANNELS_FIRST)
        return Value(node, shape)

    # -- the whole model ------------------------------------------------------------------------------------
    def build(self) -> fx.GraphModule:
        for call in self.model.calls:
            self.values[call.output] = self.translate(call)
        outputs = [self.keras_order(self.values[key]) for key in self.model.output_keys]
        nodes = [value.node for value in outputs]
        self.graph.output(nodes[0] if len(nodes) == 1 else tuple(nodes))
        self.graph.lint()
        module = fx.GraphModule(self.root, self.graph, class_name="KerasModel")
        self.check_runs(module, outputs)
        module.import_notes = list(self.notes)
        return module.eval()

    def translate(self, call: Call) -> Value:
        spec = call.spec
        if spec.is_custom():
            name = spec.registered_name or spec.class_name
            raise self.fail(spec, f"unsupported custom object {name!r}; {KERAS_LAYERS.supported_text()}")
        handler = KERAS_LAYERS.lookup(spec.class_name, f"{self.source}: {spec.label}")
        inputs = [self.values[key] for key in call.inputs]
        if spec.class_name != INPUT_CLASS and not inputs:
            raise self.fail(spec, "has no inputs")
        if spec.class_name not in ("Add", "Concatenate", INPUT_CLASS) and len(inputs) != 1:
            raise self.fail(spec, f"expects one input, got {len(inputs)}")
        try:
            return handler(self, call, inputs)
        except (KeyError, ValueError, TypeError) as error:
            raise self.fail(spec, f"unreadable layer config ({type(error).__name__}: {error})") from None

    def check_runs(self, module: fx.GraphModule, outputs: Sequence[Value]) -> None:
        """Run the module once on zeros (when input shapes are known) and compare every output shape."""
        inputs = [self.values[key] for key in self.model.input_keys]
        shapes = [value.torch_shape() for value in inputs]
        if any(size is None for shape in shapes for size in shape):
            return
        try:
            with torch.no_grad():
                result = module.eval()(*[torch.zeros(2, *shape) for shape in shapes])  # type: ignore[misc]
        except (RuntimeError, ValueError, IndexError) as error:
            first_line = str(error).strip().splitlines()[0]
            raise ConversionError(f"{self.source}: the rebuilt model does not run: {first_line}") from None
        results = [result] if len(outputs) == 1 else list(result)
        for value, tensor in zip(outputs, results, strict=True):
            expected = value.torch_shape()
            actual = tuple(tensor.shape[1:])
            if any(e is not None and e != a for e, a in zip(expected, actual, strict=False)) or len(
                expected
            ) != len(actual):
                raise ConversionError(
                    f"{self.source}: the rebuilt model gives an output of shape {actual}, Keras says {expected}; "
                    "please report this model"
                )


def _activation_name(activation: Any) -> str | None:
    """A built-in activation's name; None for custom ones (Keras 3 writes those as serialized objects)."""
    if activation is None:
        return "linear"
    if isinstance(activation, str):
        return activation.lower()
    if isinstance(activation, dict) and str(activation.get("module", "")).startswith("keras"):
        config = activation.get("config")
        if isinstance(config, str):
            return config.lower()
    return None


def _dims(shape: Sequence[int | None]) -> str:
    return ", ".join("?" if size is None else str(size) for size in shape)


def build_graph_module(model: ModelGraph, weights: WeightLookup, source: str) -> fx.GraphModule:
    """The fx.GraphModule of a flattened Keras model; ``import_notes`` lists what changed on the way."""
    return GraphBuilder(model, weights, source).build()
