"""Deep nets on real data: a ResNet-20 and a VGG-11 trained on Fashion-MNIST here, converted with each method.

Fashion-MNIST (Debian package ``dataset-fashion-mnist``) is padded from 28x28 to 32x32 so that VGG-11's five
poolings fit. Both nets are the usual flavour (BatchNorm, biases; VGG with max-pooling, so its SNN uses spiking
max-pools). Training on 2 CPU cores is slow, so epochs are few by default (say so with the figures); the
trained weights are cached in ``--out`` and reused. One table per net (accuracy, agreement, spikes, SOPs at
every T and method) plus one summary table; JSON and plots in ``--out``.
Run: python bench/deep.py [--epochs 2] [--test-limit 500] [--nets resnet20,vgg11] [--out results/deep]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import spikeport as sp
from spikeport.data import load_dataset
from spikeport.models import resnet, vgg
from spikeport.options import split_specs
from spikeport.train import accuracy, train_classifier

NETS = {
    "resnet20": lambda: resnet(20, in_channels=1),  # 16-32-64 channels, CIFAR stem
    "vgg11": lambda: vgg(11, in_channels=1, width=32, hidden=256),  # half width: CPU budget
}


def padded(split: str) -> tuple[torch.Tensor, torch.Tensor]:
    data = load_dataset("fashion-mnist", split)
    return F.pad(data.x, (2, 2, 2, 2)), data.y


def trained(name: str, x: torch.Tensor, y: torch.Tensor, args, out: Path) -> tuple[torch.nn.Module, dict]:
    """The net trained with this script's recipe, from the cache in ``out`` when it is there."""
    model = NETS[name]()
    path = out / f"{name}-e{args.epochs}-s{args.seed}.pt"
    if path.is_file():
        model.load_state_dict(torch.load(path, weights_only=True))
        return model.eval(), {"cached": str(path)}
    start = time.perf_counter()
    train_classifier(
        model,
        x,
        y,
        epochs=args.epochs,
        batch_size=128,
        lr=2e-3,
        weight_decay=5e-4,
        seed=args.seed,
        progress=not args.quiet,
    )
    torch.save(model.state_dict(), path)
    return model.eval(), {"train_seconds": round(time.perf_counter() - start, 1), "weights": str(path)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nets", default="resnet20,vgg11")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--methods", default="rmp,ecc,max[reset=soft],percentile")
    parser.add_argument("--timesteps", default="8,16,32,64,128,256")
    parser.add_argument("--test-limit", type=int, default=500, help="test images simulated per method")
    parser.add_argument("--calibration-samples", type=int, default=500)
    parser.add_argument("--out", default="results/deep")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    timesteps = [int(t) for t in args.timesteps.split(",")]
    methods = split_specs(args.methods)
    x_train, y_train = padded("train")
    x_test, y_test = padded("test")
    summary = {}
    for name in args.nets.split(","):
        model, training = trained(name, x_train, y_train, args, out)
        ann_accuracy = accuracy(model, x_test, y_test)
        print(f"\n{name}: ANN test accuracy {100 * ann_accuracy:.2f}% on {len(x_test)} images ({training})")
        comparison = sp.compare(
            model,
            x_train,
            (x_test, y_test),
            methods,
            timesteps,
            calibration_samples=args.calibration_samples,
            limit=args.test_limit,
            progress=not args.quiet,
            log=print,
        )
        print(comparison.to_markdown())
        comparison.to_json(out / f"{name}.json")
        comparison.plot(out / f"{name}.png")
        summary[name] = {
            "ann_test_accuracy": ann_accuracy,
            "training": training,
            "seconds": comparison.seconds,
        }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
