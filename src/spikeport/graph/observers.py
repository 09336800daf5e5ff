"""Mergeable activation statistics collected during calibration.

Both statistics are sums or maxima over fixed bins, so partial results from batches, or from processes
(``torch.distributed.all_reduce``), merge exactly in any order. They reduce each batch where it lives (a GPU
during calibration on one) and keep their small totals on the CPU.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from spikeport.distributed import all_max, all_sum


def channels_first(x: Tensor, channelwise: bool) -> Tensor:
    """[B, C, ...] -> [C, everything else] (or [1, everything] when statistics are layer-wise)."""
    if not channelwise or x.dim() < 2:
        return x.reshape(1, -1)
    return x.transpose(0, 1).reshape(x.shape[1], -1)


class MaxStatistic:
    """Running maximum of the activation, per channel or per layer."""

    def __init__(self, channelwise: bool = False):
        self.channelwise = channelwise
        self.max: Tensor | None = None

    def update(self, x: Tensor) -> None:
        current = channels_first(x.detach(), self.channelwise).amax(dim=1).double().cpu()
        self.max = current if self.max is None else torch.maximum(self.max, current)

    def merge(self, other: MaxStatistic) -> None:
        if other.max is not None:
            self.max = other.max if self.max is None else torch.maximum(self.max, other.max)

    def all_reduce(self, channels: int) -> None:
        """Merge across torch.distributed processes (``channels``: the size when this one saw nothing)."""
        size = channels if self.channelwise else 1
        mine = self.max if self.max is not None else torch.full((size,), -torch.inf, dtype=torch.float64)
        merged = all_max(mine)
        self.max = None if bool(torch.isinf(merged).all() and (merged < 0).all()) else merged


class HistogramStatistic(MaxStatistic):
    """Counts of positive activations in fixed log2-spaced bins, plus the exact maximum.

    Fixed bins (``bins_per_octave`` per factor of two over 2^-32..2^32) need no range estimate up front
    and merge by addition; a percentile is read off with a relative precision of 2^(1/bins_per_octave).
    Only positive values count: a ReLU's zeros say nothing about the scale of its output.
    """

    LOW_EXPONENT, HIGH_EXPONENT = -32, 32

    def __init__(self, channelwise: bool = False, bins_per_octave: int = 64):
        super().__init__(channelwise)
        self.bins_per_octave = bins_per_octave
        self.bins = (self.HIGH_EXPONENT - self.LOW_EXPONENT) * bins_per_octave
        self.counts: Tensor | None = None

    def update(self, x: Tensor) -> None:
        super().update(x)
        values = channels_first(x.detach(), self.channelwise).float()
        channels = values.shape[0]
        # The positive values are picked first (grouped by channel, in order): the logarithms and bin
        # indices of the rest are never computed (2.5 times faster on ReLU inputs than binning all).
        positive = values > 0
        chosen = values[positive]
        index = ((torch.log2(chosen.clamp_min(1e-38)) - self.LOW_EXPONENT) * self.bins_per_octave).floor_()
        index = index.clamp_(0, self.bins - 1).long()
        if channels > 1:
            offsets = torch.arange(channels, device=values.device) * self.bins
            index += torch.repeat_interleave(offsets, positive.sum(dim=1))
        counts = torch.bincount(index, minlength=channels * self.bins).view(channels, self.bins).cpu()
        self.counts = counts if self.counts is None else self.counts + counts

    def merge(self, other: HistogramStatistic) -> None:
        super().merge(other)
        if other.counts is not None:
            self.counts = other.counts if self.counts is None else self.counts + other.counts

    def all_reduce(self, channels: int) -> None:
        super().all_reduce(channels)
        size = channels if self.channelwise else 1
        mine = self.counts if self.counts is not None else torch.zeros(size, self.bins, dtype=torch.long)
        self.counts = all_sum(mine)

    def percentile(self, p: float) -> Tensor:
        """Upper edge of the bin holding the p-th percentile of positive values, capped at the maximum."""
        if self.counts is None or self.max is None:
            raise ValueError("no data observed")
        cumulative = self.counts.cumsum(dim=1).double()
        total = cumulative[:, -1:]
        first = (cumulative < total * (p / 100.0)).sum(dim=1)
        edge = torch.exp2((first.double() + 1) / self.bins_per_octave + self.LOW_EXPONENT)
        return torch.minimum(edge, self.max)


def threshold_statistic(channelwise: bool, percentile: float | None) -> MaxStatistic:
    """What a threshold rule must collect: the running maximum, or a histogram to read a percentile from."""
    return MaxStatistic(channelwise) if percentile is None else HistogramStatistic(channelwise)


def threshold_level(statistic: MaxStatistic, percentile: float | None) -> Tensor:
    """The level a threshold rule reads off ``threshold_statistic``'s result."""
    return statistic.max if percentile is None else statistic.percentile(percentile)


class ActivationObserver(nn.Module):
    """Pass-through module that feeds what flows through it to a statistic (its magnitude, with ``magnitude``:
    a signed spike site's threshold covers both signs)."""

    def __init__(self, statistic: MaxStatistic, magnitude: bool = False):
        super().__init__()
        self.statistic = statistic
        self.magnitude = magnitude

    def forward(self, x: Tensor) -> Tensor:
        self.statistic.update(x.abs() if self.magnitude else x)
        return x
