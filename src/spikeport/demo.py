"""`spikeport demo`: MNIST end to end — train (cached), convert five ways, measure every T, plot."""

from __future__ import annotations

import time
from pathlib import Path

import torch

from spikeport.calibration import DEFAULT_CALIBRATION_SAMPLES
from spikeport.compare import Comparison, compare
from spikeport.convert import DEFAULT_METHOD
from spikeport.data import cache_dir, load_dataset
from spikeport.models import mnist_cnn
from spikeport.train import accuracy, train_classifier

DEMO_TIMESTEPS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
# Bump when the recipe changes, so a stale cached model is never reused.
RECIPE = {"version": 1, "model": "mnist_cnn(16,32)", "epochs": 4, "lr": 5e-3, "batch_size": 64, "seed": 0}
METHODS = {  # label -> method spec: the default, the classic rate methods, and a temporal code
    "default: ecc, channel-wise, 4-bit spikes": DEFAULT_METHOD,
    "ecc": "ecc",
    "rmp": "rmp",
    "percentile 99.9": "percentile",
    "fs (temporal code)": "fs",
}


def demo_model(progress: bool = True, log=print) -> torch.nn.Module:
    """The demo CNN trained on MNIST with RECIPE; trained once, then loaded from the cache."""
    path = cache_dir() / "models" / f"mnist_cnn-v{RECIPE['version']}-seed{RECIPE['seed']}.pt"
    model = mnist_cnn()
    if path.is_file():
        model.load_state_dict(torch.load(path, weights_only=True))
        log(f"loaded the trained demo CNN from {path}")
        return model.eval()
    train = load_dataset("mnist", split="train")
    log(
        f"training the demo CNN on {len(train)} MNIST images ({RECIPE['epochs']} epochs; cached afterwards)..."
    )
    start = time.perf_counter()
    train_classifier(
        model,
        train.x,
        train.y,
        epochs=RECIPE["epochs"],
        lr=RECIPE["lr"],
        batch_size=RECIPE["batch_size"],
        seed=RECIPE["seed"],
        progress=progress,
    )
    log(f"trained in {time.perf_counter() - start:.0f} s")
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path)
    return model


def default_output() -> Path:
    """Where the demo writes unless told: the cache folder, so that a run in a checkout leaves it clean."""
    return cache_dir() / "demo"


def run_demo(
    out_dir: str | Path | None = None,
    *,
    limit: int | None = None,
    calibration_samples: int = DEFAULT_CALIBRATION_SAMPLES,
    timesteps: tuple[int, ...] = DEMO_TIMESTEPS,
    progress: bool = True,
    log=print,
) -> Comparison:
    """Run the demo and write results to ``out_dir`` (default: ``default_output()``); returns the comparison."""
    out_dir = Path(out_dir) if out_dir is not None else default_output()
    torch.manual_seed(0)
    model = demo_model(progress, log)
    test = load_dataset("mnist", split="test")
    if limit:
        test = test.subset(limit)
    log(f"ANN test accuracy: {100 * accuracy(model, test.x, test.y):.2f}% on {len(test)} images")
    calibration = load_dataset("mnist", split="train").subset(calibration_samples)
    comparison = compare(model, calibration, test, METHODS, timesteps, progress=progress, log=log)
    json_path = comparison.to_json(out_dir / "comparison.json")
    plot = comparison.plot(out_dir / "accuracy.png")
    table = comparison.to_markdown()
    (out_dir / "results.md").write_text(table)
    log("\n" + table)
    log(f"plot: {plot}\ntable: {out_dir / 'results.md'}\nJSON: {json_path}")
    return comparison
