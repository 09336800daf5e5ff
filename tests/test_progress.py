"""Progress: every conversion method, evaluation, training and code fitting says what it does, with totals;
a log gets a line per stage (not bar redraws); progress=False and --quiet are silent."""

import re

import pytest
import torch
from torch import nn

import spikeport as sp
from spikeport import progress
from spikeport.cli import main
from spikeport.data import ArrayDataset, resolved, sample_count
from spikeport.train import train_classifier


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Flatten(), nn.Linear(16, 12), nn.ReLU(), nn.Linear(12, 8), nn.ReLU(), nn.Linear(8, 3)
    )


@pytest.fixture
def data():
    g = torch.Generator().manual_seed(0)
    return torch.rand(300, 1, 4, 4, generator=g), torch.randint(0, 3, (300,), generator=g)


def log_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("spikeport: ")]


@pytest.mark.parametrize(
    "method, stage",
    [
        ("ecc", "collecting activation statistics (300 images)"),
        ("percentile", "collecting activation statistics (300 images)"),
        ("rmp", "balancing thresholds on the SNN, depth 2/2 (300 images)"),
        ("calibrated[calibration_limit=100]", "fitting depth 2/2 (100 images)"),
        ("calibrated[calibration_limit=100]", "fitting the weights into the read-out (400 steps)"),
        ("fs", "collecting activation statistics (300 images)"),
    ],
)
def test_every_method_reports_its_stages_with_totals(method, stage, data, capsys):
    sp.convert(mlp(), data, method)
    lines = log_lines(capsys.readouterr().err)
    assert lines[0] == f"spikeport: {method}: converting on 300 calibration samples"
    assert f"spikeport: {method}: {stage} ..." in lines
    assert re.fullmatch(rf"spikeport: {re.escape(method)}: converted in \d+\.\d s", lines[-1])
    # a log gets a start line and an end line per stage: never a bar's redraws
    assert all("\r" not in line and "it/s" not in line for line in lines)


def test_progress_off_is_silent(data, capsys):
    snn = sp.convert(mlp(), data, "calibrated[calibration_limit=50]", progress=False)
    sp.evaluate(snn, data, [1, 2], progress=False)
    sp.calibrate(mlp(), data, progress=False)
    assert capsys.readouterr().err == ""


def test_evaluation_reports_method_total_and_steps(data, capsys):
    snn = sp.convert(mlp(), data, "ecc", progress=False)
    sp.evaluate(snn, data, [2, 8], limit=120)
    lines = log_lines(capsys.readouterr().err)
    assert lines[0] == "spikeport: ecc: simulating T=8 (120 images) ..."
    assert re.fullmatch(r"spikeport: ecc: simulating T=8: 120 images in \d+\.\d s", lines[1])


def test_compare_labels_every_stage_by_its_method(data, capsys):
    sp.compare(mlp(), data, data, {"fast": "ecc", "paper": "rmp"}, [1, 4], limit=50)
    lines = log_lines(capsys.readouterr().err)
    labels = {line.split(":")[1].strip() for line in lines}
    assert labels == {"fast", "paper"}
    assert "spikeport: paper: simulating T=4 (50 images) ..." in lines


def test_an_outer_scope_keeps_its_name_and_can_silence_inner_ones(capsys):
    with progress.reporting("outer"):
        with progress.reporting("inner"):
            list(progress.track(range(3), "counting", 3, "step", size=lambda _: 1))
        with progress.reporting("inner", enabled=False):
            list(progress.track(range(3), "hidden", 3, "step", size=lambda _: 1))
    with progress.reporting("off", enabled=False), progress.reporting("on"):
        list(progress.track(range(3), "hidden too", 3, "step", size=lambda _: 1))
    list(progress.track(range(3), "outside any scope"))
    lines = log_lines(capsys.readouterr().err)
    assert lines[0] == "spikeport: outer: counting (3 steps) ..."
    assert len(lines) == 2 and "3 steps in" in lines[1]


def test_training_reports_each_epoch_with_its_loss(capsys):
    x, y = torch.rand(64, 4), torch.randint(0, 2, (64,))
    train_classifier(nn.Linear(4, 2), x, y, epochs=2, batch_size=16)
    lines = log_lines(capsys.readouterr().err)
    assert "spikeport: training: epoch 2/2 (4 batches) ..." in lines
    assert any(re.fullmatch(r"spikeport: training: epoch 2/2: mean loss \d+\.\d{4}", line) for line in lines)


def test_fit_fs_reports_each_start(tmp_path, capsys):
    assert (
        main(["fit-fs", "sigmoid", "--steps", "2", "--iterations", "5", "--out", str(tmp_path / "c.json")])
        == 0
    )
    lines = log_lines(capsys.readouterr().err)
    assert re.fullmatch(
        r"spikeport: fit-fs: fitting the K=2 code of sigmoid, start 1/\d \(5 steps\) \.\.\.", lines[0]
    )
    assert (
        main(
            [
                "fit-fs",
                "sigmoid",
                "--steps",
                "2",
                "--iterations",
                "5",
                "--out",
                str(tmp_path / "c.json"),
                "--quiet",
            ]
        )
        == 0
    )
    assert log_lines(capsys.readouterr().err) == []


def test_sample_counts_are_known_where_cheap(data):
    x, y = data
    dataset = ArrayDataset(x, y)
    assert sample_count(dataset) == 300 and sample_count(dataset, 40) == 40
    assert sample_count((x, y), 1000) == 300 and sample_count(x) == 300
    assert sample_count(torch.utils.data.DataLoader(dataset, batch_size=7)) == 300
    assert sample_count("mnist:test") is None  # a spec is counted once resolved
    assert resolved(dataset) is dataset


def test_calibration_reads_5000_samples_unless_told(capsys):
    x = torch.rand(5200, 16)
    model = nn.Sequential(nn.Linear(16, 4), nn.ReLU(), nn.Linear(4, 2))
    sp.convert(model, x, "ecc")
    sp.convert(model, x, "ecc", calibration_samples=None)
    lines = log_lines(capsys.readouterr().err)
    assert "spikeport: ecc: converting on 5000 calibration samples" in lines
    assert "spikeport: ecc: converting on 5200 calibration samples" in lines
