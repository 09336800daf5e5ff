"""Simulation speed: SNN time per image at T steps against T x the ANN's forward time per image.

Synthetic inputs (uniform noise) and untrained weights: simulation cost does not depend on what the
network has learned, only on its shape (spike recording adds a small data-dependent part).
The SNN simulates as it does by default (on CPU, image batches channels-last); the ANN runs as given
(PyTorch's default contiguous layout). Two more columns, timed in the same turns, keep that comparison
honest: the SNN in the contiguous layout, and the ANN in channels-last (model and input).
Run: python bench/simulate.py [--timesteps 64,256] [--networks demo,vgg6,vgg6-max,vgg16,resnet20]
      [--batch 100] [--repeats 5] [--no-recording] [--json bench/results/simulate.json]
"""

from __future__ import annotations

import argparse
import copy
import platform
import resource
import statistics

import torch
from benchlib import KEEPS_FREED_MEMORY, interleaved_medians, save_json
from torch import nn

import spikeport as sp
from spikeport.models import mnist_cnn, resnet20, vgg6, vgg16

NETWORKS = {
    "demo": ("demo CNN (MNIST shape)", mnist_cnn, (1, 28, 28)),
    "vgg6": ("VGG-style 6 conv (32-64-128)", vgg6, (3, 32, 32)),
    "vgg6-max": ("same VGG with max-pools", lambda: vgg6(pool="max"), (3, 32, 32)),
    "vgg16": ("VGG-16 (BN, max-pools)", lambda: vgg16(num_classes=10), (3, 32, 32)),
    "resnet20": ("ResNet-20", lambda: resnet20(num_classes=10), (3, 32, 32)),
}


def measure(
    name: str,
    model: nn.Module,
    shape: tuple[int, ...],
    batch: int,
    timesteps: int,
    repeats: int,
    recording: bool,
) -> dict:
    torch.manual_seed(0)
    x = torch.rand(batch, *shape)
    snn = sp.convert(model, x, "percentile")
    contiguous = copy.deepcopy(snn)  # the same network, simulated in PyTorch's default order
    contiguous.memory_format = torch.contiguous_format
    model_cl = copy.deepcopy(model).to(memory_format=torch.channels_last)
    x_cl = x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x
    with torch.no_grad():  # warm-up: allocator, kernels, first-call paths
        model(x)
        model_cl(x_cl)
        snn.simulate(x, min(timesteps, 8), record=recording)
        contiguous.simulate(x, min(timesteps, 8))

    @torch.no_grad()
    def ann_t_times(model=model, x=x) -> None:  # T forward passes: the dense cost the SNN is compared with
        for _ in range(timesteps):
            model(x)

    runs = {
        "ann": ann_t_times,
        "ann_channels_last": lambda: ann_t_times(model_cl, x_cl),
        "snn": lambda: snn.simulate(x, timesteps),
        "snn_contiguous": lambda: contiguous.simulate(x, timesteps),
    }
    if recording:
        runs["recording"] = lambda: snn.simulate(x, timesteps, record=True)
    faults: dict[str, list[int]] = {key: [] for key in runs}
    medians = interleaved_medians(  # warmed up above with a short run
        {key: counting_page_faults(fn, faults[key]) for key, fn in runs.items()}, repeats, warmup=False
    )
    ann = medians["ann"] / (timesteps * batch)
    ann_cl = medians["ann_channels_last"] / (timesteps * batch)
    plain, recorded = medians["snn"] / batch, medians.get("recording", float("nan")) / batch
    snn_contiguous = medians["snn_contiguous"] / batch
    return {
        "network": name,
        "input": list(shape),
        "batch": batch,
        "timesteps": timesteps,
        "ann_ms_per_image": 1e3 * ann,
        "snn_ms_per_image": 1e3 * plain,
        "snn_recording_ms_per_image": 1e3 * recorded,
        "ann_channels_last_ms_per_image": 1e3 * ann_cl,
        "snn_contiguous_ms_per_image": 1e3 * snn_contiguous,
        "ratio": plain / (timesteps * ann),
        "ratio_vs_ann_channels_last": plain / (timesteps * ann_cl),
        "ratio_snn_contiguous": snn_contiguous / (timesteps * ann),
        "ratio_recording": recorded / (timesteps * ann),
        "ann_macs_per_image": snn.ann_macs_per_image,
        "page_faults_per_run": {key: statistics.median(counts) for key, counts in faults.items()},
    }


def counting_page_faults(fn, counts: list[int]):
    """``fn``, appending the minor page faults of each call to ``counts`` (memory the system hands out
    afresh: the allocator's cost that timing alone does not explain)."""

    def run() -> None:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        fn()
        counts.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timesteps", default="64")
    parser.add_argument("--networks", default="demo,vgg6,vgg6-max")
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-recording", dest="recording", action="store_false")
    parser.add_argument("--json", default="bench/results/simulate.json")
    args = parser.parse_args()
    rows = []
    for key in args.networks.split(","):
        name, factory, shape = NETWORKS[key]
        for timesteps in map(int, args.timesteps.split(",")):
            torch.manual_seed(0)
            rows.append(
                measure(name, factory().eval(), shape, args.batch, timesteps, args.repeats, args.recording)
            )
    print(
        f"CPU threads: {torch.get_num_threads()}, torch {torch.__version__}, {platform.processor() or platform.machine()}"
    )
    print(f"allocator: {'freed memory kept (sp.keep_freed_memory)' if KEEPS_FREED_MEMORY else 'default'}")
    print(f"batch {args.batch}; ratio = SNN time per image / (T x ANN forward time per image)\n")
    print(
        "| network | T | ANN ms/img | SNN ms/img | ratio | ratio with spike/SOP recording | page faults ANN / SNN "
        "| SNN contiguous: ratio | ANN channels-last ms/img | SNN / (T x ANN channels-last) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        faults = r["page_faults_per_run"]
        print(
            f"| {r['network']} | {r['timesteps']} | {r['ann_ms_per_image']:.3f} | {r['snn_ms_per_image']:.2f} | "
            f"{r['ratio']:.2f} | {r['ratio_recording']:.2f} | {faults['ann']:.0f} / {faults['snn']:.0f} | "
            f"{r['ratio_snn_contiguous']:.2f} | {r['ann_channels_last_ms_per_image']:.3f} | "
            f"{r['ratio_vs_ann_channels_last']:.2f} |"
        )
    meta = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": platform.machine(),
        "keeps_freed_memory": KEEPS_FREED_MEMORY,
    }
    save_json(args.json, {"meta": meta, "results": rows})


if __name__ == "__main__":
    main()
