"""The simulator's average pool: bit for bit F.avg_pool2d wherever assembly puts it in."""

import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import spikeport as sp
from spikeport.layers import TiledAvgPool2d
from spikeport.models import mnist_cnn


@settings(max_examples=40, deadline=None)
@given(
    st.integers(0, 10_000),
    st.tuples(st.integers(1, 3), st.integers(1, 3)),
    st.integers(1, 4),
    st.integers(1, 12),
    st.integers(1, 12),
)
def test_tiled_pool_equals_avg_pool_bit_for_bit(seed, kernel, channels, height, width):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(3, channels, height + kernel[0], width + kernel[1], generator=g)
    pool = nn.AvgPool2d(kernel)
    assert TiledAvgPool2d.tiles(pool)
    assert torch.equal(TiledAvgPool2d.like(pool)(x), pool(x))


def test_only_non_overlapping_unpadded_pools_are_tiled():
    assert not TiledAvgPool2d.tiles(nn.AvgPool2d(3, 2))
    assert not TiledAvgPool2d.tiles(nn.AvgPool2d(2, padding=1))
    assert not TiledAvgPool2d.tiles(nn.AvgPool2d(2, ceil_mode=True))
    assert not TiledAvgPool2d.tiles(nn.AvgPool2d(2, divisor_override=3))
    assert not TiledAvgPool2d.tiles(nn.MaxPool2d(2))


def test_converted_networks_pool_with_it_and_save_it(tmp_path):
    torch.manual_seed(0)
    model = mnist_cnn().eval()
    x = torch.rand(16, 1, 28, 28)
    snn = sp.convert(model, x, "percentile")
    pools = [m for m in snn.graph_module.modules() if isinstance(m, nn.AvgPool2d)]
    assert pools and all(type(m) is TiledAvgPool2d for m in pools)
    assert not any(type(m) is TiledAvgPool2d for m in snn.ann.modules())  # the reference ANN is untouched
    loaded = sp.load(sp.save(snn, tmp_path / "cnn.spk"))
    assert torch.equal(loaded(x, timesteps=5), snn(x, timesteps=5))
