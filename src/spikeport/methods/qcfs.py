"""Converting a QCFS-trained network (Bu et al., ICLR 2022) exactly as the method prescribes.

Each QCFS activation's learned clip value lambda becomes its neurons' threshold; neurons start half-way to
it (the activation's half-level shift) and reset by subtraction. Plain ReLUs left in the model (none if it
came from ``sp.qcfs.prepare``) get the largest activation seen on calibration data, with a note.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import Tensor

from spikeport.errors import ConversionError
from spikeport.graph.prepare import PreparedModel
from spikeport.methods.base import Batches, RateMethod
from spikeport.methods.statistics import data_based_thresholds
from spikeport.options import Fraction
from spikeport.qcfs import QCFS


@dataclass
class QCFSConversion(RateMethod):
    name: ClassVar[str] = "qcfs"
    initial_potential: Fraction = 0.5

    def check(self, prepared: PreparedModel) -> None:
        super().check(prepared)
        modules = dict(prepared.graph_module.named_modules())
        if not any(isinstance(modules[n.target], QCFS) for n in prepared.activation_nodes()):
            raise ConversionError(
                "method 'qcfs' converts models trained with QCFS activations (sp.qcfs.prepare) and found none; "
                "for a plain ReLU model use method='calibrated'"
            )

    def thresholds(self, prepared: PreparedModel, batches: Batches) -> dict[str, Tensor]:
        modules = dict(prepared.graph_module.named_modules())
        result, plain = {}, []
        for node in prepared.activation_nodes():
            module = modules[node.target]
            if isinstance(module, QCFS):
                result[node.name] = module.threshold.detach().abs().clone()
            else:
                plain.append(node.name)
        if plain:
            levels = data_based_thresholds(prepared, batches, self.channelwise)
            result.update({name: levels[name] for name in plain})
            prepared.notes.append(
                f"{len(plain)} plain ReLU layer(s) took their largest activation as threshold"
            )
        return result
