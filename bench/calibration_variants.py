"""Variants of ``calibrated`` judged on held-out data first, the test set second.

Issue 7's bars are single accuracies at one T on 10,000 test images, where the recipes differ by a few images
(one image is 0.01 points; the binomial standard error at 99 % is about 0.1). Picking a variant by its test
figure fits the test set. This bench measures each variant's disagreement with the ANN on held-out images
first: training images 50,000..59,999, which calibration never sees (it uses the first 5,000, as
``bench/peers.py`` does; the ANN trained on them, so their ANN accuracy is not the test's, but disagreement
measures what conversion loses). A variant earns a place as a default only where it wins there, on more
than one net, by more than a few images.

Nets and data are ``bench/peers.py``'s (``demo``: the demo CNN on MNIST; ``fashion-cnn``,
``fashion-vgg-bn-max``: bench/low_latency.py's Fashion-MNIST nets, trained and cached there if missing).
Run: python bench/calibration_variants.py [--net demo] [--variants "calibrated;calibrated[weights=false]"]
     [--json bench/results/calibration_variants.json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from peers import NETS, TIMESTEPS, data, measure, simulating, trained_net

import spikeport as sp
from spikeport.data import load_dataset

HELD_OUT = slice(50000, 60000)  # training images that calibration (the first 5,000) never uses
DEFAULT_VARIANTS = (
    "calibrated",
    "calibrated[calibration_limit=5000]",
    "calibrated[weights=false]",
)


def images(net: str):
    """(calibration images, held-out images and labels, test images and labels): ``bench/peers.py``'s
    calibration and test images, and the held-out training images."""
    calibration, x, y = data(net, limit=10000)
    train = load_dataset(NETS[net][0], "train")
    return calibration, (train.x[HELD_OUT].reshape(-1, 1, 28, 28), train.y[HELD_OUT]), (x, y)


def evaluated(snn, splits: dict, references: dict) -> dict:
    """``peers.measure`` of the SNN on every split (accuracy and agreement with the ANN at T = 1..32)."""
    simulate = simulating(snn)
    return {name: measure(simulate, x, y, references[name], timed=False) for name, (x, y) in splits.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--net", default="demo", choices=list(NETS))
    parser.add_argument("--variants", default=";".join(DEFAULT_VARIANTS), help="method specs, ';'-separated")
    parser.add_argument("--json", default="bench/results/calibration_variants.json")
    args = parser.parse_args()
    torch.manual_seed(0)
    model = trained_net(args.net)
    calibration, held_out, test = images(args.net)
    splits = {"held-out": held_out, "test": test}
    with torch.no_grad():
        references = {name: model(x).argmax(1) for name, (x, _) in splits.items()}
    print(
        f"{args.net}: ANN accuracy "
        + ", ".join(
            f"{name} {float((references[name] == y).float().mean()) * 100:.2f} %"
            for name, (_, y) in splits.items()
        )
    )
    results = {}
    for spec in args.variants.split(";"):
        start = time.perf_counter()
        snn = sp.convert(model, calibration, spec)
        seconds = time.perf_counter() - start
        results[spec] = {**evaluated(snn, splits, references), "convert_seconds": seconds}
    print_table(results, {name: len(x) for name, (x, _) in splits.items()})
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps({"net": args.net, "variants": results}, indent=2))
    print(f"JSON: {args.json}")


def print_table(results: dict, sizes: dict[str, int]) -> None:
    """Images on which the SNN disagrees with the ANN (held-out, then test), and test accuracy %."""
    columns = " | ".join(f"T={t}" for t in TIMESTEPS)
    print(f"\n| variant | measure | {columns} | convert s |")
    print("|:---|:---|" + "---:|" * (len(TIMESTEPS) + 1))
    for spec, r in results.items():
        rows = [
            (
                f"disagreements, {name}",
                [round((1 - r[name]["agreement"][t]) * sizes[name]) for t in TIMESTEPS],
            )
            for name in sizes
        ]
        rows.append(("accuracy %, test", [f"{r['test']['accuracy'][t] * 100:.2f}" for t in TIMESTEPS]))
        for i, (measure_name, cells) in enumerate(rows):
            convert = f"{r['convert_seconds']:.0f}" if i == 0 else ""
            print(
                f"| {spec if i == 0 else ''} | {measure_name} | {' | '.join(map(str, cells))} | {convert} |"
            )


if __name__ == "__main__":
    main()
