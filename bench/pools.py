"""PyTorch's CPU pools against the simulator's tiled ones (same numbers, bit for bit), per call.

Synthetic input (integer-valued, like spike counts), batch 100, 2 kernels x 2 strides; both timed in turns.
Run: python bench/pools.py [--repeats 7] [--json bench/results/pools.json]
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from benchlib import KEEPS_FREED_MEMORY, interleaved_medians, save_json

from spikeport.layers import TiledAvgPool2d, TiledMaxPool2d

SHAPES = [(100, 64, 32, 32), (100, 32, 32, 32), (100, 128, 16, 16), (100, 16, 28, 28), (100, 512, 4, 4)]
NAMES = ("max_pool2d", "TiledMaxPool2d", "avg_pool2d", "TiledAvgPool2d")


def measure(shape: tuple[int, ...], repeats: int, calls: int) -> dict:
    x = torch.randint(0, 30, shape).float()
    pools = {
        "max_pool2d": lambda: F.max_pool2d(x, 2),
        "TiledMaxPool2d": lambda: TiledMaxPool2d(2)(x),
        "avg_pool2d": lambda: F.avg_pool2d(x, 2),
        "TiledAvgPool2d": lambda: TiledAvgPool2d(2)(x),
    }
    assert torch.equal(pools["max_pool2d"](), pools["TiledMaxPool2d"]())
    assert torch.equal(pools["avg_pool2d"](), pools["TiledAvgPool2d"]())
    repeated = {name: (lambda fn=fn: [fn() for _ in range(calls)]) for name, fn in pools.items()}
    medians = interleaved_medians(repeated, repeats)
    return {"shape": list(shape), **{k: 1e3 * v / calls for k, v in medians.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--json", default="bench/results/pools.json")
    args = parser.parse_args()
    rows = [measure(shape, args.repeats, args.calls) for shape in SHAPES]
    print(f"torch threads {torch.get_num_threads()}; freed memory kept: {KEEPS_FREED_MEMORY}; ms per call\n")
    print(f"| input | {' | '.join(NAMES)} |")
    print("|:---|---:|---:|---:|---:|")
    for r in rows:
        cells = " | ".join(f"{r[k]:.3f}" for k in NAMES)
        print(f"| {r['shape']} | {cells} |")
    save_json(args.json, rows)


if __name__ == "__main__":
    main()
