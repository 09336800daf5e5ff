"""ECC: current normalisation, thresholding for residual elimination, signed weight quantisation."""

import pytest
import torch
from helpers import Residual, randomize_batchnorms
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import spikeport as sp
from spikeport.graph.quantize import quantize_tensor
from spikeport.methods import ECC, make_method


@settings(max_examples=60, deadline=None)
@given(
    st.integers(min_value=2, max_value=12),
    st.integers(min_value=0, max_value=2**31 - 1),
    st.floats(min_value=1e-3, max_value=1e3),
)
def test_quantized_weights_lie_on_a_signed_grid_within_half_a_step(bits, seed, scale):
    weight = torch.randn(7, 5, generator=torch.Generator().manual_seed(seed)) * scale
    weight[0, 0] = 0.0
    quantized = quantize_tensor(weight, bits)
    levels = 2 ** (bits - 1) - 1
    step = weight.abs().max().double() / levels
    codes = quantized.double() / step
    assert torch.allclose(codes, codes.round(), atol=1e-6)  # integers ...
    assert codes.abs().max() <= levels + 1e-6  # ... within the signed range
    assert (quantized.double() - weight.double()).abs().max() <= step / 2 + 1e-6 * step
    assert quantized[0, 0] == 0  # pruned synapses stay pruned
    assert quantized.abs().max() == pytest.approx(weight.abs().max().item(), rel=1e-6)  # the largest is exact


def test_ecc_is_registered_with_its_options():
    method = make_method("ecc", thresholding=0.0, percentile=99.9, weight_bits=8)
    assert isinstance(method, ECC)
    assert method.initial_potential == 0.0
    assert method.describe()["thresholding"] == 0.0
    with pytest.raises(ValueError, match="pass thresholding=, not both"):
        make_method("ecc", thresholding=0.5, initial_potential=0.25)
    with pytest.raises(ValueError, match="weight_bits"):
        make_method("ecc", weight_bits=1)
    with pytest.raises(ValueError, match="percentile"):
        make_method("ecc", percentile=0.0)


def test_half_threshold_start_removes_the_systematic_loss():
    """With flooring (0) every hidden rate is low by up to one spike; rounding (0.5) is unbiased."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(20, 200), nn.ReLU(), nn.Linear(200, 1, bias=False)).eval()
    with torch.no_grad():
        model[2].weight.fill_(1.0 / 200)  # the read-out averages the hidden rates: a bias cannot cancel
    x = torch.rand(256, 20)
    target = model(x)
    errors = {}
    for thresholding in (0.0, 0.5):
        snn = sp.convert(model, x, "ecc", thresholding=thresholding)
        readout = snn(x, timesteps=16)[-1]
        errors[thresholding] = (readout - target).mean().item()
    assert errors[0.0] < 0  # flooring under-estimates ...
    assert abs(errors[0.5]) < abs(errors[0.0]) / 3  # ... rounding does not


def test_ecc_converges_on_the_residual_net():
    model = randomize_batchnorms(Residual())
    x = torch.rand(64, 1, 8, 8)
    ev = sp.evaluate(sp.convert(model, x, "ecc"), x, timesteps=[512], ann=model)
    assert ev.agreement[512] >= 0.95


def test_weight_bits_quantise_the_snn_not_the_reference():
    model = randomize_batchnorms(Residual())
    x = torch.rand(32, 1, 8, 8)
    snn = sp.convert(model, x, "ecc", weight_bits=4)
    assert snn.info["weight_bits"] == 4
    weighted = [m for m in snn.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    assert weighted
    for layer in weighted:
        assert layer.weight.unique().numel() <= 2**4 - 1
    assert any(p.unique().numel() > 15 for n, p in model.named_parameters() if n.endswith("weight"))
    ev = sp.evaluate(snn, x, timesteps=[64])  # agreement is against the float ANN
    assert "ecc (4-bit weights)" in ev.to_markdown()
    assert torch.equal(snn.ann(x), model(x)) or torch.allclose(snn.ann(x), model(x), atol=1e-5)


class BasicBlock(nn.Module):
    """A ResNet block with BatchNorm on both branches of the residual add (1x1-conv shortcut)."""

    def __init__(self):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(2, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4)
        self.conv2, self.bn2 = nn.Conv2d(4, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4)
        self.shortcut, self.bn_short = nn.Conv2d(2, 4, 1, bias=False), nn.BatchNorm2d(4)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        y = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
        x = torch.relu(y + self.bn_short(self.shortcut(x)))
        return self.fc(x.mean(dim=(2, 3)))


def test_batchnorm_on_both_branches_of_a_residual_add_folds_and_converges():
    torch.manual_seed(0)
    model = randomize_batchnorms(BasicBlock())
    x = torch.rand(64, 2, 6, 6)
    snn = sp.convert(model, x, "ecc")
    assert not any(isinstance(m, nn.BatchNorm2d) for m in snn.modules())  # all three folded exactly
    assert torch.allclose(snn.ann(x), model(x), atol=1e-5)
    readout = snn(x, timesteps=512)
    errors = [(readout[t - 1] - model(x)).abs().mean().item() for t in (16, 512)]
    assert errors[1] < errors[0] / 4 and errors[1] < 0.02 * model(x).abs().mean().item()
    agreement = (readout[-1].argmax(1) == model(x).argmax(1)).float().mean().item()
    assert agreement >= 0.95
