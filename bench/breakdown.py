"""Where simulation time goes: neuron scans, synaptic layers, pools and the rest, against the ANN's forward.

Every leaf module of the converted network is timed with forward hooks (CPU: wall time per call), summed by
kind; "runner and graph" is the rest of the simulation's wall time (the step loop, the read-out, additions and
reshapes between modules). The ANN's T forward passes are timed the same way for the same split. Synthetic
input (uniform noise), untrained weights: the cost depends on the shapes only.
The SNN runs once per IF scan named in ``--scans``: ``compiled`` (the default's C loop, ``neurons/cpu_scan.py``)
and/or ``eager`` (four PyTorch ops per step), in the same process.
Run: python bench/breakdown.py [--timesteps 64,256] [--batch 100] [--scans compiled,eager]
      [--json bench/results/breakdown.json]
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict

import torch
from benchlib import save_json
from torch import nn

import spikeport as sp
from spikeport.models import mnist_cnn, resnet20, vgg16
from spikeport.neurons import IFNeuron, SpikingMaxPool, cpu_scan

NETWORKS = {
    "demo CNN": (mnist_cnn, (1, 28, 28)),
    "VGG-16": (lambda: vgg16(num_classes=10), (3, 32, 32)),
    "ResNet-20": (lambda: resnet20(num_classes=10), (3, 32, 32)),
}


def kind(module: nn.Module) -> str:
    if isinstance(module, IFNeuron):
        return "neurons (IF scan)"
    if isinstance(module, nn.Conv2d | nn.Linear | nn.Conv1d):
        return "synaptic (conv/linear)"
    if isinstance(module, SpikingMaxPool | nn.MaxPool2d | nn.AvgPool2d | nn.AdaptiveAvgPool2d):
        return "pools"
    if isinstance(module, nn.ReLU):
        return "activations (ANN)"
    return "other modules"


def timed(root: nn.Module, run) -> dict[str, float]:
    """Wall time of ``run()`` split by module kind (hooks on every leaf module)."""
    spent: dict[str, float] = defaultdict(float)
    started: dict[int, float] = {}

    def before(module, _inputs):
        started[id(module)] = time.perf_counter()

    def after(module, _inputs, _output):
        spent[kind(module)] += time.perf_counter() - started.pop(id(module))

    leaves = [m for m in root.modules() if not list(m.children())]
    hooks = [h for m in leaves for h in (m.register_forward_pre_hook(before), m.register_forward_hook(after))]
    start = time.perf_counter()
    with torch.no_grad():
        run()
    total = time.perf_counter() - start
    for hook in hooks:
        hook.remove()
    spent["runner and graph"] = total - sum(spent.values())
    spent["total"] = total
    return dict(spent)


def profile(name: str, timesteps: int, batch: int, scans: list[str]) -> dict:
    factory, shape = NETWORKS[name]
    torch.manual_seed(0)
    model = factory().eval()
    x = torch.rand(batch, *shape)
    snn = sp.convert(model, x, "percentile")

    def ann_run():
        for _ in range(timesteps):
            model(x)

    snn.simulate(x, min(timesteps, 8))  # warm-up
    ann_run()
    ann = timed(model, ann_run)
    runs = {"ann": ann}
    for scan in scans:
        cpu_scan.enabled = scan == "compiled"
        runs[f"snn, {scan} scan"] = timed(snn.graph_module, lambda: snn.simulate(x, timesteps))
    cpu_scan.enabled = True
    return {"network": name, "timesteps": timesteps, "batch": batch, "runs": runs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timesteps", default="64,256")
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--networks", default=",".join(NETWORKS))
    parser.add_argument("--scans", default="compiled", help="IF scans to run the SNN with: compiled, eager")
    parser.add_argument("--json", default="bench/results/breakdown.json")
    args = parser.parse_args()
    rows = [
        profile(name, int(t), args.batch, args.scans.split(","))
        for name in args.networks.split(",")
        for t in args.timesteps.split(",")
    ]
    kinds = sorted({k for r in rows for spent in r["runs"].values() for k in spent if k != "total"})
    print(f"batch {args.batch}, torch threads {torch.get_num_threads()}; seconds (share of the total)\n")
    print("| network | T | run | total s | ratio | " + " | ".join(kinds) + " |")
    print("|:---|---:|:---|---:|---:|" + "---:|" * len(kinds))
    for r in rows:
        for side, spent in r["runs"].items():
            ratio = spent["total"] / r["runs"]["ann"]["total"]
            cells = " | ".join(
                f"{spent[k]:.2f} ({100 * spent[k] / spent['total']:.0f}%)" if k in spent else "—"
                for k in kinds
            )
            label = "ANN × T" if side == "ann" else side
            print(
                f"| {r['network']} | {r['timesteps']} | {label} | {spent['total']:.2f} | {ratio:.2f} | {cells} |"
            )
    save_json(args.json, rows)


if __name__ == "__main__":
    main()
