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


def test_peers_bench_counts_spikeport_spikes_as_evaluate_does():
    """The peers comparison's spike counts for a spikeport network are those of ``sp.evaluate``, and its
    wrong-image lists match its accuracy."""
    import torch
    from torch import nn

    import spikeport as sp

    peers = bench_module("peers")
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Flatten(), nn.Linear(12, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 3)
    )
    x, y = torch.rand(30, 12), torch.randint(0, 3, (30,))
    snn = sp.convert(model, x, "ecc")
    result = peers.measure(peers.simulating(snn), x, y, model(x).argmax(1).detach(), timed=False)
    evaluation = sp.evaluate(snn, (x, y), peers.TIMESTEPS, ann=model, progress=False)
    for t in peers.TIMESTEPS:
        assert result["spikes_per_image"][t] == pytest.approx(evaluation.spikes_per_image[t])
        assert 1 - len(result["wrong"][t]) / len(x) == pytest.approx(evaluation.accuracy[t])
    assert result["spikes_per_image"][max(peers.TIMESTEPS)] > 0


def test_peers_bench_spike_counter_reads_step_and_folded_layouts():
    import torch
    from torch import nn

    peers = bench_module("peers")
    layers = [nn.Identity(), nn.Identity()]
    per_call = peers.SpikeCounter(layers, lambda out, steps: out.sum())  # one call per step
    per_call.start(1, True)
    for step in range(3):
        for layer in layers:
            layer(torch.full((2, 4), float(step)))
    assert per_call.spikes().tolist() == [0.0, 16.0, 32.0]
    folded = peers.SpikeCounter(layers, lambda out, steps: out.reshape(-1, steps, out[0].numel()).sum((0, 2)))
    folded.start(3, True)  # [B * T, ...], sample-major: each layer called once for all steps
    counts = torch.tensor([0.0, 1.0, 2.0]).repeat(2).reshape(6, 1).expand(6, 4)
    for layer in layers:
        layer(counts)
    assert folded.spikes().tolist() == [0.0, 16.0, 32.0]
    folded.start(3, False)
    layers[0](counts)
    assert folded.spikes() is None


def test_peers_bench_mcnemar_p_values():
    peers = bench_module("peers")
    split = {"wrong": {8: [0, 1, 2, 3, 4]}}
    none_wrong = {"wrong": {8: []}}
    assert peers.paired_comparison(none_wrong, split, 8) == {"only_ours": 5, "only_peer": 0, "p": 2 / 32}
    assert peers.paired_comparison(split, split, 8)["p"] == 1.0
    even = peers.paired_comparison({"wrong": {8: [0, 1]}}, {"wrong": {8: [2, 3]}}, 8)
    assert (even["only_ours"], even["only_peer"], even["p"]) == (2, 2, 1.0)
