"""Operation counts and the energy model.

SOPs (synaptic operations) are exact: each spike times the real fan-out of the neuron that fired, derived
from the layers (``graph.connectivity``). The analog input current is counted as dense multiply-accumulates
at every step, as an SNN chip would re-inject it. The ANN's MACs are its synapses per image.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import fx

from spikeport.graph.connectivity import connections
from spikeport.graph.ops import Role, role_of


@dataclass(frozen=True)
class EnergyModel:
    """Energy per operation in joules (defaults: 45 nm CMOS figures used throughout the SNN literature)."""

    joules_per_sop: float = 0.9e-12
    joules_per_mac: float = 4.6e-12

    def energy(self, sops: float, macs: float) -> float:
        return sops * self.joules_per_sop + macs * self.joules_per_mac

    def sop_weight(self, bits: int) -> float:
        """What a synaptic op of a ``bits``-bit graded spike costs, in binary SOPs: the weight times the spike's
        level, as ``bits`` shift-and-adds, and never more than a MAC."""
        return float(min(bits, self.joules_per_mac / self.joules_per_sop))


def ann_macs_per_image(gm: fx.GraphModule) -> int:
    """Multiply-accumulates of one ANN forward pass: every synapse of every conv, linear, pool and BN."""
    modules = dict(gm.named_modules())
    total = 0
    for node in gm.graph.nodes:
        if role_of(node, modules) in (Role.WEIGHTED, Role.POOL, Role.AFFINE):
            total += connections(modules[node.target], node.args[0].meta["sample_shape"])
    return total
