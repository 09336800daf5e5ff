"""Every failure of the `spikeport` command is one line on stderr with exit code 2, found before the work."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from tqdm.auto import tqdm

import spikeport as sp
import spikeport.demo
import spikeport.fs_fit
import spikeport.train
from spikeport.cli import main
from spikeport.errors import SaveFormatError, SpikeportError
from spikeport.fs_codes import SHIPPED_CODES, code_from_dict, fitted_codes, read_library, user_codes_dir
from spikeport.fs_fit import FitResult
from tests.helpers import Residual


def one_error_line(capsys) -> str:
    """The error message, after checking it is the only line on stderr and no traceback came with it."""
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("spikeport: error: "), err
    assert "Traceback" not in err
    return err[len("spikeport: error: ") :].strip()


@pytest.fixture
def data(tmp_path):
    g = np.random.default_rng(0)
    path = tmp_path / "d.npz"
    np.savez(path, x=g.random((12, 1, 8, 8), dtype=np.float32), y=g.integers(0, 5, 12))
    return f"npz:{path}"


@pytest.fixture
def weights(tmp_path):
    path = tmp_path / "w.pt"
    torch.save(Residual().state_dict(), path)
    return str(path)


@pytest.fixture
def network(tmp_path):
    x = torch.rand(12, 1, 8, 8)
    return str(sp.save(sp.convert(Residual().eval(), x, "rmp"), tmp_path / "net.spk"))


@pytest.fixture
def own_cache(tmp_path, monkeypatch):
    """A code library of this test's own: the shared cache must not keep the files it writes."""
    monkeypatch.setenv("SPIKEPORT_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def no_work(monkeypatch):
    """Each command's work fails the test if it starts: the checks must come first."""

    def started(*args, **kwargs):
        raise AssertionError("the work started before the arguments were checked")

    monkeypatch.setattr(sp, "convert", started)
    monkeypatch.setattr(sp, "evaluate", started)
    monkeypatch.setattr(sp, "compare", started)
    monkeypatch.setattr(spikeport.demo, "run_demo", started)
    monkeypatch.setattr(spikeport.train, "train_classifier", started)
    monkeypatch.setattr(spikeport.fs_fit, "fit_code", started)


def test_usage_errors_are_one_line(capsys):
    assert main(["convert", "tests.helpers:Residual", "-o", "x.spk"]) == 2  # no --data
    assert "--data" in one_error_line(capsys)


def test_unknown_device(data, weights, capsys, no_work):
    assert main(["convert", "tests.helpers:Residual", "--weights", weights, "--data", data]
                + ["--device", "bogus", "-o", "x.spk"]) == 2  # fmt: skip
    assert "'bogus'" in one_error_line(capsys)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_a_gpu(network, data, capsys, no_work):
    assert main(["evaluate", network, "--data", data, "--device", "cuda"]) == 2
    assert "--device cpu" in one_error_line(capsys)


def test_output_file_that_is_a_folder_fails_before_converting(tmp_path, data, weights, capsys, no_work):
    assert main(["convert", "tests.helpers:Residual", "--weights", weights, "--data", data]
                + ["-o", str(tmp_path)]) == 2  # fmt: skip
    assert "is a folder" in one_error_line(capsys)


@pytest.mark.parametrize("option", ["--json", "--plot"])
def test_output_under_a_file_fails_before_evaluating(tmp_path, network, data, option, capsys, no_work):
    (tmp_path / "taken").write_text("")
    assert main(["evaluate", network, "--data", data, option, str(tmp_path / "taken" / "ev")]) == 2
    assert "is a file" in one_error_line(capsys)


@pytest.mark.parametrize("command", ["compare", "demo"])
def test_output_folder_that_is_a_file_fails_before_the_work(tmp_path, data, command, capsys, no_work):
    taken = tmp_path / "taken"
    taken.write_text("")
    model = ["tests.helpers:Residual", "--data", data] if command == "compare" else []
    assert main([command, *model, "--out", str(taken)]) == 2
    assert "is a file" in one_error_line(capsys)


@pytest.mark.parametrize(
    "arguments",
    [
        ["demo", "--limit", "-5"],
        ["train", "tests.helpers:Residual", "--data", "D", "-o", "w.pt", "--epochs", "0"],
        ["train", "tests.helpers:Residual", "--data", "D", "-o", "w.pt", "--batch-size", "0"],
        ["train", "tests.helpers:Residual", "--data", "D", "-o", "w.pt", "--qcfs", "0"],
        ["convert", "tests.helpers:Residual", "--data", "D", "-o", "x.spk", "--steps", "-1"],
        ["convert", "tests.helpers:Residual", "--data", "D", "-o", "x.spk", "--calibration-samples", "0"],
        ["evaluate", "net.spk", "--data", "D", "--limit", "0"],
        ["compare", "tests.helpers:Residual", "--data", "D", "--calibration-samples", "-3"],
        ["fit-fs", "silu", "--steps", "8", "--iterations", "0"],
    ],
    ids=lambda arguments: f"{arguments[0]} {arguments[-2]}",
)
def test_counts_must_be_positive(arguments, data, capsys, no_work):
    arguments = [data if a == "D" else a for a in arguments]
    assert main(arguments) == 2
    message = one_error_line(capsys)
    assert arguments[-2] in message and "positive" in message


def test_a_progress_bar_is_closed_before_the_error(network, data, monkeypatch, capsys):
    def fails_midway(*args, **kwargs):
        bar = tqdm(total=10, desc="simulating", leave=False)
        bar.update(3)
        raise RuntimeError("CUDA out of memory")

    monkeypatch.setattr(sp, "evaluate", fails_midway)
    assert main(["evaluate", network, "--data", data]) == 2
    before, _, message = capsys.readouterr().err.rpartition("spikeport: error: ")
    assert before.endswith("\n") and message == "CUDA out of memory\n"
    assert not list(tqdm._instances)


def test_factory_without_weights_is_noted(tmp_path, data, capsys):
    assert (
        main(["convert", "tests.helpers:Residual", "--data", data, "-o", str(tmp_path / "x.spk"), "--quiet"])
        == 0
    )
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "has no --weights: converting its random initialisation" in err


def test_garbage_checkpoint_names_the_file(tmp_path, data, capsys, no_work):
    checkpoint = tmp_path / "ckpt.pt"
    checkpoint.write_bytes(b"not a checkpoint")
    assert main(["train", "tests.helpers:Residual", "--data", data, "--epochs", "1", "--quiet"]
                + ["--checkpoint", str(checkpoint), "-o", str(tmp_path / "w.pt")]) == 2  # fmt: skip
    assert str(checkpoint) in one_error_line(capsys)


@pytest.mark.parametrize("suffix", [".onnx", ".pt2", ".pt"])
def test_evaluate_of_a_model_file_says_convert_it_first(tmp_path, data, suffix, capsys):
    model = tmp_path / f"cnn{suffix}"
    model.write_bytes(b"junk")
    assert main(["evaluate", str(model), "--data", data]) == 2
    assert "spikeport convert" in one_error_line(capsys)


def test_suffixes_are_case_insensitive(tmp_path, data, capsys):
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 5), nn.ReLU(), nn.Linear(5, 5)).eval()
    path = tmp_path / "m.PT2"
    torch.export.save(torch.export.export(model, (torch.rand(2, 1, 8, 8),)), path)
    assert main(["convert", str(path), "--data", data, "-o", str(tmp_path / "x.spk")]) == 0


