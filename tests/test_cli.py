"""The `spikeport` command: convert and evaluate through files, errors as one line with exit code 2."""

import json

import numpy as np
import torch

from spikeport.cli import main
from tests.helpers import Residual


def write_npz(path, n=40, seed=0):
    g = np.random.default_rng(seed)
    np.savez(path, x=g.random((n, 1, 8, 8), dtype=np.float32), y=g.integers(0, 5, n))
    return path


def convert_residual(tmp_path, seed: int, options: list[str]) -> tuple[int, object, object]:
    """`spikeport convert` of a random Residual net on generated data: (exit code, network file, data file)."""
    torch.manual_seed(seed)
    weights = tmp_path / "w.pt"
    torch.save(Residual().state_dict(), weights)
    data = write_npz(tmp_path / "d.npz")
    net = tmp_path / "net.spk"
    code = main(
        ["convert", "tests.helpers:Residual", "--weights", str(weights), "--data", f"npz:{data}"]
        + options
        + ["-o", str(net)]
    )
    return code, net, data


def test_convert_then_evaluate(tmp_path, capsys):
    code, net, data = convert_residual(tmp_path, 0, ["--method", "percentile", "--channelwise"])
    assert code == 0 and net.is_file()
    assert "saved to" in capsys.readouterr().out
    report = tmp_path / "ev.json"
    code = main(
        ["evaluate", str(net), "--data", f"npz:{data}", "--timesteps", "4,16", "--quiet"]
        + ["--json", str(report), "--plot", str(tmp_path / "ev.png")]
    )
    out = capsys.readouterr().out
    assert code == 0 and "| 16 |" in out
    result = json.loads(report.read_text())
    assert result["method"]["method"] == "percentile" and result["method"]["channelwise"] is True
    assert set(result["agreement"]) == {"4", "16"}
    assert (tmp_path / "ev.png").is_file()


def test_fs_network_through_files(tmp_path, capsys):
    code, net, data = convert_residual(
        tmp_path, 1, ["--method", "fs", "--steps", "6", "--input-coding", "fs"]
    )
    assert code == 0 and "(4 neuron layers)" in capsys.readouterr().out  # input coder + three ReLUs
    report = tmp_path / "ev.json"
    assert main(["evaluate", str(net), "--data", f"npz:{data}", "--quiet", "--json", str(report)]) == 0
    out = capsys.readouterr().out
    assert "| K | latency |" in out and "| 6 | 24 |" in out  # every shipped K up to 16, latency 4 x K
    assert json.loads(report.read_text())["coding"] == "temporal"


def test_errors_are_one_line_with_exit_code_2(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path / "missing.spk"), "--data", "mnist:test"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("spikeport: error:") and err.count("\n") == 1
    assert main(["convert", "no.such.module:factory", "--data", "mnist", "-o", str(tmp_path / "x.spk")]) == 2
    assert "cannot import" in capsys.readouterr().err
    data = write_npz(tmp_path / "d.npz")
    assert (
        main(["convert", "tests.helpers:Residual", "--data", f"npz:{data}", "--method", "nope", "-o", "x"])
        == 2
    )
    assert "unknown method 'nope'" in capsys.readouterr().err


def test_python_dash_m_runs_the_command_line_and_it_tells_its_version():
    import subprocess
    import sys

    from spikeport._version import __version__

    result = subprocess.run(
        [sys.executable, "-m", "spikeport", "--version"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0 and result.stdout.strip() == f"spikeport {__version__}"
    result = subprocess.run(
        [sys.executable, "-m", "spikeport", "--help"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0 and "convert" in result.stdout
