"""Models saved with torch.export (.pt2), raised back to ordinary modules so the fx converter applies.

An exported program is a flat graph of aten ops with parameters lifted to inputs. We rebuild it with
nn.Conv2d / nn.Linear / nn.BatchNorm2d / nn.ReLU ... modules holding the exported weights, and plain torch
functions for the glue. Reshapes are rewritten with a free batch dimension (-1), since an export traced
with a fixed example batch bakes that size in, and spikeport folds time into the batch.
"""

from __future__ import annotations

import operator
from pathlib import Path

import torch
from torch import fx, nn

from spikeport.errors import ConversionError

aten = torch.ops.aten

IDENTITY_OPS = {
    aten.dropout.default,
    aten.clone.default,
    aten.alias.default,
    aten.detach.default,
    aten.contiguous.default,
    aten.lift_fresh_copy.default,
}
ASSERT_OPS = {aten._assert_tensor_metadata.default, aten.sym_constrain_range_for_size.default}
FUNCTIONS = {
    aten.add.Tensor: operator.add,
    aten.sub.Tensor: operator.sub,
    aten.mul.Tensor: operator.mul,
    aten.mul.Scalar: operator.mul,
    aten.div.Tensor: operator.truediv,
    aten.cat.default: torch.cat,
    aten.flatten.using_ints: torch.flatten,
    aten.mean.dim: torch.mean,
    aten.permute.default: torch.permute,
    aten.unsqueeze.default: torch.unsqueeze,
    aten.squeeze.dims: torch.squeeze,
}
RESHAPES = {aten.view.default, aten.reshape.default, aten._unsafe_view.default}
RELUS = {aten.relu.default, aten.relu_.default}


def _conv(weight: torch.Tensor, bias, stride, padding, dilation, groups) -> nn.Module:
    cls = {3: nn.Conv1d, 4: nn.Conv2d}.get(weight.dim())
    if cls is None:
        raise ConversionError(
            f"a convolution with {weight.dim()}-d weights has no spikeport equivalent (1d and 2d are)"
        )
    out_channels, in_per_group, *kernel = weight.shape
    conv = cls(
        in_per_group * groups,
        out_channels,
        tuple(kernel),
        stride,
        padding,
        dilation,
        groups,
        bias is not None,
    )
    conv.weight = nn.Parameter(weight.detach().clone())
    if bias is not None:
        conv.bias = nn.Parameter(bias.detach().clone())
    return conv


def _batchnorm(rank: int, weight, bias, mean, var, eps: float) -> nn.Module:
    cls = nn.BatchNorm2d if rank == 4 else nn.BatchNorm1d
    bn = cls(mean.numel(), eps=eps, affine=weight is not None)
    if weight is not None:
        bn.weight = nn.Parameter(weight.detach().clone())
        bn.bias = nn.Parameter(bias.detach().clone() if bias is not None else torch.zeros_like(weight))
    bn.running_mean.copy_(mean)
    bn.running_var.copy_(var)
    return bn.eval()


