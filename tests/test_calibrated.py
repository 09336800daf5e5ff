"""Calibrated conversion: channel-wise robust thresholds, half start, bias correction at a target T."""

import pytest
import torch
from helpers import Residual, randomize_batchnorms
from torch import nn

import spikeport as sp
from spikeport.methods.calibrated import ChannelMean


def first_layer_error(snn, model, x, steps):
    """Mean |ANN activation clipped at the threshold - SNN output rate| of the first neurons, per channel."""
    neuron = snn.graph_module.get_submodule("1")
    seen = ChannelMean()
    hook = neuron.register_forward_hook(lambda _m, _i, out: seen.update(out))
    snn.simulate(x, steps)
    hook.remove()
    target = ChannelMean(neuron.threshold.flatten())
    with torch.no_grad():
        target.update(model[0](x))
    return (target.mean - seen.mean).abs().mean()


def test_bias_correction_shrinks_the_rate_error_at_the_target_steps():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 6, 3), nn.ReLU(), nn.Flatten(), nn.Linear(6 * 6 * 6, 4)).eval()
    x = torch.rand(64, 1, 8, 8)
    plain = sp.convert(model, x, "calibrated", correction=False, timesteps=3)
    corrected = sp.convert(model, x, "calibrated", timesteps=3)
    assert corrected.graph_module.get_submodule("1").bias.shape == (6, 1, 1)
    assert first_layer_error(corrected, model, x, 3) < 0.5 * first_layer_error(plain, model, x, 3)
    assert any("calibrated for T=3" in note for note in corrected.info["notes"])


def test_calibrated_networks_save_and_export_with_their_biases(tmp_path):
    torch.manual_seed(1)
    model = randomize_batchnorms(Residual()).eval()
    x = torch.rand(32, 1, 8, 8)
    snn = sp.convert(model, x, "calibrated", timesteps=4)
    loaded = sp.load(sp.save(snn, tmp_path / "c.spk"))
    assert torch.equal(loaded(x, timesteps=6), snn(x, timesteps=6))
    chain = nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 6 * 6, 2)).eval()
    snn = sp.convert(chain, x, "calibrated", timesteps=4)
    back = sp.import_nir(sp.export_nir(snn))  # the bias joins the conv's bias in NIR
    torch.testing.assert_close(back(x, timesteps=8), snn(x, timesteps=8), rtol=0, atol=1e-4)


def test_options_are_checked():
    with pytest.raises(ValueError, match="timesteps must be >= 1"):
        sp.convert(nn.Sequential(nn.Linear(2, 2), nn.ReLU()), torch.rand(4, 2), "calibrated", timesteps=0)
