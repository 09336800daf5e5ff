"""The zoo: conversion methods on small networks that differ the ways real networks differ (real data).

Nine nets, built here and trained here on the first 50,000 training images of MNIST or Fashion-MNIST (cached in
--out): module and functional ReLUs, BatchNorm before and after the activation, residual additions with and
without a ReLU after them, strided convs, max-, average- and adaptive pooling, depthwise convs, wide and narrow,
shallow and deep (a ResNet-20 and a 6-conv plain net), biases on and off. Every method converts every net,
calibrating on the first 2,000 training images, and is measured on held-out images: the last 10,000 training
images (MNIST's validation split), which no net trained on. Methods and defaults are chosen on these figures;
the test set is for reporting once they are chosen (``--split test``).

Per net and method: agreement with the ANN at T = 1, 2, 4, 8, 16, 32, spikes per image at T = 32, conversion
time; then the worst case over the zoo per method and T.
Run: python bench/zoo.py [--data mnist] [--nets all] [--methods "rmp;ecc;percentile;calibrated"]
     [--limit 2000] [--epochs 2] [--split held-out|test] [--out results/zoo] [--json bench/results/zoo.json]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from benchlib import save_json
from torch import nn

import spikeport as sp
from spikeport.data import load_dataset
from spikeport.models import resnet20
from spikeport.train import accuracy, train_classifier

TIMESTEPS = (1, 2, 4, 8, 16, 32)
METHODS = "rmp;ecc;percentile;calibrated"
TRAINING_IMAGES = 50_000  # the rest of the training split is held out
CALIBRATION_IMAGES = 2_000


class FunctionalCNN(nn.Module):
    """ReLUs as ``F.relu``, average pooling, an adaptive pool before the read-out; biases on."""

    def __init__(self):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(1, 16, 5, padding=2), nn.Conv2d(16, 32, 5, padding=2)
        self.fc = nn.Linear(32 * 4 * 4, 10)

    def forward(self, x):
        x = F.avg_pool2d(F.relu(self.conv1(x)), 2)
        x = F.avg_pool2d(F.relu(self.conv2(x)), 2)
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 4), 1))


class SmallResidual(nn.Module):
    """A strided stem, BN, one residual block with a ReLU after its addition and one without, adaptive pooling."""

    def __init__(self, width: int = 16):
        super().__init__()
        self.stem = nn.Conv2d(1, width, 3, stride=2, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(width)
        self.a1, self.a2 = nn.Conv2d(width, width, 3, padding=1), nn.Conv2d(width, width, 3, padding=1)
        self.b1, self.b2 = nn.Conv2d(width, width, 3, padding=1), nn.Conv2d(width, width, 3, padding=1)
        self.fc = nn.Linear(width, 10)

    def forward(self, x):
        x = F.relu(self.bn(self.stem(x)))
        x = F.relu(x + self.a2(F.relu(self.a1(x))))  # a ReLU after the addition
        x = x + self.b2(F.relu(self.b1(x)))  # none: the read-out sees the sum
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def mlp() -> nn.Module:
    """Shallow and wide."""
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 10))


def cnn_bn_before() -> nn.Module:
    """conv-BN-ReLU-max-pool, convs without biases."""
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1, bias=False), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(64 * 7 * 7, 10),
    )  # fmt: skip


def cnn_bn_after() -> nn.Module:
    """conv-ReLU-BN-average-pool: the BN after the activation folds into the next layer."""
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.BatchNorm2d(32), nn.AvgPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.BatchNorm2d(64), nn.AvgPool2d(2),
        nn.Flatten(), nn.Linear(64 * 7 * 7, 10),
    )  # fmt: skip


def depthwise() -> nn.Module:
    """MobileNet-style: a strided stem, then depthwise 3x3 + pointwise 1x1 convs with BN, adaptive pooling."""

    def separable(channels: int, out: int, stride: int) -> list[nn.Module]:
        return [
            nn.Conv2d(channels, channels, 3, stride, 1, groups=channels, bias=False), nn.BatchNorm2d(channels),
            nn.ReLU(), nn.Conv2d(channels, out, 1, bias=False), nn.BatchNorm2d(out), nn.ReLU(),
        ]  # fmt: skip

    return nn.Sequential(
        nn.Conv2d(1, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
        *separable(16, 32, 1), *separable(32, 64, 2), *separable(64, 64, 1),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10),
    )  # fmt: skip


def narrow_deep() -> nn.Module:
    """Six 3x3 convs of 8-16 channels, strided instead of pooled, no biases anywhere."""
    layers: list[nn.Module] = []
    channels = 1
    for out, stride in ((8, 1), (8, 2), (16, 1), (16, 2), (16, 1), (16, 1)):
        layers += [nn.Conv2d(channels, out, 3, stride, 1, bias=False), nn.ReLU()]
        channels = out
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(16 * 7 * 7, 10, bias=False))


NETS = {
    "mlp": mlp,
    "cnn-functional": FunctionalCNN,
    "cnn-bn-before": cnn_bn_before,
    "cnn-bn-after": cnn_bn_after,
    "residual-small": SmallResidual,
    "depthwise": depthwise,
    "narrow-deep": narrow_deep,
    "resnet20": lambda: resnet20(num_classes=10, in_channels=1, width=8),
    "wide-cnn": lambda: sp.models.mnist_cnn((64, 128)),
}


def trained(name: str, dataset: str, train, epochs: int, out: Path) -> tuple[nn.Module, float]:
    torch.manual_seed(0)
    model = NETS[name]()
    path = out / f"{dataset}-{name}-e{epochs}.pt"
    if path.is_file():
        model.load_state_dict(torch.load(path, weights_only=True))
        return model.eval(), 0.0
    start = time.perf_counter()
    x, y = train.x[:TRAINING_IMAGES].reshape(-1, 1, 28, 28), train.y[:TRAINING_IMAGES]
    train_classifier(model, x, y, epochs=epochs, lr=2e-3, seed=0, progress=False)
    torch.save(model.state_dict(), path)
    return model.eval(), time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="mnist", choices=("mnist", "fashion-mnist"))
    parser.add_argument("--nets", default=",".join(NETS))
    parser.add_argument("--methods", default=METHODS, help="method specs separated by semicolons")
    parser.add_argument("--limit", type=int, default=2000, help="evaluation images")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--split", default="held-out", choices=("held-out", "test"))
    parser.add_argument("--out", default="results/zoo")
    parser.add_argument("--json", default="bench/results/zoo.json")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    train = load_dataset(args.data, "train")
    if args.split == "held-out":
        x, y = train.x[TRAINING_IMAGES:], train.y[TRAINING_IMAGES:]
    else:
        test = load_dataset(args.data, "test")
        x, y = test.x, test.y
    x, y = x[: args.limit].reshape(-1, 1, 28, 28), y[: args.limit]
    calibration = train.x[:CALIBRATION_IMAGES].reshape(-1, 1, 28, 28)
    methods = [m.strip() for m in args.methods.split(";") if m.strip()]
    results: dict = {"data": args.data, "split": args.split, "images": len(x), "nets": {}}
    print(
        "| net | ANN % | method | "
        + " | ".join(f"T={t}" for t in TIMESTEPS)
        + " | spikes/img T=32 | convert s |"
    )
    print("|:---|---:|:---|" + "---:|" * (len(TIMESTEPS) + 2))
    for name in args.nets.split(","):
        model, seconds = trained(name, args.data, train, args.epochs, out)
        ann = accuracy(model, x, y)
        entry = results["nets"][name] = {"ann_accuracy": ann, "train_seconds": seconds, "methods": {}}
        for spec in methods:
            start = time.perf_counter()
            snn = sp.convert(model, calibration, spec)
            converted = time.perf_counter() - start
            ev = sp.evaluate(snn, (x, y), list(TIMESTEPS), ann=model, progress=False)
            entry["methods"][spec] = {
                "agreement": ev.agreement,
                "accuracy": ev.accuracy,
                "spikes_per_image": ev.spikes_per_image,
                "convert_seconds": converted,
            }
            cells = " | ".join(f"{100 * ev.agreement[t]:.2f}" for t in TIMESTEPS)
            print(
                f"| {name} | {100 * ann:.2f} | {spec} | {cells} | {ev.spikes_per_image[32] / 1e3:.1f}k | "
                f"{converted:.1f} |",
                flush=True,
            )
    print("\nWorst agreement % over the zoo (the net where it happens):\n")
    print("| method | " + " | ".join(f"T={t}" for t in TIMESTEPS) + " |")
    print("|:---|" + "---:|" * len(TIMESTEPS))
    worst: dict = {}
    for spec in methods:
        cells = []
        for t in TIMESTEPS:
            net, value = min(
                ((n, e["methods"][spec]["agreement"][t]) for n, e in results["nets"].items()),
                key=lambda p: p[1],
            )
            worst.setdefault(spec, {})[t] = {"net": net, "agreement": value}
            cells.append(f"{100 * value:.2f} ({net})")
        print(f"| {spec} | " + " | ".join(cells) + " |")
    results["worst"] = worst
    save_json(Path(args.json), results)


if __name__ == "__main__":
    main()
