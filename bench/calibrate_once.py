"""Calibrating once for several methods: sp.calibrate's shared statistics against one calibration per method.

The demo CNN (trained and cached by `spikeport demo`, else trained here) calibrated on MNIST training images
for ecc, percentile and max: (a) each method's own sp.convert, (b) sp.calibrate once and each sp.convert with
statistics=. Both in turns in one run (medians); the networks of (a) and (b) are checked to be identical.
Run: python bench/calibrate_once.py [--samples 5000] [--repeats 3] [--json bench/results/calibrate_once.json]
"""

from __future__ import annotations

import argparse
import platform

import torch
from benchlib import interleaved_medians, save_json

import spikeport as sp
from spikeport.data import load_dataset
from spikeport.demo import demo_model

METHODS = ("ecc", "percentile", "max")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", default="bench/results/calibrate_once.json")
    args = parser.parse_args()
    model = demo_model(progress=False, log=lambda _: None)
    x = load_dataset("mnist", "train").x[: args.samples]

    def separately() -> list:
        return [sp.convert(model, x, method) for method in METHODS]

    def shared() -> list:
        statistics = sp.calibrate(model, x)
        return [sp.convert(model, x, method, statistics=statistics) for method in METHODS]

    same = all(
        torch.equal(a(x[:50], timesteps=8), b(x[:50], timesteps=8))
        for a, b in zip(separately(), shared(), strict=True)
    )
    seconds = interleaved_medians({"separately": separately, "shared": shared}, args.repeats)
    print(
        f"{platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads; "
        f"{args.samples} calibration images; methods {', '.join(METHODS)}\n"
    )
    print("| conversion of all three | seconds |\n|:---|---:|")
    for name, value in seconds.items():
        print(f"| {name} | {value:.2f} |")
    print(
        f"\nshared / separately: {seconds['shared'] / seconds['separately']:.2f}; identical networks: {same}"
    )
    save_json(args.json, {"samples": args.samples, "methods": METHODS, "seconds": seconds, "identical": same})


if __name__ == "__main__":
    main()
