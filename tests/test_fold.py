"""BatchNorm folding is exact up to float rounding."""

import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from spikeport.graph.fold import fold_into
from spikeport.graph.prepare import prepare


def randomize(bn: nn.modules.batchnorm._BatchNorm, g: torch.Generator) -> None:
    c = bn.num_features
    bn.running_mean.copy_(torch.randn(c, generator=g, dtype=torch.float64))
    bn.running_var.copy_(torch.rand(c, generator=g, dtype=torch.float64) * 3 + 0.01)
    if bn.affine:
        bn.weight.data.copy_(torch.randn(c, generator=g, dtype=torch.float64))
        bn.bias.data.copy_(torch.randn(c, generator=g, dtype=torch.float64))


@given(
    st.sampled_from(["conv1d", "conv2d", "linear"]),
    st.booleans(),
    st.booleans(),
    st.integers(min_value=0, max_value=10_000),
)
def test_fold_is_exact(kind, bias, affine, seed):
    g = torch.Generator().manual_seed(seed)
    layer, bn, x = {
        "conv1d": (
            nn.Conv1d(3, 5, 3, bias=bias),
            nn.BatchNorm1d(5, affine=affine),
            torch.randn(4, 3, 9, generator=g),
        ),
        "conv2d": (
            nn.Conv2d(3, 5, 3, bias=bias),
            nn.BatchNorm2d(5, affine=affine),
            torch.randn(4, 3, 7, 7, generator=g),
        ),
        "linear": (
            nn.Linear(6, 5, bias=bias),
            nn.BatchNorm1d(5, affine=affine),
            torch.randn(4, 6, generator=g),
        ),
    }[kind]
    layer, bn, x = layer.double(), bn.double().eval(), x.double()
    randomize(bn, g)
    expected = bn(layer(x))
    assert torch.allclose(fold_into(layer, bn)(x), expected, atol=1e-10, rtol=1e-10)


def test_prepare_folds_and_keeps_the_function():
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(4 * 4 * 4, 8),
        nn.BatchNorm1d(8),
    ).eval()
    g = torch.Generator().manual_seed(0)
    randomize(model[1].double(), g)
    randomize(model[5].double(), g)
    model.float()
    x = torch.randn(5, 1, 6, 6)
    prepared = prepare(model, x)
    kinds = {type(m) for m in prepared.graph_module.modules()}
    assert nn.BatchNorm2d not in kinds and nn.BatchNorm1d not in kinds
    assert torch.allclose(prepared.graph_module(x), model(x), atol=1e-5)
