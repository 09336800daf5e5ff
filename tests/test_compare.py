"""sp.compare and `spikeport compare`: several methods on one model, one table, one plot, one JSON."""

import pytest
import torch
from helpers import Residual, randomize_batchnorms

import spikeport as sp
from spikeport.cli import _calibration_spec, _methods, main
from spikeport.compare import Comparison
from spikeport.methods import parse_method
from tests.test_cli import write_npz


def test_method_specs_carry_their_options():
    assert parse_method("ecc") == ("ecc", {})
    assert parse_method("max[reset=soft, channelwise=true]") == (
        "max",
        {"reset": "soft", "channelwise": True},
    )
    assert parse_method("ecc[weight_bits=8; percentile=99.99; thresholding=0]") == (
        "ecc",
        {"weight_bits": 8, "percentile": 99.99, "thresholding": 0},
    )
    assert parse_method("ecc[percentile=none]") == ("ecc", {"percentile": None})
    for bad in ("max[reset]", "max[reset=soft", "two words"):
        with pytest.raises(ValueError, match="method spec"):
            parse_method(bad)
    assert _methods("ecc,max[reset=soft, channelwise=true],rmp") == [
        "ecc",
        "max[reset=soft, channelwise=true]",
        "rmp",
    ]
    assert _calibration_spec("mnist:test") == "mnist:train"
    assert _calibration_spec("idx:/data/f") == "idx:/data/f:train"


def test_convert_reads_options_written_into_the_method():
    x = torch.rand(8, 1, 8, 8)
    snn = sp.convert(Residual(), x, "max[reset=soft]")
    assert snn.info["method"] == "max" and snn.info["reset"] == "soft"
    assert sp.convert(Residual(), x, "max[reset=soft]", reset="hard").info["reset"] == "hard"  # keywords win


def test_compare_equals_separate_conversions_and_round_trips(tmp_path):
    model = randomize_batchnorms(Residual())
    x, y = torch.rand(24, 1, 8, 8), torch.randint(0, 5, (24,))
    methods = {"ecc": "ecc", "soft max": "max[reset=soft]"}
    comparison = sp.compare(model, x, (x, y), methods, [4, 16], progress=False)
    assert list(comparison.evaluations) == ["ecc", "soft max"]
    alone = sp.evaluate(sp.convert(model, x, "max", reset="soft"), (x, y), [4, 16], ann=model, progress=False)
    assert comparison["soft max"].agreement == alone.agreement
    assert comparison["soft max"].sops_per_image == alone.sops_per_image
    table = comparison.to_markdown()
    assert "| 16 | soft max |" in table and "ANN accuracy − 0.1 pt" in table
    for cost in ("sops", "energy"):
        assert comparison.plot(tmp_path / f"{cost}.png", cost=cost).stat().st_size > 0
    with pytest.raises(ValueError, match="cost must be one of"):
        comparison.plot(tmp_path / "x.png", cost="time")
    loaded = Comparison.from_json(comparison.to_json(tmp_path / "c.json"))
    assert loaded.to_markdown() == table
    assert set(loaded.seconds) == set(methods)


def test_energy_curve_ends_at_the_reported_energy():
    model = randomize_batchnorms(Residual())
    x = torch.rand(16, 1, 8, 8)
    ev = sp.evaluate(sp.convert(model, x, "ecc"), x, [3, 8], progress=False)
    for t in (3, 8):
        assert ev.curves["energy_per_image"][t - 1] == pytest.approx(ev.energy_per_image[t])


def test_compare_rejects_a_bad_method_before_any_work():
    with pytest.raises(ValueError, match="unknown method 'nope'"):
        sp.compare(Residual(), torch.rand(4, 1, 8, 8), torch.rand(4, 1, 8, 8), ["ecc", "nope"], [4])


def test_cli_compare(tmp_path, capsys):
    data = write_npz(tmp_path / "d.npz")
    code = main(
        ["compare", "tests.helpers:Residual", "--data", f"npz:{data}", "--methods", "ecc,max[reset=soft]"]
        + ["--timesteps", "2,8", "--quiet", "--cost", "energy", "--out", str(tmp_path / "out")]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert "| 8 | max[reset=soft] |" in out
    assert {p.name for p in (tmp_path / "out").iterdir()} == {"results.md", "accuracy.png", "comparison.json"}
    assert main(["compare", "tests.helpers:Residual", "--data", f"npz:{data}", "--methods", "ecc[x=1]"]) == 2
    assert "has no option(s) x" in capsys.readouterr().err
