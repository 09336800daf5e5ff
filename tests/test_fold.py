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


class ReluThenBatchNorm(nn.Module):
    """BN after the activation (Keras style), on the input, before a padded conv and across a flatten."""

    def __init__(self, pad_second: bool):
        super().__init__()
        self.bn_in = nn.BatchNorm2d(2)
        self.conv1 = nn.Conv2d(2, 4, 3)
        self.bn1 = nn.BatchNorm2d(4)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1 if pad_second else 0, bias=False)
        self.bn2 = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4 * (4 if pad_second else 2) ** 2, 3)

    def forward(self, x):
        x = self.bn1(torch.relu(self.conv1(self.bn_in(x))))
        x = self.bn2(torch.relu(self.conv2(x)))
        return self.fc(torch.flatten(x, 1))


@given(st.booleans(), st.integers(min_value=0, max_value=10_000))
def test_forward_fold_is_exact_and_keeps_padded_convs_affine(pad_second, seed):
    g = torch.Generator().manual_seed(seed)
    model = ReluThenBatchNorm(pad_second).double().eval()
    for bn in (model.bn_in, model.bn1, model.bn2):
        randomize(bn, g)
    x = torch.randn(5, 2, 6, 6, generator=g, dtype=torch.float64)
    prepared = prepare(model, x)
    left = [m for m in prepared.graph_module.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(left) == (1 if pad_second else 0)  # only the BN before the padded conv stays
    assert torch.allclose(prepared.graph_module(x), model(x), atol=1e-10, rtol=1e-10)
    assert any("after them" in note for note in prepared.notes)
    assert any("kept 1 BatchNorm" in note for note in prepared.notes) == pad_second


def test_batchnorm_after_relu_converts_exactly():
    """The SNN of a BN-after-ReLU net (one BN folded forward, one kept affine) converges to the ANN."""
    import spikeport as sp

    g = torch.Generator().manual_seed(1)
    model = ReluThenBatchNorm(pad_second=True).eval()
    for bn in (model.bn_in, model.bn1, model.bn2):
        randomize(bn.double(), g)
        bn.float()
    x = torch.rand(64, 2, 6, 6, generator=g)
    expected = model(x)
    snn = sp.convert(model, x, "ecc")
    errors = [(snn(x, timesteps=t)[-1] - expected).abs().mean() / expected.std() for t in (16, 512)]
    assert errors[1] < 0.005 and errors[1] < errors[0] / 5  # the read-out converges to the ANN's output
