"""The classic data-based normalisations, kept as honest baselines.

- ``max``: Diehl et al. 2015 — threshold = maximum ANN activation; hard reset by default.
- ``percentile``: Rueckauer et al. 2017 — threshold = a high percentile (99.9 by default) of the positive
  ANN activations, robust to outliers; soft reset by default.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import Tensor

from spikeport.graph.prepare import PreparedModel
from spikeport.methods.base import Batches, RateMethod
from spikeport.methods.statistics import data_based_thresholds
from spikeport.neurons import Reset
from spikeport.options import Percentile


@dataclass
class MaxNorm(RateMethod):
    name: ClassVar[str] = "max"
    reads_statistics: ClassVar[bool] = True
    reset: Reset | str = Reset.HARD

    def thresholds(self, prepared: PreparedModel, batches: Batches) -> dict[str, Tensor]:
        return data_based_thresholds(prepared, batches, self.channelwise)


@dataclass
class PercentileNorm(RateMethod):
    name: ClassVar[str] = "percentile"
    reads_statistics: ClassVar[bool] = True
    percentile: Percentile = 99.9

    def thresholds(self, prepared: PreparedModel, batches: Batches) -> dict[str, Tensor]:
        return data_based_thresholds(prepared, batches, self.channelwise, self.percentile)
