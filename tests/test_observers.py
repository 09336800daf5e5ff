"""Calibration statistics merge exactly, so batches and processes can be reduced in any order."""

import torch
from hypothesis import given
from hypothesis import strategies as st

from spikeport.graph.observers import HistogramStatistic, MaxStatistic


@given(st.integers(0, 1000), st.booleans(), st.integers(1, 4))
def test_merged_statistics_equal_one_pass(seed, channelwise, parts):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(8 * parts, 3, 4, 4, generator=g).exp_() - 1.0  # some negatives, a long positive tail
    whole = HistogramStatistic(channelwise)
    whole.update(x)
    merged = HistogramStatistic(channelwise)
    for chunk in x.chunk(parts):
        piece = HistogramStatistic(channelwise)
        piece.update(chunk)
        merged.merge(piece)
    assert torch.equal(whole.counts, merged.counts) and torch.equal(whole.max, merged.max)
    assert torch.equal(whole.percentile(99.0), merged.percentile(99.0))


@given(st.integers(0, 1000), st.floats(50.0, 100.0))
def test_percentile_is_within_one_bin_of_the_exact_value(seed, p):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(4000, generator=g) * 5
    statistic = HistogramStatistic(bins_per_octave=64)
    statistic.update(x)
    exact = torch.quantile(x.double(), p / 100).item()
    estimate = statistic.percentile(p).item()
    assert exact * (1 - 1e-6) <= estimate * 2 ** (1 / 64) and estimate <= exact * 2 ** (2 / 64) + 1e-9
    assert statistic.percentile(100.0).item() == x.max().item()


def test_max_statistic_per_channel():
    statistic = MaxStatistic(channelwise=True)
    statistic.update(torch.tensor([[1.0, -2.0], [0.5, 3.0]]))
    statistic.update(torch.tensor([[4.0, 0.0]]))
    assert statistic.max.tolist() == [4.0, 3.0]
