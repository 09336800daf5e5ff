"""Peak memory of a long evaluation: chunked time keeps it flat in T.

Each T runs in a fresh process (peak RSS is per process) on a net with random weights and synthetic
uniform-noise input of CIFAR shape (memory does not depend on the values); the figures that matter are the
growth from the shortest to the longest run, set against what the time-folded activations would take if all
T steps went through at once, and the peak against the stated ``--budget-mib``.
Run: python bench/memory.py [--model vgg6|resnet20] [--timesteps 64,512,2048] [--batch 25] [--budget-mib N]

"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch
from benchlib import save_json

import spikeport as sp
from spikeport.models import resnet20, vgg6

MODELS = {"vgg6": ("VGG-style 6 conv", vgg6), "resnet20": ("ResNet-20", resnet20)}


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def child(model_name: str, timesteps: int, batch: int) -> dict:
    """One evaluation of ``timesteps`` steps; prints a JSON line with peak memory before and after."""
    torch.manual_seed(0)
    model = MODELS[model_name][1]().eval()
    x = torch.rand(batch, 3, 32, 32)
    snn = sp.convert(model, x, "percentile")
    before = peak_rss_bytes()
    start = time.perf_counter()
    sp.evaluate(snn, x, timesteps=[timesteps], ann=model, progress=False)
    return {
        "timesteps": timesteps,
        "batch": batch,
        "chunk_steps": snn.chunk_steps(batch, timesteps),
        "seconds": time.perf_counter() - start,
        "peak_rss_before_bytes": before,
        "peak_rss_bytes": peak_rss_bytes(),
        "unchunked_activation_bytes": timesteps * batch * snn.elements_per_sample * 4,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(MODELS), default="vgg6")
    parser.add_argument("--timesteps", default="64,512,2048")
    parser.add_argument("--batch", type=int, default=25)
    parser.add_argument(
        "--budget-mib", type=float, help="stated budget: the run fails when a peak exceeds it"
    )
    parser.add_argument("--json", help="default: bench/results/memory-MODEL.json")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.model, args.child, args.batch)))
        return
    rows = []
    for t in sorted(int(v) for v in args.timesteps.split(",")):
        command = [
            sys.executable,
            __file__,
            "--model",
            args.model,
            "--child",
            str(t),
            "--batch",
            str(args.batch),
        ]
        result = subprocess.run(command, check=True, capture_output=True, text=True)
        rows.append(json.loads(result.stdout.strip().splitlines()[-1]))
    mib = 2**20
    title = MODELS[args.model][0]
    print(f"{title} on synthetic 3x32x32 input, batch {args.batch}, CPU, torch {torch.__version__}\n")
    print(
        "| T | steps per chunk | seconds | peak RSS MiB | growth over the run MiB | all T at once would need MiB |"
    )
    print("|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        growth = (r["peak_rss_bytes"] - r["peak_rss_before_bytes"]) / mib
        print(
            f"| {r['timesteps']} | {r['chunk_steps']} | {r['seconds']:.1f} | {r['peak_rss_bytes'] / mib:.0f} | "
            f"{growth:.0f} | {r['unchunked_activation_bytes'] / mib:.0f} |"
        )
    path = Path(args.json or f"bench/results/memory-{args.model}.json")
    meta = {
        "model": args.model,
        "budget_mib": args.budget_mib,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": platform.machine(),
    }
    save_json(path, {"meta": meta, "results": rows})
    if args.budget_mib is not None:
        peak = max(r["peak_rss_bytes"] for r in rows) / mib
        verdict = "within" if peak <= args.budget_mib else "OVER"
        print(f"peak RSS {peak:.0f} MiB: {verdict} the budget of {args.budget_mib:.0f} MiB")
        if peak > args.budget_mib:
            raise SystemExit(1)


if __name__ == "__main__":
    main()
