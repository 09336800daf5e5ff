"""Exact synapse counts, derived from the layers themselves.

Each synaptic op gets a *connectivity* twin: the same op with every real weight replaced by 1 (conv and
linear keep their zero weights at 0, pools sum instead of averaging). The twin is linear with
non-negative integer coefficients, so the gradient of the sum of its outputs with respect to an input
element is the number of connections leaving that element: borders, strides, padding and groups are
handled by the op itself, not by a formula.

A spike's fan-out is followed through every linear op up to the next neurons, spiking max-pool or the
output: the count of paths, which is the size of the fused synaptic layer when pooling windows do not
overlap. An event that reaches a max-pool (or an analog op) costs one accumulation there; the pool's
own output events are counted with the pool's fan-out.
"""

from __future__ import annotations

import copy
import math
import operator

import torch
import torch.nn.functional as F
from torch import Tensor, fx, nn

from spikeport.graph.fold import batchnorm_scale_shift
from spikeport.graph.ops import Role, role_of
from spikeport.graph.shapes import signal_nodes


def _adaptive_windows(in_size: int, out_size: int) -> Tensor:
    """0/1 matrix [out, in]: which inputs each adaptive-pooling window covers (PyTorch's own rule)."""
    matrix = torch.zeros(out_size, in_size)
    for o in range(out_size):
        start = (o * in_size) // out_size
        end = -(-((o + 1) * in_size) // out_size)
        matrix[o, start:end] = 1.0
    return matrix


def _adaptive_sum_pool(x: Tensor, output_size, spatial_dims: int) -> Tensor:
    sizes = output_size if isinstance(output_size, tuple | list) else (output_size,) * spatial_dims
    for axis, out_size in enumerate(sizes):
        dim = x.dim() - spatial_dims + axis
        in_size = x.shape[dim]
        out_size = in_size if out_size is None else out_size
        windows = _adaptive_windows(in_size, out_size).to(x.dtype)
        x = torch.movedim(torch.movedim(x, dim, -1) @ windows.T, -1, dim)
    return x


def connectivity_twin(module: nn.Module):
    """The 0/1-weighted twin of a synaptic module (a callable on tensors)."""
    if isinstance(module, nn.Conv1d | nn.Conv2d | nn.Linear):
        twin = copy.deepcopy(module).double().cpu()  # counting runs on the CPU, wherever the model is
        twin.weight = nn.Parameter((module.weight != 0).double().cpu(), requires_grad=False)
        twin.bias = None
        return twin
    if isinstance(module, nn.AvgPool2d):
        twin = copy.deepcopy(module)
        twin.divisor_override = 1
        return twin
    if isinstance(module, nn.AvgPool1d):
        k, s, p = module.kernel_size[0], module.stride[0], module.padding[0]

        def sum_pool_1d(x: Tensor) -> Tensor:
            pooled = F.avg_pool2d(
                x.unsqueeze(-2), (1, k), (1, s), (0, p), module.ceil_mode, divisor_override=1
            )
            return pooled.squeeze(-2)

        return sum_pool_1d
    if isinstance(module, nn.AdaptiveAvgPool1d | nn.AdaptiveAvgPool2d):
        dims = 1 if isinstance(module, nn.AdaptiveAvgPool1d) else 2
        return lambda x: _adaptive_sum_pool(x, module.output_size, dims)
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        scale, _ = batchnorm_scale_shift(module)
        mask = (scale != 0).double().cpu()

        def diagonal(x: Tensor) -> Tensor:
            return x * mask.to(x.dtype).reshape((-1,) + (1,) * (x.dim() - 2))

        return diagonal
    raise TypeError(f"no connectivity twin for {type(module).__name__}")


def connections(module: nn.Module, sample_shape: tuple[int, ...]) -> int:
    """Synapses (= ANN multiply-accumulates) of one layer for one input sample."""
    with torch.no_grad():
        out = connectivity_twin(module)(torch.ones(1, *sample_shape, dtype=torch.float64))
    return int(round(out.sum().item()))


_ADDITIVE = {operator.add, torch.add, operator.sub, torch.sub, "add", "add_", "sub", "sub_"}
_SUMMING = {torch.mean: torch.sum, torch.sum: torch.sum, "mean": "sum", "sum": "sum"}


class _PathCounter(fx.Interpreter):
    """Runs a graph's connectivity twin on one sample, with a seed injected at ``source``.

    Activation, max-pool and analog nodes other than the source stop paths (their output is a constant zero) and their inputs,
    like the network's output, are the terminals whose summed value the paths reach.
    """

    def __init__(self, gm: fx.GraphModule, source: fx.Node, seed: Tensor, twins: dict[str, object]):
        super().__init__(gm)
        self.source, self.seed = source, seed
        self.modules = dict(gm.named_modules())
        self.signal = signal_nodes(gm)
        self.twins = twins  # module name -> connectivity twin, shared by the runs for every source
        self.reached: list[Tensor] = []

    def twin(self, target: str):
        if target not in self.twins:
            self.twins[target] = connectivity_twin(self.modules[target])
        return self.twins[target]

    def run_node(self, node: fx.Node):
        if node is self.source:
            return self.seed
        role = role_of(node, self.modules)
        if role is Role.INPUT:
            return torch.zeros(1, *node.meta["sample_shape"], dtype=torch.float64)
        if role in (Role.ACTIVATION, Role.MAX_POOL, Role.ANALOG):
            self.reached.extend(self.env[arg].sum() for arg in node.all_input_nodes)
            return torch.zeros(1, *node.meta["sample_shape"], dtype=torch.float64)
        if role is Role.OUTPUT:
            result = self.env[node.args[0]]
            self.reached.append(result.sum())
            return result
        args, kwargs = self.fetch_args_kwargs_from_env(node)
        if node not in self.signal:  # sizes and constants: computed as they are
            return getattr(self, node.op)(node.target, args, kwargs)
        if role in (Role.WEIGHTED, Role.POOL, Role.AFFINE):
            return self.twin(str(node.target))(args[0])
        if role is Role.LINEAR:
            target = node.target
            if target in _ADDITIVE:
                return sum(a for a in args[:2] if isinstance(a, Tensor))
            if target in _SUMMING:
                summing = _SUMMING[target]
                if isinstance(summing, str):
                    return getattr(args[0], summing)(*args[1:], **kwargs)
                return summing(*args, **kwargs)
            # A scaling by a constant: one connection per element, along the operand carrying the signal.
            return next(self.env[a] for a in node.args[:2] if isinstance(a, fx.Node) and a in self.signal)
        return getattr(self, node.op)(node.target, args, kwargs)


def fanouts(gm: fx.GraphModule, sources: list[fx.Node]) -> dict[str, Tensor]:
    """Synaptic events caused downstream by one event at each element of each source's output (float64).

    One backward pass per source; the twins are built once for all of them.
    """
    twins: dict[str, object] = {}
    result = {}
    for source in sources:
        shape = source.meta["sample_shape"]
        seed = torch.zeros(1, *shape, dtype=torch.float64, requires_grad=True)
        counter = _PathCounter(gm, source, seed, twins)
        with torch.enable_grad():
            counter.run(torch.zeros(1, *shape, dtype=torch.float64))
            total = sum(counter.reached)
            if not isinstance(total, Tensor) or not total.requires_grad:
                result[source.name] = torch.zeros(math.prod(shape), dtype=torch.float64)
                continue
            (grad,) = torch.autograd.grad(total, seed)
        result[source.name] = grad.reshape(-1).round()
    return result
