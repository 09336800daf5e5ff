"""Fold BatchNorm exactly into the conv or linear layer that feeds it."""

from __future__ import annotations

import copy

import torch
from torch import fx, nn

from spikeport.errors import ConversionError

FOLDABLE = {
    nn.Conv1d: nn.BatchNorm1d,
    nn.Conv2d: nn.BatchNorm2d,
    nn.Linear: nn.BatchNorm1d,
}


def batchnorm_scale_shift(bn: nn.modules.batchnorm._BatchNorm) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel (scale, shift) of a BatchNorm in inference mode: bn(x) = scale * x + shift."""
    if bn.running_mean is None or bn.running_var is None:
        raise ConversionError(
            "a BatchNorm layer has no running statistics (track_running_stats=False), so its output depends "
            "on the batch; train with running statistics before converting"
        )
    scale = torch.rsqrt(bn.running_var.double() + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight.double()
    shift = -bn.running_mean.double() * scale
    if bn.bias is not None:
        shift = shift + bn.bias.double()
    return scale, shift


def fold_into(layer: nn.Module, bn: nn.modules.batchnorm._BatchNorm) -> nn.Module:
    """A copy of ``layer`` whose output equals ``bn(layer(x))`` (computed in float64, then cast)."""
    scale, shift = batchnorm_scale_shift(bn)
    fused = copy.deepcopy(layer)
    weight = layer.weight.double()
    bias = layer.bias.double() if layer.bias is not None else torch.zeros_like(scale)
    shape = (-1,) + (1,) * (weight.dim() - 1)
    dtype = layer.weight.dtype
    fused.weight = nn.Parameter((weight * scale.reshape(shape)).to(dtype))
    fused.bias = nn.Parameter((bias * scale + shift).to(dtype))
    return fused


def fold_batchnorms(gm: fx.GraphModule) -> int:
    """Fold every BatchNorm that directly follows a conv/linear used only by it; returns how many."""
    modules = dict(gm.named_modules())
    folded = 0
    for node in list(gm.graph.nodes):
        if node.op != "call_module" or not isinstance(modules[node.target], nn.modules.batchnorm._BatchNorm):
            continue
        producer = node.args[0]
        if not isinstance(producer, fx.Node) or producer.op != "call_module" or len(producer.users) != 1:
            continue
        layer = modules[producer.target]
        if FOLDABLE.get(type(layer)) is not type(modules[node.target]):
            continue
        fused = fold_into(layer, modules[node.target])
        parent, _, name = producer.target.rpartition(".")
        setattr(gm.get_submodule(parent) if parent else gm, name, fused)
        node.replace_all_uses_with(producer)
        gm.graph.erase_node(node)
        folded += 1
    return folded
