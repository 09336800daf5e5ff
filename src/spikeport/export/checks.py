"""What a network read from a file must hold before it runs: finite numbers and positive thresholds.

A damaged or hand-edited file can carry values no conversion produces (a NaN weight, a threshold of 0 or
-1). Such a network still runs and answers nonsense without a word, so the readers (``sp.load``,
``sp.import_nir``) refuse it with the module and tensor named.
"""

from __future__ import annotations

import math
from itertools import chain

import torch
from torch import nn

from spikeport.layers import QCFS
from spikeport.neurons import IFNeuron
from spikeport.neurons.fs import FSNeuron

# Tensors that divide or scale a signal: a value <= 0 turns every spike count into nonsense.
POSITIVE: dict[type[nn.Module], tuple[str, ...]] = {
    IFNeuron: ("threshold", "spike_value"),
    FSNeuron: ("scale",),
    QCFS: ("threshold",),
}


def invalid_values(network: nn.Module) -> str | None:
    """The first value that no conversion would write, described in words; None when all are sound."""
    for path, module in network.named_modules():
        for attribute in POSITIVE.get(type(module), ()):
            value = getattr(module, attribute)
            if value is not None and not bool((value > 0).all()):
                return f"'{path}' has {attribute} {_shown(value)}; it must be > 0"
        if isinstance(module, IFNeuron) and not 0.0 <= module.initial_potential < 1.0:
            return f"'{path}' starts at {module.initial_potential} thresholds; it must be in [0, 1)"
        if isinstance(module, FSNeuron) and module.codes is not None:
            for steps, code in module.codes.items():
                numbers = (*code.thresholds, *code.resets, *code.weights, code.start, code.offset)
                if not all(math.isfinite(v) for v in numbers):
                    return f"'{path}''s FS code for K = {steps} holds non-finite values"
    for name, tensor in chain(network.named_parameters(), network.named_buffers()):
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            return f"tensor '{name}' holds non-finite values (NaN or inf)"
    return None


def _shown(value: torch.Tensor) -> str:
    return f"{value.item():g}" if value.numel() == 1 else f"min {value.min().item():g}"
