"""Simulation time on a loaded machine: the default thread settings against one thread, with and without a
busy process on one core, in one run (synthetic data).

A laptop or a shared node rarely has every core free. Each configuration runs in a fresh process (OpenMP reads
its settings when torch loads): ``ecc`` on the demo CNN's layout with random weights, calibrated and simulated
on random 28x28 images (synthetic: speed only), 300 images at T = 64 in batches of 100, timed after a warm-up
(median of --repeats). The competing load is a Python busy loop pinned to the last core (``taskset``).
Run: python bench/loaded_machine.py [--repeats 3] [--json bench/results/loaded_machine.json]
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

# The environment as this script found it: importing spikeport (benchlib does) sets OpenMP's wait policy in
# this process's environment, which the measuring processes must not inherit.
ENVIRONMENT = dict(os.environ)

# label -> (environment of the measuring process, added to the current one; what it imports first). spikeport
# imported first sets OpenMP's passive wait policy; torch imported first keeps OpenMP's spinning default.
CONFIGURATIONS = {
    "spikeport imported first": ({}, "spikeport"),
    "torch imported first": ({}, "torch"),
    "one thread": ({"OMP_NUM_THREADS": "1"}, "spikeport"),
}


def measure(repeats: int, first: str) -> dict:
    """Runs in the measuring process: seconds per 300 images at T = 64 (median of ``repeats``), and the ANN's
    forward time on them; ``first``: the package imported first."""
    importlib.import_module(first)
    import torch

    import spikeport as sp
    from spikeport.models import mnist_cnn

    torch.manual_seed(0)
    model = mnist_cnn().eval()
    x = torch.rand(300, 1, 28, 28)
    snn = sp.convert(model, x[:100], "ecc")
    times, ann = [], []
    with torch.no_grad():
        snn(x[:100], timesteps=64)  # warm-up
        for _ in range(repeats):
            start = time.perf_counter()
            for i in range(0, len(x), 100):
                snn(x[i : i + 100], timesteps=64)
            times.append(time.perf_counter() - start)
            start = time.perf_counter()
            for i in range(0, len(x), 100):
                model(x[i : i + 100])
            ann.append(time.perf_counter() - start)
    return {
        "seconds": statistics.median(times),
        "ann_seconds": statistics.median(ann),
        "threads": torch.get_num_threads(),
        "wait_policy": os.environ.get("OMP_WAIT_POLICY", "OpenMP's default (active)"),
    }


def run_configuration(environment: dict, first: str, repeats: int) -> dict:
    command = [sys.executable, __file__, "--measure", first, "--repeats", str(repeats)]
    result = subprocess.run(
        command, env={**ENVIRONMENT, **environment}, capture_output=True, text=True, check=True
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def busy_process() -> subprocess.Popen:
    """A Python busy loop on the last core."""
    core = str((os.cpu_count() or 1) - 1)
    return subprocess.Popen(["taskset", "-c", core, sys.executable, "-c", "while True: pass"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", default="bench/results/loaded_machine.json")
    parser.add_argument("--measure", help=argparse.SUPPRESS)  # internal: one process, importing this first
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.repeats, args.measure)))
        return
    from benchlib import save_json  # imports spikeport: not in the measuring processes

    results: dict = {"cores": os.cpu_count(), "images": 300, "timesteps": 64, "runs": {}}
    for loaded in (False, True):
        busy = busy_process() if loaded else None
        try:
            for label, (environment, first) in CONFIGURATIONS.items():
                key = f"{label}, {'busy core' if loaded else 'idle'}"
                results["runs"][key] = run_configuration(environment, first, args.repeats)
        finally:
            if busy is not None:
                busy.kill()
                busy.wait()
    print(
        "| configuration | threads | OpenMP wait | SNN s (300 images, T = 64) | vs one thread, same load | ANN s |"
    )
    print("|:---|---:|:---|---:|---:|---:|")
    for key, run in results["runs"].items():
        load = key.rsplit(", ", 1)[1]
        one = results["runs"][f"one thread, {load}"]["seconds"]
        print(
            f"| {key} | {run['threads']} | {run['wait_policy']} | {run['seconds']:.2f} | "
            f"{run['seconds'] / one:.2f}x | {run['ann_seconds']:.3f} |"
        )
    save_json(Path(args.json), results)


if __name__ == "__main__":
    main()
