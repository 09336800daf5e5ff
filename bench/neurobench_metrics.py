"""spikeport's networks under NeuroBench's Benchmark, beside spikeport's own figures (real MNIST test images).

For zoo nets (trained as bench/zoo.py trains them, cached in --out) and each method, one NeuroBench run
(``spikeport.neurobench.NeuroBenchNetwork``) and one ``sp.evaluate`` on the same images at the same T:
accuracy, activation sparsity against 1 - spikes per neuron per step, NeuroBench's effective ACs against
spikeport's SOPs, NeuroBench's effective MACs against spikeport's analog MACs. Needs ``pip install neurobench``.
Run: python bench/neurobench_metrics.py [--nets mlp,cnn-functional,residual-small] [--timesteps 8,32]
     [--methods "rmp;ecc[spike_bits=4,channelwise=true]"] [--limit 1000]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from benchlib import save_json
from neurobench.benchmarks import Benchmark
from neurobench.metrics.static import Footprint
from neurobench.metrics.workload import ActivationSparsity, ClassificationAccuracy, SynapticOperations
from torch.utils.data import DataLoader, TensorDataset
from zoo import CALIBRATION_IMAGES, trained

import spikeport as sp
from spikeport.data import load_dataset
from spikeport.neurobench import NeuroBenchNetwork


def neurobench_run(snn, x, y, steps: int) -> dict:
    loader = DataLoader(TensorDataset(x, y), batch_size=100)
    metrics = [[Footprint], [ClassificationAccuracy, ActivationSparsity, SynapticOperations]]
    return Benchmark(NeuroBenchNetwork(snn, steps), loader, [], [], metrics).run(quiet=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nets", default="mlp,cnn-functional,residual-small")
    parser.add_argument("--methods", default="rmp;ecc[spike_bits=4,channelwise=true]")
    parser.add_argument("--timesteps", default="8,32")
    parser.add_argument("--limit", type=int, default=1000)
    parser.add_argument("--out", default="results/zoo", help="where bench/zoo.py caches its trained nets")
    parser.add_argument("--json", default="bench/results/neurobench_metrics.json")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    train, test = load_dataset("mnist", "train"), load_dataset("mnist", "test")
    x, y = test.x[: args.limit].reshape(-1, 1, 28, 28), test.y[: args.limit].long()
    calibration = train.x[:CALIBRATION_IMAGES].reshape(-1, 1, 28, 28)
    steps = [int(t) for t in args.timesteps.split(",")]
    rows = []
    print(
        "| net | method | T | accuracy % (NB / sp) | sparsity (NB / 1 - sp rate) | ACs (NB) | SOPs (sp) "
        "| MACs (NB) | MACs (sp) |"
    )
    print("|:---|:---|---:|---:|---:|---:|---:|---:|---:|")
    for name in args.nets.split(","):
        model, _ = trained(name, "mnist", train, 2, out)
        for spec in [m.strip() for m in args.methods.split(";") if m.strip()]:
            snn = sp.convert(model, calibration, spec, progress=False)
            ev = sp.evaluate(snn, (x, y), steps, ann=model, progress=False)
            for t in steps:
                nb = neurobench_run(snn, x, y, t)
                ops = nb["SynapticOperations"]
                row = {
                    "net": name,
                    "method": spec,
                    "timesteps": t,
                    "neurobench": nb,
                    "spikeport": {
                        "accuracy": ev.accuracy[t],
                        "sparsity": 1 - ev.spikes_per_neuron[t] / t,
                        "sops_per_image": ev.sops_per_image[t],
                        "macs_per_image": ev.macs_per_image[t],
                    },
                }
                rows.append(row)
                mine = row["spikeport"]
                print(
                    f"| {name} | {spec} | {t} | {100 * nb['ClassificationAccuracy']:.2f} / "
                    f"{100 * mine['accuracy']:.2f} | {nb['ActivationSparsity']:.4f} / {mine['sparsity']:.4f} | "
                    f"{ops['Effective_ACs'] / 1e3:.1f}k | {mine['sops_per_image'] / 1e3:.1f}k | "
                    f"{ops['Effective_MACs'] / 1e3:.1f}k | {mine['macs_per_image'] / 1e3:.1f}k |",
                    flush=True,
                )
    save_json(args.json, {"images": len(x), "threads": torch.get_num_threads(), "rows": rows})


if __name__ == "__main__":
    main()
