"""Low latency on real data: calibrated conversion and QCFS-trained nets at T = 1..32 (Fashion-MNIST).

Nets trained here (cached in --out): the demo CNN layout (conv-ReLU-avgpool x2, linear), a small VGG-style net
with BatchNorm and max-pooling, and the demo CNN layout trained with QCFS activations (L = 4 and 8,
``sp.qcfs.prepare``). Plain nets are converted with ``calibrated`` (and, for reference, without its weight
calibration, without threshold search and weights, and with ``ecc``); QCFS nets with ``qcfs``. Accuracy and
agreement on the 10,000 test images.
Run: python bench/low_latency.py [--epochs 5] [--limit 10000] [--out results/low-latency] [--methods "A;B"]
[--device cuda] (nets train on the CPU; with --device they are converted and evaluated there)
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from devices import describe, exact_float32, synchronize
from torch import nn

import spikeport as sp
from spikeport.data import load_dataset
from spikeport.models import mnist_cnn
from spikeport.train import accuracy, train_classifier

TIMESTEPS = (1, 2, 4, 8, 16, 32)


def vgg_bn_max(classes: int = 10) -> nn.Sequential:
    """Two stages of (conv-BN-ReLU) x 2 + max-pool, then a linear read-out: 28x28 grey input."""
    layers: list[nn.Module] = []
    channels = 1
    for width in (32, 64):
        for _ in range(2):
            layers += [nn.Conv2d(channels, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU()]
            channels = width
        layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(64 * 7 * 7, classes))


NETS = {
    "cnn": (mnist_cnn, None),
    "vgg-bn-max": (vgg_bn_max, None),
    "cnn-qcfs4": (mnist_cnn, 4),
    "cnn-qcfs8": (mnist_cnn, 8),
}
METHODS = {
    None: [
        "calibrated",
        "calibrated[timesteps=4]",
        "calibrated[weights=false]",
        "calibrated[timesteps=4,weights=false]",
        "calibrated[search=false,pool_before_neurons=false,weights=false]",
        "ecc",
    ],
    4: ["qcfs"],
    8: ["qcfs"],
}


def trained(
    name: str, train, epochs: int, out: Path, dataset: str = "fashion-mnist"
) -> tuple[nn.Module, float]:
    factory, levels = NETS[name]
    torch.manual_seed(0)
    model = factory()
    if levels is not None:
        model = sp.qcfs.prepare(model, levels=levels, threshold=2.0)
    path = (
        out / f"{name}-e{epochs}.pt" if dataset == "fashion-mnist" else out / f"{dataset}-{name}-e{epochs}.pt"
    )
    if path.is_file():
        model.load_state_dict(torch.load(path, weights_only=True))
        return model.eval(), 0.0
    start = time.perf_counter()
    x = train.x.reshape(-1, 1, 28, 28)
    train_classifier(model, x, train.y, epochs=epochs, lr=2e-3, seed=0, progress=False)
    torch.save(model.state_dict(), path)
    return model.eval(), time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--limit", type=int, default=10000)
    parser.add_argument("--nets", default=",".join(NETS))
    parser.add_argument("--data", default="fashion-mnist", choices=("fashion-mnist", "mnist"))
    parser.add_argument("--out", default="results/low-latency")
    parser.add_argument("--device", default="cpu", help="where nets are converted and evaluated")
    parser.add_argument(
        "--methods", help="method specs for the plain nets, separated by semicolons (default: all of METHODS)"
    )
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    train = load_dataset(args.data, "train")
    test = load_dataset(args.data, "test").subset(args.limit)
    x_test = test.x.reshape(-1, 1, 28, 28)
    calibration = train.x[:5000].reshape(-1, 1, 28, 28)
    exact_float32(args.device)
    results: dict = {"device": describe(args.device), "nets": {}}
    print(f"converting and evaluating on {results['device']}")
    rows = []
    for name in args.nets.split(","):
        model, seconds = trained(name, train, args.epochs, out, args.data)
        model.to(args.device)
        ann = accuracy(model, x_test, test.y)
        print(f"{name}: ANN {100 * ann:.2f}% ({'cached' if not seconds else f'trained in {seconds:.0f} s'})")
        results["nets"][name] = {"ann_accuracy": ann, "methods": {}}
        levels = NETS[name][1]
        specs = args.methods.split(";") if args.methods and levels is None else METHODS[levels]
        for spec in specs:
            start = time.perf_counter()
            snn = sp.convert(model, calibration, spec)
            synchronize(args.device)
            converted = time.perf_counter() - start
            ev = sp.evaluate(snn, (x_test, test.y), TIMESTEPS, ann=model, progress=False)
            results["nets"][name]["methods"][spec] = {
                "convert_seconds": converted,
                "accuracy": ev.accuracy,
                "agreement": ev.agreement,
            }
            cells = " | ".join(
                f"{100 * ev.accuracy[t]:.2f} ({100 * (ev.accuracy[t] - ann):+.2f}; {100 * ev.agreement[t]:.1f})"
                for t in TIMESTEPS
            )
            rows.append(f"| {name} | {100 * ann:.2f} | {spec} | {converted:.1f} | {cells} |")
            print(rows[-1], flush=True)
    header = (
        "| net | ANN % | method | convert s | "
        + " | ".join(f"T={t}: acc (Δ; agr)" for t in TIMESTEPS)
        + " |\n|:---|---:|:---|---:|"
        + "---:|" * len(TIMESTEPS)
    )
    table = header + "\n" + "\n".join(rows)
    print("\n" + table)
    (out / "results.md").write_text(table + "\n")
    (out / "results.json").write_text(json.dumps(results, indent=2))
    print(f"table: {out / 'results.md'}, JSON: {out / 'results.json'}")


if __name__ == "__main__":
    main()
