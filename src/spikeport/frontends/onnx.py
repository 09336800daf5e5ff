"""ONNX import: an ``.onnx`` file rebuilt as a torch.fx GraphModule of standard modules (``onnx`` package only).

The ops are the ones conversion knows, as ONNX spells them: Conv, Gemm, MatMul (+ Add of a bias),
BatchNormalization, Relu, Clip as a ReLU and the smooth activations, MaxPool, AveragePool, GlobalAveragePool,
LRN, LayerNormalization, Add/Sub/Mul/Div/Sum, Concat, Pad with zeros, Dropout, Identity, a final Softmax, and
every op that only moves data: Flatten at any axis, Reshape, Transpose, Squeeze, Unsqueeze, Slice, Gather
of one index, Split (conversion checks that every op that computes sees the batch at dim 0).

Shapes are static: the input's shape comes from the file (any batch dimension, fixed or named), and a
value's shape is read off a sample run of the graph built so far, so the shape arithmetic exporters write
(``x.view(x.size(0), -1)`` becomes Shape, Gather, Unsqueeze, Concat, Reshape) folds into constants. Nodes
computed from constants alone are evaluated once with onnx's reference evaluator under the file's opset.
Anything else is a ConversionError naming the node and its op, and listing ``ONNX_OPS.supported()``.
Weights come from the file's initializers and Constant nodes.
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
from spikeport.layers import PADDING_MODULES, PaddedMaxPool2d, clip_activation

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
    opsets = {o.domain or "": o.version for o in model.opset_import}
    return _Builder(model.graph, opsets).build()


class _Builder:
    def __init__(self, graph, opsets: dict[str, int]):
        from onnx import numpy_helper

        self.onnx, self.opsets = graph, opsets
        self.constants: dict[str, Tensor] = {
            i.name: torch.from_numpy(numpy_helper.to_array(i).copy()) for i in graph.initializer
        }
        self.root = nn.Module()
        self.graph = fx.Graph()
        self.values: dict[str, fx.Node] = {}
        self.samples: dict[fx.Node, Tensor] = {}  # values of a sample run, for shapes
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
        self.batch, shape = _input_shape(inputs[0])
        self.values[inputs[0].name] = self.graph.placeholder("x")
        self.sample_input = torch.rand(self.batch, *shape, generator=torch.Generator().manual_seed(0))
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

    def sample(self, name: str, user) -> Tensor:
        """The value ``name`` takes on the sample input (batch ``self.batch``): the graph built so far, run."""
        source = self.signal(name, user.name)
        if source not in self.samples:
            graph, copies = fx.Graph(), {}  # a copy: a GraphModule takes ownership of its graph
            graph.graph_copy(self.graph, copies)
            graph.output(copies[source])
            with torch.no_grad():
                self.samples[source] = fx.GraphModule(self.root, graph)(self.sample_input)
        return self.samples[source]

    def reshaped(self, node, shape: list[int]) -> None:
        """The input reshaped to ``shape`` (its sample's new shape), as a reshape that keeps each sample apart."""
        source = self.signal(node.input[0], node.name)
        before = list(self.sample(node.input[0], node).shape)
        if not shape or shape[0] != self.batch:
            raise self.fail(
                node,
                f"it reshapes {before} to {shape}, mixing the batch axis with others; only reshapes that keep "
                "each sample apart convert",
            )
        if len(shape) == 2:
            self.call(node, nn.Flatten(1), source)
        else:
            self.values[node.output[0]] = self.graph.call_function(torch.reshape, (source, (-1, *shape[1:])))

    def axes(self, node, attrs: dict[str, Any]) -> list[int] | None:
        """An op's ``axes``: the attribute (older opsets) or the constant second input; None when absent."""
        if "axes" in attrs:
            return [int(a) for a in attrs["axes"]]
        if len(node.input) > 1 and node.input[1]:
            constant = self.constant(node.input[1])
            if constant is None:
                raise self.fail(node, "its axes must be constants")
            return [int(a) for a in constant.reshape(-1).tolist()]
        return None

    def batch_kept(self, node, axis: int, size: int | None = None) -> None:
        """Refuse an op on dim 0 while dim 0 is the batch (``size``: dim 0's size in the sample run; after
        a transpose that moved the batch, dim 0 is another axis, which conversion checks)."""
        if axis == 0 and (size is None or size == self.batch):
            raise self.fail(node, "it acts on the batch axis; only ops on the other axes convert")

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
        from onnx import helper
        from onnx.reference import ReferenceEvaluator

        arrays = {name: self.constants[name].numpy() for name in inputs}
        graph = helper.make_graph(  # the node alone, evaluated under the file's opset (ops change forms)
            [node],
            "fold",
            [
                helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(a.dtype), a.shape)
                for name, a in arrays.items()
            ],
            [helper.make_empty_tensor_value_info(name) for name in node.output if name],
        )
        opsets = [helper.make_opsetid(domain, version) for domain, version in self.opsets.items()]
        try:
            outputs = ReferenceEvaluator(helper.make_model(graph, opset_imports=opsets)).run(None, arrays)
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

    @ONNX_OPS.register("Shape")
    def shape(self, node, attrs: dict[str, Any]) -> None:
        dims = list(self.sample(node.input[0], node).shape)
        start, end = int(attrs.get("start", 0)), attrs.get("end")
        self.constants[node.output[0]] = torch.tensor(dims[start : None if end is None else int(end)])

    @ONNX_OPS.register("Flatten")
    def flatten(self, node, attrs: dict[str, Any]) -> None:
        shape = list(self.sample(node.input[0], node).shape)
        axis = int(attrs.get("axis", 1)) % (len(shape) + 1)
        lead = int(np.prod(shape[:axis]))
        self.reshaped(node, [lead, int(np.prod(shape)) // max(lead, 1)])

    @ONNX_OPS.register("Reshape")
    def reshape(self, node, attrs: dict[str, Any]) -> None:
        target = self.constant(node.input[1])
        if target is None:
            raise self.fail(node, "its shape must follow from the input's shape (a constant once folded)")
        x = self.sample(node.input[0], node)
        target = [int(t) for t in target]
        if not attrs.get("allowzero", 0):  # 0 copies the input's size there
            target = [x.shape[i] if t == 0 else t for i, t in enumerate(target)]
        try:
            shape = list(x.reshape(target).shape)
        except RuntimeError as error:
            raise self.fail(
                node, f"its shape {target} does not fit its input {list(x.shape)} ({error})"
            ) from None
        self.reshaped(node, shape)

    @ONNX_OPS.register("Squeeze")
    def squeeze(self, node, attrs: dict[str, Any]) -> None:
        shape = list(self.sample(node.input[0], node).shape)
        axes = self.axes(node, attrs)
        if axes is None:  # every axis of size 1 but the batch's
            axes = [i for i, size in enumerate(shape) if size == 1 and i > 0]
        axes = [a % len(shape) for a in axes]
        for axis in axes:
            self.batch_kept(node, axis)
        self.reshaped(node, [size for i, size in enumerate(shape) if i not in axes])

    @ONNX_OPS.register("Unsqueeze")
    def unsqueeze(self, node, attrs: dict[str, Any]) -> None:
        shape = list(self.sample(node.input[0], node).shape)
        axes = self.axes(node, attrs)
        if axes is None:
            raise self.fail(node, "it names no axes")
        for axis in sorted(a % (len(shape) + len(axes)) for a in axes):
            self.batch_kept(node, axis)
            shape.insert(axis, 1)
        self.reshaped(node, shape)

    @ONNX_OPS.register("Transpose")
    def transpose(self, node, attrs: dict[str, Any]) -> None:
        rank = self.sample(node.input[0], node).dim()
        perm = [int(p) for p in attrs.get("perm", range(rank - 1, -1, -1))]
        source = self.signal(node.input[0], node.name)
        self.values[node.output[0]] = self.graph.call_function(torch.permute, (source, perm))

    @ONNX_OPS.register("Slice")
    def take_slice(self, node, attrs: dict[str, Any]) -> None:
        x = self.sample(node.input[0], node)
        if "starts" in attrs:  # opset < 10
            starts, ends = list(attrs["starts"]), list(attrs["ends"])
            axes, steps = attrs.get("axes"), None
        else:
            parts = [self.constant(n) if n else None for n in node.input[1:5]]
            parts += [None] * (4 - len(parts))
            if parts[0] is None or parts[1] is None:
                raise self.fail(node, "its starts and ends must be constants")
            starts, ends = parts[0].tolist(), parts[1].tolist()
            axes = None if parts[2] is None else parts[2].tolist()
            steps = None if parts[3] is None else parts[3].tolist()
        axes = [int(a) % x.dim() for a in (range(len(starts)) if axes is None else axes)]
        steps = [1] * len(axes) if steps is None else [int(step) for step in steps]
        index = [slice(None)] * x.dim()
        for axis, start, end, step in zip(axes, starts, ends, steps, strict=True):
            if step < 1:
                raise self.fail(node, "only slices with positive steps convert")
            window = slice(int(start), int(end), step).indices(x.shape[axis])
            if axis == 0 and window != (0, x.shape[0], 1):
                self.batch_kept(node, axis, x.shape[0])
            index[axis] = slice(*window)
        self.index(node, index)

    @ONNX_OPS.register("Gather")
    def gather(self, node, attrs: dict[str, Any]) -> None:
        x = self.sample(node.input[0], node)
        indices, axis = self.constant(node.input[1]), int(attrs.get("axis", 0)) % x.dim()
        self.batch_kept(node, axis, x.shape[0])
        if indices is None or indices.dim() > 1:
            raise self.fail(node, "only a constant index or a constant run of indices converts")
        index: list[Any] = [slice(None)] * (axis + 1)
        values = [int(i) % x.shape[axis] for i in indices.reshape(-1).tolist()]
        if indices.dim() == 0:
            index[axis] = values[0]
        elif values == list(range(values[0], values[0] + len(values))):
            index[axis] = slice(values[0], values[0] + len(values))
        else:
            raise self.fail(
                node, f"indices {values} are not a run; only a run of consecutive indices converts"
            )
        self.index(node, index)

    @ONNX_OPS.register("Split")
    def split(self, node, attrs: dict[str, Any]) -> None:
        x = self.sample(node.input[0], node)
        axis = int(attrs.get("axis", 0)) % x.dim()
        self.batch_kept(node, axis, x.shape[0])
        sizes = attrs.get("split")
        if sizes is None and len(node.input) > 1 and node.input[1]:
            sizes = self.constant(node.input[1])
            if sizes is None:
                raise self.fail(node, "its split sizes must be constants")
            sizes = sizes.tolist()
        if sizes is None:  # equal parts, the last one smaller
            part = -(-x.shape[axis] // len(node.output))
            sizes = [min(part, x.shape[axis] - i * part) for i in range(len(node.output))]
        start = 0
        for name, size in zip(node.output, sizes, strict=True):
            self.index(node, [*[slice(None)] * axis, slice(start, start + int(size))], name)
            start += int(size)

    def index(self, node, index: list[Any], output: str | None = None) -> None:
        """``input[index]`` as the node's (first, or the named) output."""
        source = self.signal(node.input[0], node.name)
        target = node.output[0] if output is None else output
        self.values[target] = self.graph.call_function(operator.getitem, (source, tuple(index)))

    @ONNX_OPS.register("Dropout", "Identity")
    def identity(self, node, attrs: dict[str, Any]) -> None:
        self.values[node.output[0]] = self.signal(node.input[0], node.name)

    @ONNX_OPS.register("Pad")
    def pad(self, node, attrs: dict[str, Any]) -> None:
        mode = attrs.get("mode", b"constant")
        mode = mode.decode() if isinstance(mode, bytes) else mode
        if "pads" in attrs:  # opset < 11: pads and value are attributes
            pads, value = torch.tensor(attrs["pads"]), torch.tensor(attrs.get("value", 0.0))
        else:
            pads = self.constant(node.input[1]) if len(node.input) > 1 else None
            value = self.constant(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        if (
            mode not in PAD_MODES
            or pads is None
            or (mode == "constant" and value is not None and float(value))
        ):
            raise self.fail(
                node, "only padding with zeros or copies (reflect, edge, wrap) by constant pads converts"
            )
        pads = [int(p) for p in pads]
        half = len(pads) // 2
        if any(pads[:2]) or any(pads[half : half + 2]):
            raise self.fail(node, "padding of the batch or channel axis does not convert")
        begin, end = pads[2:half], pads[half + 2 :]
        if len(begin) not in (1, 2):
            raise self.fail(node, f"{len(begin)}-d padding does not convert; 1-d and 2-d do")
        one_d, two_d = PADDING_MODULES[PAD_MODES[mode]]
        pad = one_d((begin[0], end[0])) if len(begin) == 1 else two_d((begin[1], end[1], begin[0], end[0]))
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

    @ONNX_OPS.register("ReduceMean", "ReduceSum")
    def reduce(self, node, attrs: dict[str, Any]) -> None:
        rank = self.sample(node.input[0], node).dim()
        axes = self.axes(node, attrs)
        if axes is None and attrs.get("noop_with_empty_axes", 0):
            self.values[node.output[0]] = self.signal(node.input[0], node.name)
            return
        axes = sorted(a % rank for a in (range(rank) if axes is None else axes))
        for axis in axes:
            self.batch_kept(node, axis)
        function = torch.mean if node.op_type == "ReduceMean" else torch.sum
        source = self.signal(node.input[0], node.name)
        keep = bool(attrs.get("keepdims", 1))
        self.values[node.output[0]] = self.graph.call_function(function, (source, axes), {"keepdim": keep})

    @ONNX_OPS.register("Sum")
    def add_all(self, node, attrs: dict[str, Any]) -> None:
        total = self.signal(node.input[0], node.name)
        for name in node.input[1:]:
            total = self.graph.call_function(operator.add, (total, self.signal(name, node.name)))
        self.values[node.output[0]] = total

    @ONNX_OPS.register("Clip")
    def clip(self, node, attrs: dict[str, Any]) -> None:
        """A clip from 0 is a ReLU, capped where it has an upper bound (ReLU6)."""
        bounds = [attrs.get("min"), attrs.get("max")]
        for i, name in enumerate(node.input[1:3]):
            if name:
                constant = self.constant(name)
                if constant is None:
                    raise self.fail(node, "its bounds must be constants")
                bounds[i] = float(constant)
        low, high = bounds
        module = clip_activation(low, high)
        if module is None:
            raise self.fail(
                node, f"a clip to [{low}, {high}] does not convert; a clip from 0 does (a ReLU, or ReLU6)"
            )
        self.call(node, module, self.signal(node.input[0], node.name))

    @ONNX_OPS.register("LRN")
    def local_response_norm(self, node, attrs: dict[str, Any]) -> None:
        norm = nn.LocalResponseNorm(
            int(attrs["size"]),
            float(attrs.get("alpha", 1e-4)),
            float(attrs.get("beta", 0.75)),
            float(attrs.get("bias", 1.0)),
        )
        self.call(node, norm, self.signal(node.input[0], node.name))

    @ONNX_OPS.register("LayerNormalization")
    def layer_normalization(self, node, attrs: dict[str, Any]) -> None:
        x = self.sample(node.input[0], node)
        axis = int(attrs.get("axis", -1)) % x.dim()
        self.batch_kept(node, axis)
        scale = self.constant(node.input[1])
        bias = self.constant(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        if scale is None or (len(node.input) > 2 and node.input[2] and bias is None):
            raise self.fail(node, "its scale and bias must be constants")
        norm = nn.LayerNorm(
            tuple(x.shape[axis:]), eps=float(attrs.get("epsilon", 1e-5)), bias=bias is not None
        )
        with torch.no_grad():
            norm.weight.copy_(scale.expand(norm.weight.shape))
            if bias is not None:
                norm.bias.copy_(bias.expand(norm.bias.shape))
        self.call(node, norm, self.signal(node.input[0], node.name))

    @ONNX_OPS.register("Cast")
    def cast(self, node, attrs: dict[str, Any]) -> None:
        from onnx import TensorProto

        if int(attrs["to"]) not in (TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.FLOAT16):
            raise self.fail(node, "only casts between float types convert on signals")
        self.values[node.output[0]] = self.signal(node.input[0], node.name)


# ONNX's Pad modes by torch's names for them (``layers.PADDING_MODULES``).
PAD_MODES = {"constant": "constant", "reflect": "reflect", "edge": "replicate", "wrap": "circular"}
SAMPLE_BATCH = 2  # the batch of the sample run when the file names its batch size rather than fixing it


def _input_shape(value: Any) -> tuple[int, tuple[int, ...]]:
    """The input's batch size for the sample run and its shape per sample, from the file."""
    dims = value.type.tensor_type.shape.dim
    sizes = [d.dim_value if d.HasField("dim_value") else None for d in dims]
    if not sizes:
        raise ConversionError(
            f"the ONNX model's input '{value.name}' has no shape; export it with one (the exporter's sample input)"
        )
    written = ["?" if size is None else str(size) for size in sizes]
    if any(size is None for size in sizes[1:]):
        raise ConversionError(
            f"the ONNX model's input '{value.name}' has shape [{', '.join(written)}]: every size but the "
            "batch's must be fixed; export it with fixed sizes"
        )
    return sizes[0] or SAMPLE_BATCH, tuple(sizes[1:])


def _subject(node: Any) -> str:
    return f"ONNX node '{node.name or node.output[0]}' ({node.op_type})"
