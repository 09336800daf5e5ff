"""Simulation speed: SNN time per image at T steps against T x the ANN's forward time per image.

Synthetic inputs (uniform noise) and untrained weights: simulation cost does not depend on what the
network has learned, only on its shape (spike recording adds a small data-dependent part).
Run: python bench/simulate.py [--timesteps 64] [--batch 100] [--json bench/results/simulate.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch
from torch import nn

import spikeport as sp
from spikeport.models import mnist_cnn, vgg6


def interleaved_medians(functions: dict, repeats: int) -> dict[str, float]:
    """Median wall time of each function, run in turns so that all see the same machine conditions."""
    times: dict[str, list[float]] = {name: [] for name in functions}
    for fn in functions.values():
        fn()  # warm-up
    for _ in range(repeats):
        for name, fn in functions.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def measure(name: str, model: nn.Module, shape: tuple[int, ...], batch: int, timesteps: int) -> dict:
    torch.manual_seed(0)
    x = torch.rand(batch, *shape)
    snn = sp.convert(model, x, "percentile")

    @torch.no_grad()
    def ann_t_times() -> None:  # T forward passes: the dense cost the SNN is compared with
        for _ in range(timesteps):
            model(x)

    medians = interleaved_medians(
        {
            "ann": ann_t_times,
            "snn": lambda: snn.simulate(x, timesteps),
            "recording": lambda: snn.simulate(x, timesteps, record=True),
        },
        repeats=5,
    )
    ann = medians["ann"] / (timesteps * batch)
    plain, recorded = medians["snn"] / batch, medians["recording"] / batch
    return {
        "network": name,
        "input": list(shape),
        "batch": batch,
        "timesteps": timesteps,
        "ann_ms_per_image": 1e3 * ann,
        "snn_ms_per_image": 1e3 * plain,
        "snn_recording_ms_per_image": 1e3 * recorded,
        "ratio": plain / (timesteps * ann),
        "ratio_recording": recorded / (timesteps * ann),
        "ann_macs_per_image": snn.ann_macs_per_image,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timesteps", type=int, default=64)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--json", default="bench/results/simulate.json")
    args = parser.parse_args()
    cases = [
        ("demo CNN (MNIST shape)", mnist_cnn().eval(), (1, 28, 28)),
        ("VGG-style 6 conv (32-64-128)", vgg6().eval(), (3, 32, 32)),
        ("same VGG with max-pools", vgg6(pool="max").eval(), (3, 32, 32)),
    ]
    rows = [measure(name, model, shape, args.batch, args.timesteps) for name, model, shape in cases]
    print(
        f"CPU threads: {torch.get_num_threads()}, torch {torch.__version__}, {platform.processor() or platform.machine()}"
    )
    print(
        f"batch {args.batch}, T={args.timesteps}; ratio = SNN time per image / (T x ANN forward time per image)\n"
    )
    print("| network | ANN ms/img | SNN ms/img | ratio | ratio with spike/SOP recording |")
    print("|---|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['network']} | {r['ann_ms_per_image']:.3f} | {r['snn_ms_per_image']:.2f} | {r['ratio']:.2f} | "
            f"{r['ratio_recording']:.2f} |"
        )
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"torch": torch.__version__, "threads": torch.get_num_threads(), "machine": platform.machine()}
    path.write_text(json.dumps({"meta": meta, "results": rows}, indent=2))
    print(f"\nJSON: {path}")


if __name__ == "__main__":
    main()
