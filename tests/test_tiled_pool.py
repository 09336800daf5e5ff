"""The simulator's average and max pools: bit for bit F.avg_pool2d / F.max_pool2d wherever assembly puts them."""

import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import spikeport as sp
from spikeport.layers import TiledAvgPool2d, TiledMaxPool2d
from spikeport.models import mnist_cnn, vgg16
from spikeport.neurons import SpikingMaxPool


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


@settings(max_examples=40, deadline=None)
@given(
    st.integers(0, 10_000),
    st.tuples(st.integers(1, 3), st.integers(1, 3)),
    st.integers(1, 12),
    st.integers(1, 12),
    st.booleans(),
)
def test_tiled_max_pool_equals_max_pool_bit_for_bit(seed, kernel, height, width, with_nan):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(3, 2, height + kernel[0], width + kernel[1], generator=g).round()  # ties too
    if with_nan:
        x[1, 0, 0, 0] = float("nan")
    pool = nn.MaxPool2d(kernel)
    assert TiledMaxPool2d.tiles(pool)
    assert torch.equal(TiledMaxPool2d.like(pool)(x).nan_to_num(7.5), pool(x).nan_to_num(7.5))


def test_large_inputs_take_the_library_pool_with_the_same_numbers(monkeypatch):
    x = torch.randn(2, 3, 8, 8)
    pool = TiledAvgPool2d.like(nn.AvgPool2d(2))
    small = pool(x)
    monkeypatch.setattr(TiledAvgPool2d, "LARGE_INPUT_BYTES", 64)
    assert torch.equal(pool(x), small)


def test_only_non_overlapping_unpadded_pools_are_tiled():
    for pool in (nn.MaxPool2d(3, 2), nn.MaxPool2d(2, padding=1), nn.MaxPool2d(2, ceil_mode=True)):
        assert not TiledMaxPool2d.tiles(pool)
    assert not TiledMaxPool2d.tiles(nn.MaxPool2d(2, dilation=2))
    assert not TiledMaxPool2d.tiles(nn.MaxPool2d(2, return_indices=True))
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


def test_spiking_max_pools_pool_with_it_and_save_it(tmp_path):
    torch.manual_seed(0)
    model = vgg16(num_classes=10, width=8, hidden=16).eval()
    x = torch.rand(4, 3, 32, 32)
    snn = sp.convert(model, x, "percentile")
    pools = [m for m in snn.graph_module.modules() if isinstance(m, SpikingMaxPool)]
    assert pools and all(type(m.pool) is TiledMaxPool2d for m in pools)
    assert not any(type(m) is TiledMaxPool2d for m in snn.ann.modules())
    loaded = sp.load(sp.save(snn, tmp_path / "vgg.spk"))
    assert torch.equal(loaded(x, timesteps=5), snn(x, timesteps=5))
