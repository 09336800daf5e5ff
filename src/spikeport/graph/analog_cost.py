"""What an analog op costs: elementary operations per sample, from its inputs' and output's shapes.

Analog ops (normalisations, softmax, products of two signals, and activations computed on values) are the
work a spiking network does outside its synapses. They are counted, never hidden: an add, a multiply, a
multiply-accumulate, a division, an exponential or a square root each count as one operation. The counts
follow the textbook computation of each op; a chip may do better or worse, the order of magnitude holds.
"""

from __future__ import annotations

import math

from torch import nn

from spikeport.layers import AnalogProduct, MatMul, ScaledDotProductAttention, Softmax

# Operations per output element of the elementwise and normalising ops.
LAYER_NORM_OPS = 5  # mean, centre, square and sum, normalise (the row's square root is shared)
RMS_NORM_OPS = 3  # square and sum, normalise
AFFINE_OPS = 2  # a learned scale and shift
SOFTMAX_OPS = 4  # subtract the row's maximum, exponential, sum, divide
LRN_EXTRA_OPS = 4  # scale the sum of squares, add k, power, divide


def analog_ops(module: nn.Module, inputs: list[tuple[int, ...]], output: tuple[int, ...]) -> int:
    """Operations of ``module`` on one sample whose inputs have shapes ``inputs`` and output ``output``
    (per-sample shapes, without the batch)."""
    elements = math.prod(output)
    if isinstance(module, MatMul):
        return elements * inputs[0][-1]  # one multiply-accumulate per term of each dot product
    if isinstance(module, ScaledDotProductAttention):
        query, key, value = inputs
        scores = math.prod(query[:-1]) * key[-2]
        return scores * query[-1] + scores * (1 + SOFTMAX_OPS) + elements * value[-2]
    if isinstance(module, nn.LayerNorm):
        return elements * (LAYER_NORM_OPS + (AFFINE_OPS if module.elementwise_affine else 0))
    if isinstance(module, nn.RMSNorm):
        return elements * (RMS_NORM_OPS + (1 if module.elementwise_affine else 0))
    if isinstance(module, Softmax):
        return elements * SOFTMAX_OPS
    if isinstance(module, nn.LocalResponseNorm):
        return elements * (module.size + LRN_EXTRA_OPS)
    if isinstance(module, AnalogProduct):
        return elements
    return elements  # an activation computed on values: one function evaluation per element


def accumulation_ops(inputs: list[tuple[int, ...]], output: tuple[int, ...]) -> int:
    """What computing an op on accumulated inputs adds per step (``neurons.analog``): an addition and a
    division per input element (running sum and mean), a scaling and a subtraction per output element."""
    return 2 * sum(math.prod(shape) for shape in inputs) + 2 * math.prod(output)
