"""FS codes of non-ReLU activations: fitting, the shipped library, and networks that use them."""

import pytest
import torch
import torch.nn.functional as F
from helpers import ann_with_fs_functions
from torch import nn

import spikeport as sp
from spikeport.cli import main
from spikeport.fs_codes import FITTED_ACTIVATIONS, SHIPPED_CODES, code_from_dict, fitted_codes, read_library
from spikeport.fs_fit import _staircase_breakpoints, fit_code
from spikeport.neurons.fs import FSNeuron, fs_scan


def code_error(name: str, entry: dict) -> tuple[float, float]:
    """Max and RMS error of a stored code, measured as fit_code measures it."""
    activation = FITTED_ACTIVATIONS[name]
    x = torch.linspace(activation.low, activation.high, 4 * 4096 + 1)
    _, decoded = fs_scan(x, code_from_dict(entry["code"]))
    error = (decoded.double() - activation(x.double())).abs()
    return float(error.max()), float(error.pow(2).mean().sqrt())


def test_shipped_codes_cover_every_activation_and_state_their_true_error():
    library = read_library(SHIPPED_CODES)
    assert set(library) == set(FITTED_ACTIVATIONS)
    for name, by_steps in library.items():
        assert {8, 16} <= set(by_steps), name
        for steps, entry in by_steps.items():
            assert len(entry["code"]["thresholds"]) == steps
            worst, rms = code_error(name, entry)
            assert worst == pytest.approx(entry["max_error"], rel=1e-6), (name, steps)
            assert rms == pytest.approx(entry["rms_error"], rel=1e-6), (name, steps)


def test_longer_codes_fit_silu_better():
    library = read_library(SHIPPED_CODES)["silu"]
    assert library[16]["rms_error"] < library[8]["rms_error"] < library[4]["rms_error"]


def test_fit_reports_the_error_of_the_code_it_returns():
    result = fit_code(FITTED_ACTIVATIONS["sigmoid"], 5, iterations=30)
    assert result.code.steps == 5
    worst, rms = code_error("sigmoid", result.to_dict())
    assert (worst, rms) == pytest.approx((result.max_error, result.rms_error), rel=1e-6)
    # better than the best constant (half the sigmoid's range), a fit that could fail
    assert result.max_error < 0.25


def test_staircase_breakpoints_recover_a_step_function():
    x = torch.linspace(-4, 4, 4096, dtype=torch.float64)
    r = torch.where(x < -1, 0.0, torch.where(x < 2, 1.0, -0.5)).double()
    breakpoints = _staircase_breakpoints(x, r, 3)
    assert breakpoints.tolist() == pytest.approx([-1.0, 2.0], abs=8 / 256)


def coded_ann(snn: sp.SpikingNetwork, steps: int) -> nn.Module:
    """The ANN with each activation replaced by the function its FS code computes (decoded, float32)."""

    def decoded(neuron: FSNeuron):
        return lambda x: fs_scan(x / neuron.scale, neuron.code(steps))[1] * neuron.scale

    return ann_with_fs_functions(snn, decoded)


class SqueezeExcite(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.reduce = nn.Linear(4, 2)
        self.expand = nn.Linear(2, 4)
        self.fc = nn.Linear(4 * 4 * 4, 3)

    def forward(self, x):
        x = F.silu(self.conv(x))
        s = torch.sigmoid(self.expand(F.silu(self.reduce(x.mean(dim=(2, 3))))))
        x = x * s[:, :, None, None]
        return self.fc(F.avg_pool2d(x, 2).flatten(1))


@pytest.mark.parametrize("steps", [8, 16])
def test_silu_squeeze_excite_net_runs_its_codes_exactly(steps):
    torch.manual_seed(0)
    model = SqueezeExcite().eval()
    x = torch.rand(16, 1, 8, 8)
    snn = sp.convert(model, x, "fs", steps=steps)
    torch.testing.assert_close(snn(x)[-1], coded_ann(snn, steps)(x), rtol=1e-5, atol=1e-5)
    # and the codes approximate the activations: the read-out stays near the ANN's
    assert (snn(x)[-1] - model(x)).abs().max() < 0.1
    ev = sp.evaluate(snn, x, timesteps=[steps], progress=False)
    # conv SiLU, the gate's SiLU and sigmoid, then the signed spikes of the gated features
    assert ev.latency_steps[steps] == 4 * steps


def test_leaky_relu_is_coded_on_its_calibrated_range():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(5, 6), nn.LeakyReLU(), nn.Linear(6, 2)).eval()
    x = torch.randn(64, 5) * 3
    snn = sp.convert(model, x, "fs", steps=12)
    neuron = snn.graph_module.get_submodule("1")
    with torch.no_grad():
        assert float(neuron.scale) == pytest.approx(float(model[0](x).abs().max()), rel=1e-6)
    assert (snn(x)[-1] - model(x)).abs().max() < 0.05 * float(neuron.scale)