def test_fit_fs_refuses_a_corrupt_code_library_naming_it(own_cache, capsys):
    library = user_codes_dir() / "tanh.json"
    library.parent.mkdir(parents=True, exist_ok=True)
    library.write_text("{not json")
    assert main(["fit-fs", "tanh", "--steps", "3", "--iterations", "5"]) == 2
    message = one_error_line(capsys)
    assert str(library) in message and "delete it" in message
    with pytest.raises(SaveFormatError, match="tanh.json"):
        fitted_codes("tanh")


def test_a_user_code_overrides_a_shipped_one_only_when_it_fits_as_well(own_cache):
    shipped = read_library(SHIPPED_CODES)["silu"][8]
    library = user_codes_dir() / "silu.json"
    library.parent.mkdir(parents=True, exist_ok=True)
    other = dict(shipped, code=dict(shipped["code"], offset=shipped["code"]["offset"] + 1.0))
    worse = dict(other, rms_error=shipped["rms_error"] * 2)
    library.write_text(json.dumps({"silu": {"8": worse, "3": worse}}))
    codes = fitted_codes("silu")
    assert codes[8].offset == shipped["code"]["offset"] and 3 in codes  # shipped kept, new K added
    library.write_text(json.dumps({"silu": {"8": dict(other, rms_error=shipped["rms_error"])}}))
    assert fitted_codes("silu")[8].offset == shipped["code"]["offset"] + 1.0


def test_fit_fs_notes_a_fit_worse_than_the_shipped_code(own_cache, monkeypatch, capsys):
    shipped = read_library(SHIPPED_CODES)["silu"][8]
    worse = FitResult("silu", 8, code_from_dict(shipped["code"]), 1.0, 1.0, -8.0, 8.0)
    monkeypatch.setattr(spikeport.fs_fit, "fit_code", lambda *args, **kwargs: worse)
    assert main(["fit-fs", "silu", "--steps", "8", "--iterations", "1"]) == 0
    assert "worse than the shipped code" in capsys.readouterr().out
    assert fitted_codes("silu")[8] == code_from_dict(shipped["code"])


@pytest.mark.parametrize("damage", ["truncate", "header"])
def test_a_damaged_network_file_is_one_line(network, data, damage, capsys):
    payload = Path(network).read_bytes()
    Path(network).write_bytes(payload[:20] if damage == "truncate" else payload[:8] + b"[" + payload[9:])
    assert main(["evaluate", network, "--data", data]) == 2
    assert network in one_error_line(capsys)


def test_an_unexpected_error_is_one_line_and_points_to_debug(network, data, monkeypatch, capsys):
    def fails(*args, **kwargs):
        raise KeyError("graph")

    monkeypatch.setattr(sp, "load", fails)
    assert main(["evaluate", network, "--data", data]) == 2
    assert "--debug" in one_error_line(capsys)
    with pytest.raises(KeyError):
        main(["--debug", "evaluate", network, "--data", data])
    with pytest.raises(KeyError):
        main(["evaluate", network, "--data", data, "--debug"])


def test_debug_shows_the_traceback_of_a_spikeport_error(tmp_path, data):
    with pytest.raises(SpikeportError):
        main(["--debug", "evaluate", str(tmp_path / "missing.spk"), "--data", data])


def test_a_missing_package_names_what_to_install(network, data, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert main(["evaluate", network, "--data", data, "--quiet", "--plot", str(tmp_path / "ev.png")]) == 2
    assert "pip install matplotlib" in one_error_line(capsys)


def test_interrupt_is_one_line_with_exit_code_130(network, data, monkeypatch, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(sp, "evaluate", interrupted)
    assert main(["evaluate", network, "--data", data]) == 130
    err = capsys.readouterr().err
    assert err == "spikeport: interrupted\n"
