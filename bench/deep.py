"""Deep nets on real data: a ResNet-20 and a VGG trained here, converted with each method, one table.

Default: Fashion-MNIST (Debian package ``dataset-fashion-mnist``), padded from 28x28 to 32x32 so that VGG's
five poolings fit; a ResNet-20 and a half-width VGG-11. Both are the usual flavour (BatchNorm, biases; VGG
with max-pooling, so its SNN uses spiking max-pools). Training on 2 CPU cores is slow, so epochs are few
(say so with the figures); the trained weights are cached in ``--out`` and reused.

CIFAR-10 recipe, for users with the dataset (``cifar-10-batches-py``): ``--data cifar10:DIR`` trains ResNet-20
and VGG-16 as the conversion papers do (SGD 0.1, cosine schedule, crops and flips, 200 epochs; use a GPU:
``--device cuda``) and converts them the same way.

One table per net (accuracy, agreement, spikes, SOPs at every T and method), JSON and plots in ``--out``.
Run: python bench/deep.py [--data fashion-mnist] [--epochs N] [--test-limit 2000] [--nets resnet20,vgg11]
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
from spikeport.data.specs import parse_spec
from spikeport.models import resnet, vgg
from spikeport.options import split_specs
from spikeport.train import accuracy, train_classifier

NETS = {  # name -> builder(input channels)
    "resnet20": lambda channels: resnet(20, in_channels=channels),  # 16-32-64 channels, CIFAR stem
    "vgg11": lambda channels: vgg(11, in_channels=channels, width=32, hidden=256),  # half width: CPU budget
    "vgg16": lambda channels: vgg(16, in_channels=channels),
}
# Training recipe per dataset; command-line options override single entries.
RECIPES = {
    "fashion-mnist": {
        "nets": "resnet20,vgg11",
        "epochs": 10,
        "optimizer": "adamw",
        "lr": 2e-3,
        "augmentation": "crop",
    },
    "cifar10": {
        "nets": "resnet20,vgg16",
        "epochs": 200,
        "optimizer": "sgd",
        "lr": 0.1,
        "augmentation": "crop-flip",
    },
}


def load(spec: str, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(x, y) of a split; 28x28 images are padded to 32x32."""
    data = load_dataset(spec, split)
    x = F.pad(data.x, (2, 2, 2, 2)) if data.x.shape[-1] == 28 else data.x
    return x, data.y


def trained(name: str, x: torch.Tensor, y: torch.Tensor, args, out: Path) -> tuple[torch.nn.Module, dict]:
    """The net trained with the recipe, from the cache in ``out`` when it is there."""
    model = NETS[name](x.shape[1])
    stem = f"{name}-e{args.epochs}-{args.optimizer}-{args.augmentation}-s{args.seed}"
    path = out / f"{stem}.pt"
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
        lr=args.lr,
        weight_decay=5e-4,
        optimizer=args.optimizer,
        augmentation=args.augmentation,
        device=args.device,
        checkpoint=out / f"{stem}.checkpoint",
        seed=args.seed,
        progress=not args.quiet,
    )
    model.cpu()
    torch.save(model.state_dict(), path)
    return model.eval(), {"train_seconds": round(time.perf_counter() - start, 1), "weights": str(path)}


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="fashion-mnist", help="fashion-mnist or cifar10:DIR")
    parser.add_argument("--nets", help=f"comma-separated, from {', '.join(NETS)} (default: the recipe's)")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--optimizer", choices=["adamw", "sgd"])
    parser.add_argument("--lr", type=float)
    parser.add_argument("--augmentation", help="training augmentation (spikeport.train)")
    parser.add_argument("--train-limit", type=int, help="train on the first N training images only")
    parser.add_argument("--device", default="cpu", help="where to train (cpu or cuda)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train-only", action="store_true", help="train (or find cached) nets and stop")
    parser.add_argument("--methods", default="rmp,ecc,max[reset=soft],percentile")
    parser.add_argument("--timesteps", default="8,16,32,64,128,256")
    parser.add_argument("--test-limit", type=int, default=2000, help="test images simulated per method")
    parser.add_argument("--calibration-samples", type=int, default=500)
    parser.add_argument("--out", help="default: results/deep (Fashion-MNIST) or results/deep-DATASET")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    dataset = parse_spec(args.data)[0]
    if dataset not in RECIPES:
        parser.error(f"--data: no recipe for {dataset!r}; recipes: {', '.join(RECIPES)}")
    for key, value in RECIPES[dataset].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    unknown = set(args.nets.split(",")) - set(NETS)
    if unknown:
        parser.error(f"--nets: unknown {', '.join(sorted(unknown))}; known: {', '.join(NETS)}")
    if args.out is None:
        args.out = "results/deep" if dataset == "fashion-mnist" else f"results/deep-{dataset}"
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_arguments(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    timesteps = [int(t) for t in args.timesteps.split(",")]
    methods = split_specs(args.methods)
    x_train, y_train = load(args.data, "train")
    x_train, y_train = x_train[: args.train_limit], y_train[: args.train_limit]
    x_test, y_test = load(args.data, "test")
    summary = {}
    for name in args.nets.split(","):
        model, training = trained(name, x_train, y_train, args, out)
        ann_accuracy = accuracy(model, x_test, y_test)
        print(f"\n{name}: ANN test accuracy {100 * ann_accuracy:.2f}% on {len(x_test)} images ({training})")
        if args.train_only:
            continue
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
            "data": args.data,
            "ann_test_accuracy": ann_accuracy,
            "training": training,
            "recipe": {key: getattr(args, key) for key in ("epochs", "optimizer", "lr", "augmentation")},
            "seconds": comparison.seconds,
        }
    if summary:
        (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