def test_activations_without_a_code_are_clear_errors():
    model = nn.Sequential(nn.Linear(5, 6), nn.LeakyReLU(0.2), nn.Linear(6, 2))
    with pytest.raises(
        sp.ConversionError, match=r"LeakyReLU\(negative_slope=0.2\) activation, which FS has no code for"
    ):
        sp.convert(model, torch.rand(8, 5), "fs")
    model = nn.Sequential(nn.Linear(5, 6), nn.Tanh(), nn.Linear(6, 2))
    with pytest.raises(
        sp.ConversionError, match=r"no fitted FS code for K=7 .*spikeport fit-fs tanh --steps 7"
    ):
        sp.convert(model, torch.rand(8, 5), "fs", steps=7)


def test_fs_max_pool_needs_binary_codes():
    model = nn.Sequential(
        nn.Conv2d(1, 2, 3), nn.SiLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(2 * 3 * 3, 2)
    )
    with pytest.raises(sp.ConversionError, match="must directly follow ReLU FS neurons"):
        sp.convert(model, torch.rand(4, 1, 8, 8), "fs")


def test_fit_fs_command_adds_codes_that_conversions_use(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SPIKEPORT_CACHE", str(tmp_path))
    assert 5 not in fitted_codes("tanh")
    assert main(["fit-fs", "tanh", "--steps", "5", "--iterations", "20"]) == 0
    assert "| tanh | 5 |" in capsys.readouterr().out
    assert 5 in fitted_codes("tanh") and 8 in fitted_codes("tanh")  # added to the shipped ones
    model = nn.Sequential(nn.Linear(5, 6), nn.Tanh(), nn.Linear(6, 2))
    snn = sp.convert(model, torch.rand(8, 5), "fs", steps=5)
    assert 5 in snn.supported_steps()
    assert main(["fit-fs", "swish"]) == 2
    assert "no FS fit for 'swish'" in capsys.readouterr().err


def test_compare_places_fs_next_to_rate_methods(tmp_path):
    torch.manual_seed(2)
    model = nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 6 * 6, 4)).eval()
    x = torch.rand(20, 1, 8, 8)
    comparison = sp.compare(model, x, x, ["rmp", "fs"], timesteps=[4, 16], codes=[2, 4], progress=False)
    assert comparison["fs"].timesteps == [2, 4] and comparison["rmp"].timesteps == [4, 16]
    table = comparison.to_markdown()
    assert "| 4 | fs | 4 |" in table and "| 4 | rmp | 4 |" in table and "| 2 | fs | 2 |" in table
    assert comparison.plot(tmp_path / "plot.png").stat().st_size > 0
    back = sp.Comparison.from_json(comparison.to_json(tmp_path / "c.json"))
    assert back["fs"].latency_steps == {2: 2, 4: 4}


def test_input_sample_is_uniform_over_batches_and_keeps_the_range():
    from spikeport.methods.fs import InputSample

    statistic = InputSample(keep=4000)
    statistic.update(torch.zeros(1000))  # a small batch first, then a large one
    statistic.update(torch.ones(9000))
    assert statistic.sample.numel() == 4000
    assert (statistic.low, statistic.high) == (0.0, 1.0)
    assert float(statistic.sample.mean()) == pytest.approx(0.9, abs=0.03)  # 9 of 10 values seen are ones


def test_codes_fitted_to_a_layers_own_inputs():
    torch.manual_seed(5)
    model = nn.Sequential(nn.Linear(4, 16), nn.SiLU(), nn.Linear(16, 3)).eval()
    x = torch.randn(256, 4) * 6  # inputs to the SiLU far beyond the shipped codes' [-8, 8]
    shipped = sp.convert(model, x, "fs", steps=8)
    assert any("outside [-8, 8]" in note and "fs[fit=layer]" in note for note in shipped.info["notes"])
    own = sp.convert(model, x, "fs", steps=8, fit="layer")
    assert own.supported_steps() == [8]
    note = next(n for n in own.info["notes"] if "fitted to this layer" in n)
    with torch.no_grad():
        low, high = float(model[0](x).min()), float(model[0](x).max())
        assert f"[{low:.3g}, {high:.3g}]" in note
        error_shipped = (shipped(x)[-1] - model(x)).abs().mean()
        error_own = (own(x)[-1] - model(x)).abs().mean()
    assert error_own < error_shipped