class _Rebuilder:
    def __init__(self, program: torch.export.ExportedProgram):
        self.program = program
        signature = program.graph_signature
        state = {**program.state_dict, **program.constants}
        lifted = {
            **signature.inputs_to_parameters,
            **signature.inputs_to_buffers,
            **signature.inputs_to_lifted_tensor_constants,
        }
        self.tensors = {name: state[target] for name, target in lifted.items()}
        self.root = nn.Module()
        self.graph = fx.Graph()
        self.env: dict[fx.Node, object] = {}
        self.counts: dict[str, int] = {}

    def module(self, stem: str, module: nn.Module, *args) -> fx.Node:
        index = self.counts.get(stem, 0)
        self.counts[stem] = index + 1
        name = stem if index == 0 else f"{stem}_{index}"
        self.root.add_module(name, module)
        return self.graph.call_module(name, args)

    def value(self, arg):
        """A rebuilt argument: graph nodes map to new nodes, lifted weights to their tensors."""
        if isinstance(arg, fx.Node):
            if arg.name in self.tensors:
                return self.tensors[arg.name]
            return self.env[arg]
        if isinstance(arg, list | tuple):
            return type(arg)(self.value(a) for a in arg)
        return arg

    def run(self) -> fx.GraphModule:
        user_inputs = [
            n for n in self.program.graph.nodes if n.op == "placeholder" and n.name not in self.tensors
        ]
        if len(user_inputs) != 1:
            raise ConversionError(
                f"the exported model must take one input tensor, it takes {len(user_inputs)}"
            )
        for node in self.program.graph.nodes:
            if node.op == "placeholder":
                if node.name not in self.tensors:
                    self.env[node] = self.graph.placeholder("x")
            elif node.op == "output":
                outputs = node.args[0]
                if not isinstance(outputs, list | tuple) or len(outputs) != 1:
                    raise ConversionError("the exported model must return a single tensor")
                self.graph.output(self.value(outputs[0]))
            else:
                self.env[node] = self.translate(node)
        module = fx.GraphModule(self.root, self.graph, class_name="ExportedModel")
        module.graph.eliminate_dead_code()
        module.recompile()
        return module.eval()

    def translate(self, node: fx.Node):
        target, args = node.target, [self.value(a) for a in node.args]
        kwargs = {k: self.value(v) for k, v in node.kwargs.items()}
        if target in (aten.conv1d.default, aten.conv2d.default):
            x, weight, bias, *rest = [*args, None][: max(len(args), 3)]
            defaults = [1, 0, 1, 1]
            stride, padding, dilation, groups = [*rest, *defaults[len(rest) :]]
            return self.module("conv", _conv(weight, bias, stride, padding, dilation, groups), x)
        if target is aten.convolution.default:
            x, weight, bias, stride, padding, dilation, transposed, _, groups = args
            if transposed:
                raise ConversionError(
                    f"node '{node.name}' is a transposed convolution; spikeport does not convert those"
                )
            return self.module("conv", _conv(weight, bias, stride, padding, dilation, groups), x)
        if target is aten.linear.default:
            x, weight, bias = [*args, None][:3]
            return self.module("linear", self._linear(weight, bias), x)
        if target is aten.addmm.default:
            return self._addmm(node, args)
        if target is aten.batch_norm.default:
            x, weight, bias, mean, var, _, _, eps = args[:8]
            return self.module("bn", _batchnorm(node.meta["val"].dim(), weight, bias, mean, var, eps), x)
        if target is aten._native_batch_norm_legit_no_training.default:
            x, weight, bias, mean, var, _, eps = args
            return self.module("bn", _batchnorm(node.meta["val"][0].dim(), weight, bias, mean, var, eps), x)
        if (
            target is operator.getitem
            and isinstance(node.args[0], fx.Node)
            and "batch_norm" in str(node.args[0].target)
        ):
            return args[0]  # the normalised output of a decomposed batch norm (index 0)
        if target in RELUS:
            return self.module("relu", nn.ReLU(), args[0])
        if target is aten.avg_pool2d.default:
            return self.module("avgpool", nn.AvgPool2d(*args[1:]), args[0])
        if target in (aten.adaptive_avg_pool2d.default, aten._adaptive_avg_pool2d.default):
            return self.module("avgpool", nn.AdaptiveAvgPool2d(tuple(args[1])), args[0])
        if target in (aten.max_pool2d.default, aten.max_pool2d_with_indices.default):
            return self.module("maxpool", nn.MaxPool2d(*args[1:]), args[0])
        if target in RESHAPES:
            per_sample = tuple(int(s) for s in node.meta["val"].shape[1:])
            return self.graph.call_function(torch.reshape, (args[0], (-1, *per_sample)))
        if target is aten.sym_size.int:
            return self.graph.call_method("size", tuple(args))
        if target in IDENTITY_OPS:
            return args[0]
        if target in ASSERT_OPS:
            return None
        if target in (aten.add.Tensor, aten.sub.Tensor) and kwargs.get("alpha", 1) != 1:
            raise ConversionError(
                f"node '{node.name}' ({target}) uses alpha != 1; spikeport converts plain sums"
            )
        if target in FUNCTIONS:
            return self.graph.call_function(FUNCTIONS[target], tuple(args))
        supported = sorted(
            str(op) for op in [*FUNCTIONS, *RESHAPES, *RELUS, aten.conv2d.default, aten.linear.default]
        )
        raise ConversionError(
            f"node '{node.name}' ({target}) has no spikeport equivalent; supported aten ops include: {', '.join(supported)}"
        )

    def _linear(self, weight: torch.Tensor, bias) -> nn.Linear:
        linear = nn.Linear(weight.shape[1], weight.shape[0], bias is not None)
        linear.weight = nn.Parameter(weight.detach().clone())
        if bias is not None:
            linear.bias = nn.Parameter(bias.detach().clone())
        return linear

    def _addmm(self, node: fx.Node, args: list):
        bias, x, transposed = args
        source = node.args[2]
        is_transpose = isinstance(source, fx.Node) and source.target in (aten.t.default, aten.permute.default)
        if not is_transpose or not isinstance(self.value(source.args[0]), torch.Tensor):
            raise ConversionError(
                f"node '{node.name}' (aten.addmm) is not a linear layer with constant weights"
            )
        return self.module("linear", self._linear(self.value(source.args[0]), bias), x)


def load_exported(source: str | Path | torch.export.ExportedProgram) -> fx.GraphModule:
    """An nn.Module (fx.GraphModule of standard modules) equivalent to a torch.export program or .pt2 file."""
    program = source
    if not isinstance(source, torch.export.ExportedProgram):
        path = Path(source)
        if not path.is_file():
            raise ConversionError(f"{path}: no such file")
        try:
            program = torch.export.load(path)
        except Exception as error:
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise ConversionError(f"{path} is not a readable torch.export (.pt2) file: {first}") from None
    return _Rebuilder(program).run()
