"""ECC, explicit current control (Wu, Yi, Huang 2021, the method of SpKeras).

- *Current normalisation*: each layer's scale is the maximum (or a chosen percentile) of its ANN
  activation on calibration data. The paper rescales weights by lambda_prev / lambda and sets thresholds to
  1; spikeport's spikes carry their threshold, so thresholds equal to lambda are the same network.
- *Thresholding for residual elimination*: a soft-reset neuron keeps up to one threshold of charge
  unspent at the end of a run, so its rate floors the activation; starting the membrane at
  ``thresholding`` x Vth (0.5: the rate rounds instead) removes that systematic loss.
- *Batch-norm consistency*: BN is folded exactly before calibration (see ``graph.fold``).
- Optional ``weight_bits``: signed N-bit synapses, calibrated as quantised, reported with the network.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, ClassVar

from torch import Tensor

from spikeport.errors import OptionError
from spikeport.graph.prepare import PreparedModel
from spikeport.graph.quantize import quantize_weights
from spikeport.methods.base import Batches, RateMethod
from spikeport.methods.statistics import data_based_thresholds
from spikeport.options import Fraction, Percentile, Range


@dataclass
class ECC(RateMethod):
    name: ClassVar[str] = "ecc"
    thresholding: Fraction = 0.5  # initial membrane as a fraction of Vth: 0.5 rounds the rate, 0 floors it
    percentile: Percentile | None = None  # None: normalise by the maximum activation
    weight_bits: Annotated[int, Range(2)] | None = None  # None: float weights

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.initial_potential not in (0.0, self.thresholding):
            raise OptionError(
                "for ecc, thresholding is the initial membrane potential; pass thresholding=, not both"
            )
        self.initial_potential = self.thresholding

    reads_statistics: ClassVar[bool] = True

    def shares_statistics(self) -> bool:
        return (
            super().shares_statistics() and self.weight_bits is None
        )  # quantised weights: other activations

    def transform(self, prepared: PreparedModel) -> None:
        super().transform(prepared)
        if self.weight_bits is not None:
            layers = quantize_weights(prepared.graph_module, self.weight_bits)
            prepared.notes.append(f"quantised the weights of {layers} layer(s) to {self.weight_bits} bits")

    def thresholds(self, prepared: PreparedModel, batches: Batches) -> dict[str, Tensor]:
        return data_based_thresholds(prepared, batches, self.channelwise, self.percentile)
