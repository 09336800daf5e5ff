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

from torch import fx, nn

from spikeport.graph.canonical import canonicalize_activations, redirect_inplace_users
from spikeport.graph.trace import trace
from spikeport.layers import QCFS, floor_straight_through

__all__ = ["QCFS", "floor_straight_through", "prepare"]


def prepare(model: nn.Module, levels: int = 8, threshold: float = 8.0) -> fx.GraphModule:
    """``model`` traced with every ReLU (module, ``F.relu``, ``.relu()``...) replaced by a QCFS module.

    The result is an ordinary trainable module; its parameters are the model's plus one threshold per
    activation (initial value ``threshold``).
    """
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
