"""The bench scripts' recipes that users run on data this machine lacks, on small generated files."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from helpers import write_cifar_dir

BENCH = Path(__file__).resolve().parents[1] / "bench"


def bench_module(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cifar10_recipe_trains_and_converts_resnet20_and_vgg16(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar_dir(folder, per_batch=4)
    deep = bench_module("deep")
    out = tmp_path / "out"
    deep.main(
        [
            *(
                "--data",
                f"cifar10:{folder}",
                "--epochs",
                "1",
                "--methods",
                "ecc,rmp[calibration_timesteps=2]",
            ),
            *("--timesteps", "2,4", "--test-limit", "3", "--calibration-samples", "4"),
            *("--out", str(out), "--quiet"),
        ]
    )
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary) == {"resnet20", "vgg16"}  # the recipe's nets
    for name, entry in summary.items():
        assert entry["recipe"] == {"epochs": 1, "optimizer": "sgd", "lr": 0.1, "augmentation": "crop-flip"}
        assert (out / f"{name}-e1-sgd-crop-flip-s0.pt").is_file()
        table = json.loads((out / f"{name}.json").read_text())
        assert set(table["evaluations"]) == {"ecc", "rmp[calibration_timesteps=2]"}


def test_deep_bench_refuses_unknown_datasets_and_nets(tmp_path, capsys):
    deep = bench_module("deep")
    for argv, message in [
        (["--data", "mnist"], "no recipe for 'mnist'"),
        (["--nets", "resnet21"], "unknown resnet21"),
    ]:
        with pytest.raises(SystemExit):
            deep.parse_arguments(argv)
        assert message in capsys.readouterr().err
