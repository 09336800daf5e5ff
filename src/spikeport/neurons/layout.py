"""Memory layouts the flat scan kernels (``fused_scan`` on GPUs, ``cpu_scan``) index directly.

A kernel walks a chunk's membranes, currents and outputs as flat arrays: element k of one is element k of
the others. That holds for PyTorch's default order and for channels-last alike (``SpikingNetwork.
simulation_layout``), as long as every tensor is dense and stored in the same order as the state.
"""

from __future__ import annotations

import torch
from torch import Tensor


def dense(t: Tensor) -> bool:
    """Whether ``t`` fills its memory without gaps or overlaps, in any order of its dimensions (contiguous,
    channels-last, ...): then element k of its memory is one fixed element of every tensor with its strides."""
    expected = 1
    for size, stride in sorted(zip(t.shape, t.stride(), strict=True), key=lambda dim: dim[1]):
        if size == 1:
            continue
        if stride != expected:
            return False
        expected *= size
    return True


def flat_layout(v: Tensor, currents: Tensor, threshold: Tensor, out: Tensor | None) -> bool:
    """Whether the tensors have the layout a flat scan kernel (``fused_scan``, ``cpu_scan``) indexes directly:
    float32/float64; the state dense in some memory order (contiguous or channels-last) and every step of the
    currents and outputs in that same order; steps one after another, or the same current at every step
    (stride 0)."""
    step_stride_ok = currents.shape[0] == 1 or currents.stride(0) in (0, v.numel())
    same_order = currents.stride()[1:] == v.stride() and (out is None or out.stride()[1:] == v.stride())
    return (
        currents.dtype in (torch.float32, torch.float64)
        and v.dtype == currents.dtype
        and dense(v)
        and (v.shape[0] == 1 or v.stride(0) == v[0].numel())  # sample after sample
        and same_order
        and step_stride_ok
        and (out is None or out.shape[0] == 1 or out.stride(0) == v.numel())
        and threshold.dim() < v.dim()  # per sample (scalar, per channel, per neuron), not per batch element
    )


def outputs_like(v: Tensor, steps: int) -> Tensor:
    """A fresh ``[steps, *v.shape]`` tensor, every step laid out in memory like ``v``."""
    return torch.empty_strided((steps, *v.shape), (v.numel(), *v.stride()), dtype=v.dtype, device=v.device)


def per_neuron(threshold: Tensor, v: Tensor) -> Tensor:
    """The threshold of every neuron of one sample, laid out in memory like each sample of ``v``."""
    return torch.empty_like(v[0]).copy_(threshold.to(v.dtype).expand(v.shape[1:]))


def sum_over_batch(x: Tensor) -> Tensor:
    """``x`` ([steps, B, ...]) summed over B, read in its memory order: PyTorch reduces a channels-last tensor
    along its logical order several times slower (VGG-style net: half of a recorded run's time)."""
    stored = sorted(range(2, x.dim()), key=lambda d: -x.stride(d))  # sample dimensions, outermost first
    summed = x.permute(0, 1, *stored).sum(dim=1)
    return summed.permute(0, *[1 + stored.index(d) for d in range(2, x.dim())])
