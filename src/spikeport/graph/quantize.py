"""Signed weight quantisation: what the SNN computes when its synapses hold N-bit integers."""

from __future__ import annotations

import torch
from torch import fx, nn

QUANTIZABLE = (nn.Conv1d, nn.Conv2d, nn.Linear)


def quantize_tensor(weight: torch.Tensor, bits: int) -> torch.Tensor:
    """Symmetric per-tensor quantisation to signed ``bits``-bit levels, returned dequantised.

    The step is max|w| / (2^(bits-1) - 1), so the largest weight is exact and zero stays zero (pruned
    synapses stay pruned). One step per tensor matches ECC's normalised network, where a layer's weights
    differ from the ANN's by one scalar when thresholds are layer-wise.
    """
    levels = 2 ** (bits - 1) - 1
    largest = weight.detach().abs().max()
    if largest == 0:
        return weight.detach().clone()
    step = largest.double() / levels
    return (torch.round(weight.detach().double() / step).clamp_(-levels, levels) * step).to(weight.dtype)


def quantize_weights(gm: fx.GraphModule, bits: int) -> int:
    """Quantise the weights of every conv and linear layer in place (biases stay exact currents)."""
    if not isinstance(bits, int) or bits < 2:
        raise ValueError(f"weight_bits must be an integer >= 2 (one sign bit and magnitude), got {bits!r}")
    count = 0
    for module in gm.modules():
        if isinstance(module, QUANTIZABLE):
            module.weight = nn.Parameter(quantize_tensor(module.weight, bits), requires_grad=False)
            count += 1
    return count
