"""Conversion-aware training: the quantisation-clip-floor-shift activation (QCFS; Bu et al., ICLR 2022).

``QCFS(x) = lambda / L * clip(floor(x * L / lambda + 1/2), 0, L)``: a ReLU clipped at a learned ``lambda`` and
quantised to L levels, shifted by half a level. An IF neuron with soft reset, threshold ``lambda`` and a
half-threshold start produces exactly these L+1 levels as its spike count over L steps, so a network
trained with QCFS converts with (almost) no loss at T = L and degrades gracefully below.

    model = sp.qcfs.prepare(model, levels=8)          # every ReLU becomes a QCFS module (fx-traced)
    ... train with any loop ...
    snn = sp.convert(model, calibration, "qcfs")      # thresholds = the learned lambdas
"""

from __future__ import annotations

import torch
from torch import Tensor, fx, nn


def floor_straight_through(x: Tensor) -> Tensor:
    """floor(x) forward, identity backward (the straight-through estimator the method trains with)."""
    return x + (torch.floor(x) - x).detach()


class QCFS(nn.Module):
    """The QCFS activation with ``levels`` (L) steps and a learnable clip value ``threshold`` (lambda)."""

    def __init__(self, levels: int = 8, threshold: float = 8.0):
        super().__init__()
        if levels < 1:
            raise ValueError(f"levels must be >= 1, got {levels}")
        self.levels = int(levels)
        self.threshold = nn.Parameter(torch.tensor(float(threshold)))

    def extra_repr(self) -> str:
        return f"levels={self.levels}, threshold={float(self.threshold.detach()):.4g}"

    def forward(self, x: Tensor) -> Tensor:
        levels = self.levels
        steps = floor_straight_through(x / self.threshold * levels + 0.5)
        return torch.clamp(steps, 0, levels) / levels * self.threshold


def prepare(model: nn.Module, levels: int = 8, threshold: float = 8.0) -> fx.GraphModule:
    """``model`` traced with every ReLU (module, ``F.relu``, ``.relu()``...) replaced by a QCFS module.

    The result is an ordinary trainable module; its parameters are the model's plus one threshold per
    activation (initial value ``threshold``).
    """
    from spikeport.graph.canonical import canonicalize_activations, redirect_inplace_users
    from spikeport.graph.trace import trace

    gm = trace(model)
    redirect_inplace_users(gm)
    canonicalize_activations(gm)
    for name, module in list(gm.named_modules()):
        if type(module) is nn.ReLU:
            gm.set_submodule(name, QCFS(levels, threshold))
    gm.recompile()
    return gm


def thresholds(model: nn.Module) -> dict[str, float]:
    """The learned clip value of every QCFS module, by module path."""
    return {name: float(m.threshold.detach()) for name, m in model.named_modules() if isinstance(m, QCFS)}
