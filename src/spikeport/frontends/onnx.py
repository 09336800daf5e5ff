"""ONNX import: an ``.onnx`` file rebuilt as a torch.fx GraphModule of standard modules (``onnx`` package only).

The ops are the ones conversion knows, as ONNX spells them: Conv, Gemm, MatMul (+ Add of a bias),
BatchNormalization, Relu and the smooth activations, MaxPool, AveragePool, GlobalAveragePool, Flatten,
Reshape to a flat vector, Add/Sub/Mul/Div, Concat, Pad with zeros, Dropout, Identity and a final Softmax.
Nodes computed from constants alone (exporters' shape arithmetic) are evaluated once with onnx's reference
evaluator. Anything else is a ConversionError naming the node and its op, and listing
``ONNX_OPS.supported()``. Weights come from the file's initializers and Constant nodes.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, fx, nn

from spikeport.errors import ConversionError
from spikeport.frontends.registry import Registry, module_name
from spikeport.layers import PaddedMaxPool2d

__all__ = ["ONNX_OPS", "load_onnx"]

_Handler = Callable[["_Builder", Any, dict[str, Any]], None]
ONNX_OPS: Registry[str, _Handler] = Registry("ONNX ops")


def load_onnx(path: str | Path) -> fx.GraphModule:
    """Rebuild the ONNX model at ``path`` as a GraphModule taking the same (NCHW) input."""
    try:
        import onnx
    except ImportError:
        raise ConversionError(
            "reading .onnx files needs the onnx package: pip install spikeport[onnx]"
        ) from None
    try:
        model = onnx.load(str(path))
        onnx.checker.check_model(model)
    except Exception as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ConversionError(f"{path} is not a readable ONNX model: {reason}") from None
    return _Builder(model.graph).build()


class _Builder:
    def __init__(self, graph):
        from onnx import numpy_helper

        self.onnx = graph
        self.constants: dict[str, Tensor] = {
            i.name: torch.from_numpy(numpy_helper.to_array(i).copy()) for i in graph.initializer
        }
        self.root = nn.Module()
        self.graph = fx.Graph()
        self.values: dict[str, fx.Node] = {}
        self.uses: dict[str, int] = {}
        for node in graph.node:
            for name in node.input:
                self.uses[name] = self.uses.get(name, 0) + 1

    def build(self) -> fx.GraphModule:
        inputs = [i for i in self.onnx.input if i.name not in self.constants]
        if len(inputs) != 1:
            raise ConversionError(
                f"the ONNX model has {len(inputs)} inputs; spikeport converts models with one"
            )
        self.values[inputs[0].name] = self.graph.placeholder("x")
        for node in self.onnx.node:
            self.translate(node)
        if len(self.onnx.output) != 1:
            raise ConversionError(
                f"the ONNX model has {len(self.onnx.output)} outputs; give it one (the scores)"
            )
        self.graph.output(self.signal(self.onnx.output[0].name, "output"))
        gm = fx.GraphModule(self.root, self.graph)
        gm.import_notes = []
        return gm

    # -- helpers -------------------------------------------------------------------------------------------------

    def fail(self, node, why: str) -> ConversionError:
        return ConversionError(f"{_subject(node)}: {why}; {ONNX_OPS.supported_text()}")

    def signal(self, name: str, user: str) -> fx.Node:
        if name not in self.values:
            raise ConversionError(
                f"ONNX value '{name}' used by {user} is a constant or undefined where a signal is expected"
            )
        return self.values[name]

    def constant(self, name: str) -> Tensor | None:
        return self.constants.get(name)

    def add_module(self, node, module: nn.Module) -> str:
        name = module_name(node.name or node.output[0], self.taken)
        self.root.add_module(name, module)
        return name

    def taken(self, name: str) -> bool:
        return hasattr(self.root, name)

    def call(self, node, module: nn.Module, source: fx.Node) -> None:
        self.values[node.output[0]] = self.graph.call_module(self.add_module(node, module), (source,))

    def constant_node(self, node, tensor: Tensor) -> fx.Node:
        name = module_name(f"{node.name or node.output[0]}_constant", self.taken)
        self.root.register_buffer(name, tensor)
        return self.graph.get_attr(name)

    # -- ops ---------------------------------------------------------------------------------------------------

    def translate(self, node) -> None:
        from onnx import helper

        if self.fold_constants(node):
            return
        handler = ONNX_OPS.lookup(node.op_type, _subject(node))
        handler(self, node, {a.name: helper.get_attribute_value(a) for a in node.attribute})

    @ONNX_OPS.register("Constant")
    def constant_op(self, node, attrs: dict[str, Any]) -> None:
        from onnx import numpy_helper

        value = attrs.get("value")
        if value is None:
            raise self.fail(node, "only tensor constants ('value') are supported")
        self.constants[node.output[0]] = torch.from_numpy(numpy_helper.to_array(value).copy())

    def fold_constants(self, node) -> bool:
        """A node computed from constants only (shape arithmetic of exporters) is evaluated once, here."""
        inputs = [name for name in node.input if name]
        if not inputs or any(name not in self.constants for name in inputs):
            return False
        from onnx.reference import ReferenceEvaluator

        try:
            outputs = ReferenceEvaluator(node).run(None, {n: self.constants[n].numpy() for n in inputs})
        except Exception as error:
            raise self.fail(node, f"evaluating it on its constant inputs failed ({error})") from None
        for name, value in zip(node.output, outputs, strict=False):
            self.constants[name] = torch.from_numpy(np.array(value))
        return True

    @ONNX_OPS.register("Conv")
    def conv(self, node, attrs: dict[str, Any]) -> None:
        weight = self.constant(node.input[1])
        if weight is None:
            raise self.fail(node, "the weights must be constants")
        bias = self.constant(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        if attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
            raise self.fail(node, "auto_pad is not supported; export with explicit pads")
        dims = weight.dim() - 2
        if dims not in (1, 2):
            raise self.fail(node, f"{dims}-d convolutions do not convert")
        pads = list(attrs.get("pads", [0] * 2 * dims))
        begin, end = pads[:dims], pads[dims:]
        source = self.signal(node.input[0], node.name)
        padding = begin
        if begin != end:  # uneven: zero padding of its own, then an unpadded conv
            pad = (
                nn.ZeroPad1d((begin[0], end[0]))
                if dims == 1
                else nn.ZeroPad2d((begin[1], end[1], begin[0], end[0]))
            )
            source = self.graph.call_module(self.add_module(node, pad), (source,))
            padding = [0] * dims
        groups = int(attrs.get("group", 1))
        kind = nn.Conv1d if dims == 1 else nn.Conv2d
        conv = kind(
            weight.shape[1] * groups,
            weight.shape[0],
            tuple(weight.shape[2:]),
            stride=tuple(attrs.get("strides", [1] * dims)),
            padding=tuple(padding),
            dilation=tuple(attrs.get("dilations", [1] * dims)),
            groups=groups,
            bias=bias is not None,
        )
        with torch.no_grad():
            conv.weight.copy_(weight)
            if bias is not None:
                conv.bias.copy_(bias)
        self.call(node, conv, source)

    @ONNX_OPS.register("Gemm")
    def gemm(self, node, attrs: dict[str, Any]) -> None:
        weight = self.constant(node.input[1])
        if weight is None or attrs.get("transA", 0):
            raise self.fail(node, "only x @ W with constant W (transA=0) converts")
        weight = weight if attrs.get("transB", 0) else weight.T
        bias = self.constant(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        alpha, beta = float(attrs.get("alpha", 1.0)), float(attrs.get("beta", 1.0))
        self.linear(node, weight * alpha if alpha != 1 else weight, None if bias is None else bias * beta)

    @ONNX_OPS.register("MatMul")
    def matmul(self, node, attrs: dict[str, Any]) -> None:
        weight = self.constant(node.input[1])
        if weight is None or weight.dim() != 2:
            raise self.fail(node, "only x @ W with a constant 2-d W converts")
        self.linear(node, weight.T, None)

    def linear(self, node, weight: Tensor, bias: Tensor | None) -> None:
        layer = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
        with torch.no_grad():
            layer.weight.copy_(weight)
            if bias is not None:
                layer.bias.copy_(bias.reshape(-1).expand(weight.shape[0]))
        self.call(node, layer, self.signal(node.input[0], node.name))

    @ONNX_OPS.register("BatchNormalization")
    def batch_normalization(self, node, attrs: dict[str, Any]) -> None:
        scale, shift, mean, var = (self.constant(n) for n in node.input[1:5])
        if any(t is None for t in (scale, shift, mean, var)):
            raise self.fail(node, "its statistics must be constants (an inference-mode export)")
        norm = nn.BatchNorm2d(scale.numel(), eps=float(attrs.get("epsilon", 1e-5))).eval()
        with torch.no_grad():
            norm.weight.copy_(scale)
            norm.bias.copy_(shift)
            norm.running_mean.copy_(mean)
            norm.running_var.copy_(var)
        self.call(node, norm, self.signal(node.input[0], node.name))

    @ONNX_OPS.register("Relu")
    def relu(self, node, attrs: dict[str, Any]) -> None:
        self.call(node, nn.ReLU(), self.signal(node.input[0], node.name))

    @ONNX_OPS.register("LeakyRelu")
    def leaky_relu(self, node, attrs: dict[str, Any]) -> None:
        self.call(node, nn.LeakyReLU(float(attrs.get("alpha", 0.01))), self.signal(node.input[0], node.name))

    @ONNX_OPS.register("Sigmoid")
    def sigmoid(self, node, attrs: dict[str, Any]) -> None:
        self.call(node, nn.Sigmoid(), self.signal(node.input[0], node.name))

    @ONNX_OPS.register("Tanh")
    def tanh(self, node, attrs: dict[str, Any]) -> None:
        self.call(node, nn.Tanh(), self.signal(node.input[0], node.name))

    @ONNX_OPS.register("HardSwish")
    def hard_swish(self, node, attrs: dict[str, Any]) -> None:
        self.call(node, nn.Hardswish(), self.signal(node.input[0], node.name))

    @ONNX_OPS.register("Gelu")
    def gelu(self, node, attrs: dict[str, Any]) -> None:
        approximate = attrs.get("approximate", b"none")
        approximate = approximate.decode() if isinstance(approximate, bytes) else approximate
        self.call(node, nn.GELU(approximate=approximate), self.signal(node.input[0], node.name))

    @ONNX_OPS.register("Softmax")
    def softmax(self, node, attrs: dict[str, Any]) -> None:
        self.call(node, nn.Softmax(dim=int(attrs.get("axis", -1))), self.signal(node.input[0], node.name))

    @ONNX_OPS.register("MaxPool")
    def max_pool(self, node, attrs: dict[str, Any]) -> None:
        if len(node.output) > 1 and node.output[1]:
            raise self.fail(node, "a max-pool that also returns indices does not convert")
        kernel = list(attrs["kernel_shape"])
        if len(kernel) != 2:
            raise self.fail(node, "only 2-d max-pools convert")
        pads = list(attrs.get("pads", [0] * 4))
        stride = tuple(attrs.get("strides", [1, 1]))
        dilation = tuple(attrs.get("dilations", [1, 1]))
        ceil = bool(attrs.get("ceil_mode", 0))
        if pads[:2] == pads[2:]:
            pool = nn.MaxPool2d(tuple(kernel), stride, tuple(pads[:2]), dilation, ceil_mode=ceil)
        elif dilation == (1, 1) and not ceil:
            pool = PaddedMaxPool2d((pads[1], pads[3], pads[0], pads[2]), tuple(kernel), stride)
        else:
            raise self.fail(node, "an unevenly padded max-pool with dilation or ceil_mode")
        self.call(node, pool, self.signal(node.input[0], node.name))

    @ONNX_OPS.register("AveragePool")
    def average_pool(self, node, attrs: dict[str, Any]) -> None:
        kernel = list(attrs["kernel_shape"])
        pads = list(attrs.get("pads", [0] * 2 * len(kernel)))
        if len(kernel) != 2 or pads[:2] != pads[2:]:
            raise self.fail(node, "only evenly padded 2-d average pools convert")
        pool = nn.AvgPool2d(
            tuple(kernel),
            tuple(attrs.get("strides", [1, 1])),
            tuple(pads[:2]),
            ceil_mode=bool(attrs.get("ceil_mode", 0)),
            count_include_pad=bool(attrs.get("count_include_pad", 0)),
        )
        self.call(node, pool, self.signal(node.input[0], node.name))

    @ONNX_OPS.register("GlobalAveragePool")
    def global_average_pool(self, node, attrs: dict[str, Any]) -> None:
        self.call(node, nn.AdaptiveAvgPool2d(1), self.signal(node.input[0], node.name))

    @ONNX_OPS.register("Flatten")
    def flatten(self, node, attrs: dict[str, Any]) -> None:
        if int(attrs.get("axis", 1)) != 1:
            raise self.fail(node, "only Flatten with axis=1 (keep the batch) converts")
        self.call(node, nn.Flatten(1), self.signal(node.input[0], node.name))

    @ONNX_OPS.register("Reshape")
    def reshape(self, node, attrs: dict[str, Any]) -> None:
        """A reshape to 2-d is what exporters write for ``x.flatten(1)`` / ``x.view(n, -1)``: a flatten."""
        shape = self.constant(node.input[1])
        if shape is None or shape.numel() != 2:
            raise self.fail(
                node, "only a reshape to [batch, features] (a flatten) with a constant shape converts"
            )
        self.call(node, nn.Flatten(1), self.signal(node.input[0], node.name))

    @ONNX_OPS.register("Dropout", "Identity")
    def identity(self, node, attrs: dict[str, Any]) -> None:
        self.values[node.output[0]] = self.signal(node.input[0], node.name)

    @ONNX_OPS.register("Pad")
    def pad(self, node, attrs: dict[str, Any]) -> None:
        mode = attrs.get("mode", b"constant")
        pads = self.constant(node.input[1]) if len(node.input) > 1 else None
        value = self.constant(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        if mode not in (b"constant", "constant") or pads is None or (value is not None and float(value) != 0):
            raise self.fail(node, "only zero padding with constant pads converts")
        pads = [int(p) for p in pads]
        half = len(pads) // 2
        if any(pads[:2]) or any(pads[half : half + 2]):
            raise self.fail(node, "padding of the batch or channel axis does not convert")
        begin, end = pads[2:half], pads[half + 2 :]
        pad = (
            nn.ZeroPad1d((begin[0], end[0]))
            if len(begin) == 1
            else nn.ZeroPad2d((begin[1], end[1], begin[0], end[0]))
        )
        self.call(node, pad, self.signal(node.input[0], node.name))

    @ONNX_OPS.register("Concat")
    def concat(self, node, attrs: dict[str, Any]) -> None:
        parts = [self.signal(name, node.name) for name in node.input]
        self.values[node.output[0]] = self.graph.call_function(
            torch.cat, (parts,), {"dim": int(attrs["axis"])}
        )

    def binary(self, node, function) -> None:
        a, b = node.input[:2]
        constant_a, constant_b = self.constant(a), self.constant(b)
        if constant_a is None and constant_b is None:
            args = (self.signal(a, node.name), self.signal(b, node.name))
        elif (
            function in (operator.add, operator.sub)
            and constant_b is not None
            and self.fold_bias(node, a, constant_b, function)
        ):
            return
        elif function in (operator.mul, operator.truediv) and (
            constant_b is not None or function is operator.mul
        ):
            if constant_b is not None:
                args = (self.signal(a, node.name), self.constant_node(node, constant_b))
            else:
                args = (self.constant_node(node, constant_a), self.signal(b, node.name))
        else:
            raise self.fail(
                node, "adding or subtracting a constant converts only as the bias of the layer before it"
            )
        self.values[node.output[0]] = self.graph.call_function(function, args)

    def fold_bias(self, node, source: str, constant: Tensor, function) -> bool:
        """``layer(x) + b``: fold b into the layer's bias when the layer's output has no other reader."""
        producer = self.values.get(source)
        if producer is None or producer.op != "call_module" or self.uses.get(source, 0) != 1:
            return False
        layer = self.root.get_submodule(producer.target)
        if not isinstance(layer, nn.Linear | nn.Conv1d | nn.Conv2d):
            return False
        channels = layer.weight.shape[0]
        if constant.numel() not in (1, channels):
            return False
        shift = constant.reshape(-1).expand(channels) * (1 if function is operator.add else -1)
        if layer.bias is None:
            layer.bias = nn.Parameter(torch.zeros(channels))
        with torch.no_grad():
            layer.bias.add_(shift)
        self.values[node.output[0]] = producer
        return True

    @ONNX_OPS.register("Add")
    def add(self, node, attrs: dict[str, Any]) -> None:
        self.binary(node, operator.add)

    @ONNX_OPS.register("Sub")
    def sub(self, node, attrs: dict[str, Any]) -> None:
        self.binary(node, operator.sub)

    @ONNX_OPS.register("Mul")
    def mul(self, node, attrs: dict[str, Any]) -> None:
        self.binary(node, operator.mul)

    @ONNX_OPS.register("Div")
    def div(self, node, attrs: dict[str, Any]) -> None:
        self.binary(node, operator.truediv)


def _subject(node: Any) -> str:
    return f"ONNX node '{node.name or node.output[0]}' ({node.op_type})"
