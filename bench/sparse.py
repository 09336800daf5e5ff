"""Event-driven (sparse) synaptic layers: at what spike density does a sparse product beat the dense one?

A linear layer fed by spikes computes ``spikes @ W.T`` with most inputs zero. Done event by event (CSR
sparse input times dense weights, the conversion to CSR included, as a simulator would have to do it every
step) it skips the zeros; the dense product does not, but runs at the machine's full matrix speed. Synthetic
Bernoulli spikes, float32, timed in turns (median of 5); 2 threads as everywhere in these benches.
Run: python bench/sparse.py [--rows 6400] [--json bench/results/sparse.json]
"""

from __future__ import annotations

import argparse

import torch
from benchlib import interleaved_medians, save_json

LAYERS = {"VGG-style classifier 4096 -> 4096": (4096, 4096), "demo CNN read-out 1568 -> 10": (1568, 10)}
DENSITIES = (0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2)


@torch.no_grad()
def measure(rows: int, fan_in: int, fan_out: int, density: float) -> dict:
    g = torch.Generator().manual_seed(0)
    spikes = (torch.rand(rows, fan_in, generator=g) < density).float()
    weight = torch.randn(fan_out, fan_in, generator=g)
    medians = interleaved_medians(
        {
            "dense": lambda: spikes @ weight.T,
            "sparse": lambda: torch.sparse.mm(spikes.to_sparse_csr(), weight.T),
        },
        repeats=5,
    )
    dense, sparse = medians["dense"], medians["sparse"]
    exact = torch.allclose(spikes @ weight.T, torch.sparse.mm(spikes.to_sparse_csr(), weight.T), atol=1e-3)
    return {"density": density, "dense_ms": 1e3 * dense, "sparse_ms": 1e3 * sparse, "same_result": exact}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=6400, help="samples x steps per call (T=64 x batch 100)")
    parser.add_argument("--json", default="bench/results/sparse.json")
    args = parser.parse_args()
    results = {}
    print(f"rows {args.rows}, torch threads {torch.get_num_threads()}")
    print("\n| layer | spike density | dense ms | sparse (CSR) ms | sparse / dense |")
    print("|:---|---:|---:|---:|---:|")
    for name, (fan_in, fan_out) in LAYERS.items():
        results[name] = [measure(args.rows, fan_in, fan_out, d) for d in DENSITIES]
        for r in results[name]:
            print(
                f"| {name} | {100 * r['density']:g} % | {r['dense_ms']:.2f} | {r['sparse_ms']:.2f} | "
                f"{r['sparse_ms'] / r['dense_ms']:.2f} |"
            )
    save_json(args.json, results)


if __name__ == "__main__":
    main()
