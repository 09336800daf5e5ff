"""Fold BatchNorm exactly into a neighbouring conv or linear layer.

Backward: a BN right after a conv/linear becomes part of its weights and bias. Forward: a BN that does
not follow one (after a ReLU, on the input) becomes part of the *next* conv/linear, also across a
flatten: W' = W * scale (per input channel), b' = b + W @ shift. Forward folding is exact only when the
next layer sees every input element through a weight: a zero-padded conv would see the BN's shift
inside the image but zeros at its border, so such BNs stay as per-channel affine ops (still exact in
the SNN, one more op per step).
"""

from __future__ import annotations

import copy

import torch
from torch import fx, nn

from spikeport.errors import ConversionError
from spikeport.graph.ops import MAX_POOL_MODULES

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
        gm.set_submodule(producer.target, fused)
        node.replace_all_uses_with(producer)
        gm.graph.erase_node(node)
        folded += 1
    return folded


FLATTENING = {"flatten", "view", "reshape"}  # method names; module/function forms are checked by type


def _is_reshape(node: fx.Node, modules: dict[str, nn.Module]) -> bool:
    """A row-major reshape (it keeps element order, so channel c owns a contiguous block after it)."""
    if node.op == "call_module":
        return isinstance(modules[node.target], nn.Flatten)
    if node.op == "call_function":
        return node.target in (torch.flatten, torch.reshape)
    return node.op == "call_method" and node.target in FLATTENING


def _next_layer(bn_node: fx.Node, modules: dict[str, nn.Module], scale: torch.Tensor) -> fx.Node | None:
    """The single conv/linear that consumes the BN's output, directly or through reshapes, else None.

    With no negative ``scale``, max-pools on the way are crossed too: max(a*x + b) = a*max(x) + b for
    a >= 0 per channel (padding is -inf, which the affine map keeps at -inf).
    """
    node = bn_node
    crosses_max = bool((scale >= 0).all())
    while len(node.users) == 1:
        (user,) = node.users
        if user.op == "call_module" and isinstance(modules[user.target], tuple(FOLDABLE)):
            return user if user.args[0] is node else None
        is_max_pool = user.op == "call_module" and isinstance(modules[user.target], MAX_POOL_MODULES)
        if not (_is_reshape(user, modules) or (crosses_max and is_max_pool)) or user.args[0] is not node:
            return None
        node = user
    return None


def _unpadded(layer: nn.Module) -> bool:
    if isinstance(layer, nn.Linear):
        return True
    padding = layer.padding
    return padding != "same" and all(p == 0 for p in padding) and layer.groups == 1


def fold_forward_into(layer: nn.Module, scale: torch.Tensor, shift: torch.Tensor) -> nn.Module:
    """A copy of ``layer`` whose output equals ``layer(scale * x + shift)`` per input channel (float64).

    For a linear layer after a flatten, each channel's scale and shift cover a block of inputs.
    """
    fused = copy.deepcopy(layer)
    weight = layer.weight.double()
    inputs = weight.shape[1]
    if inputs % scale.numel():
        raise ConversionError(
            f"cannot fold a BatchNorm of {scale.numel()} channels into a layer with {inputs} inputs"
        )
    block = inputs // scale.numel()
    scale, shift = scale.repeat_interleave(block), shift.repeat_interleave(block)
    shape = (1, -1) + (1,) * (weight.dim() - 2)
    bias = (
        layer.bias.double()
        if layer.bias is not None
        else torch.zeros(weight.shape[0], dtype=torch.float64, device=weight.device)
    )
    dims = tuple(range(1, weight.dim()))
    dtype = layer.weight.dtype
    fused.weight = nn.Parameter((weight * scale.reshape(shape)).to(dtype))
    fused.bias = nn.Parameter((bias + (weight * shift.reshape(shape)).sum(dim=dims)).to(dtype))
    return fused


def fold_batchnorms_forward(gm: fx.GraphModule) -> tuple[int, int]:
    """Fold every remaining BN into the next unpadded conv/linear; returns (folded, kept as affine ops).

    The BN may reach that layer through reshapes and (when no channel's scale is negative) max-pools.
    """
    modules = dict(gm.named_modules())
    folded = kept = 0
    for node in list(gm.graph.nodes):
        if node.op != "call_module" or not isinstance(modules[node.target], nn.modules.batchnorm._BatchNorm):
            continue
        scale, shift = batchnorm_scale_shift(modules[node.target])
        consumer = _next_layer(node, modules, scale)
        if consumer is None or not _unpadded(modules[consumer.target]):
            kept += 1
            continue
        fused = fold_forward_into(modules[consumer.target], scale, shift)
        gm.set_submodule(consumer.target, fused)
        modules[consumer.target] = fused
        node.replace_all_uses_with(node.args[0])
        gm.graph.erase_node(node)
        folded += 1
    return folded, kept
