"""Simulation on a GPU: correctness against the CPU, speed ratios, and where the GPU's time goes.

For the demo CNN, a VGG-16 and a ResNet-20 (synthetic uniform-noise input, untrained weights: cost depends on
shapes only), converted with ``percentile`` on the CPU and moved to the GPU:

1. check: the GPU's read-out against the CPU's (float32, TF32 off for this part), and the fused Triton IF scan
   against the eager one on the GPU (bit for bit expected);
2. speed at T = 64 and 256, batch 100: SNN time per image / (T x ANN forward time per image), the ANN run as a
   user runs it (T forward passes of the batch); also against the ANN at the SNN's own batch (chunk x batch),
   the dense limit on a GPU where small batches leave it idle; eager and fused scans; TF32 as PyTorch's default;
3. profile: kernel time by kind (torch.profiler) for one run of each network at T = 64;
4. chunk length: the memory budget per chunk of steps (default 1 GiB) against larger ones, at T = 256;
5. pipeline (real data, ``--pipeline``): the trained demo CNN converted on the GPU (model moved there) and
   evaluated there on the 10,000 MNIST test images, against the same on the CPU; the time to 99.5 % agreement.

Run (on a GPU machine): PYTHONPATH=src python bench/gpu.py [--timesteps 64,256] [--pipeline]
    [--json bench/results/gpu.json]   (--pipeline needs the demo's cache: MNIST and the trained CNN)
"""

from __future__ import annotations

import argparse
import platform
import time
from collections import defaultdict

import torch
from benchlib import interleaved_medians, save_json
from devices import synchronize

import spikeport as sp
from spikeport.models import mnist_cnn, resnet20, vgg16
from spikeport.neurons import fused_scan

NETWORKS = {
    "demo CNN": (mnist_cnn, (1, 28, 28)),
    "VGG-16": (lambda: vgg16(num_classes=10), (3, 32, 32)),
    "ResNet-20": (lambda: resnet20(num_classes=10), (3, 32, 32)),
}


def build(name: str, batch: int, device: str):
    factory, shape = NETWORKS[name]
    torch.manual_seed(0)
    model = factory().eval()
    x = torch.rand(batch, *shape)
    snn = sp.convert(model, x, "percentile")
    return model, snn, x


def medians_on(functions: dict, device: str, repeats: int) -> dict[str, float]:
    """``interleaved_medians`` with the device's queue drained around every timed run."""
    return interleaved_medians(functions, repeats, synchronize=lambda: synchronize(device))


def with_scan(fused: bool, fn):
    def run():
        fused_scan.enabled = fused
        try:
            return fn()
        finally:
            fused_scan.enabled = True

    return run


@torch.no_grad()
def check(name: str, device: str, timesteps: int = 32) -> dict:
    model, snn, x = build(name, 100, "cpu")
    reference = snn.simulate(x, timesteps).readout
    snn_gpu, x_gpu = snn.to(device), x.to(device)
    allow = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        eager = with_scan(False, lambda: snn_gpu.simulate(x_gpu, timesteps).readout)().cpu()
        fused = with_scan(True, lambda: snn_gpu.simulate(x_gpu, timesteps).readout)().cpu()
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = allow
    scale = reference.abs().max().item()
    return {
        "network": name,
        "timesteps": timesteps,
        "gpu_vs_cpu_max_abs_diff_relative": (eager - reference).abs().max().item() / scale,
        "gpu_vs_cpu_same_prediction": (eager[-1].argmax(1) == reference[-1].argmax(1)).float().mean().item(),
        "fused_equals_eager": bool(torch.equal(fused, eager)),
        "fused_vs_eager_max_abs_diff": (fused - eager).abs().max().item(),
    }


@torch.no_grad()
def speed(name: str, device: str, batch: int, timesteps: int, repeats: int) -> dict:
    model, snn, x = build(name, batch, device)
    model, snn, x = model.to(device), snn.to(device), x.to(device)
    chunk = snn.chunk_steps(batch, timesteps, device)
    x_wide = x.repeat(chunk, *([1] * (x.dim() - 1)))
    calls = -(-timesteps // chunk)

    def ann_t_times():
        for _ in range(timesteps):
            model(x)

    def ann_wide():  # the same T x B images as the SNN's convolutions see: chunk x batch at a time
        for _ in range(calls):
            model(x_wide)

    medians = medians_on(
        {
            "ann": ann_t_times,
            "ann_wide": ann_wide,
            "snn_eager": with_scan(False, lambda: snn.simulate(x, timesteps)),
            "snn_fused": with_scan(True, lambda: snn.simulate(x, timesteps)),
        },
        device,
        repeats,
    )
    per_image = {k: v / batch for k, v in medians.items()}
    ann = per_image["ann"] / timesteps
    wide = per_image["ann_wide"] / (calls * chunk)
    return {
        "network": name,
        "timesteps": timesteps,
        "batch": batch,
        "chunk": chunk,
        "ann_ms_per_image_step": 1e3 * ann,
        "ann_wide_ms_per_image_step": 1e3 * wide,
        "snn_eager_ms_per_image": 1e3 * per_image["snn_eager"],
        "snn_fused_ms_per_image": 1e3 * per_image["snn_fused"],
        "ratio_eager": per_image["snn_eager"] / (timesteps * ann),
        "ratio_fused": per_image["snn_fused"] / (timesteps * ann),
        "ratio_fused_vs_wide_ann": per_image["snn_fused"] / (timesteps * wide),
    }


@torch.no_grad()
def scan_throughput(device: str, shape=(8, 100, 128, 16, 16), repeats: int = 20) -> dict:
    """The scan alone: effective bandwidth (current read + spike written per neuron and step, state once)."""
    from spikeport.neurons import Reset, if_scan

    currents = torch.randn(shape, device=device)
    threshold = torch.rand(shape[2], 1, 1, device=device) + 0.5
    v = torch.zeros(shape[1:], device=device)
    out = torch.empty_like(currents)
    medians = medians_on(
        {
            "eager": with_scan(
                False, lambda: if_scan(v, currents, threshold, Reset.SOFT, update_state=True, out=out)
            ),
            "fused": with_scan(
                True, lambda: if_scan(v, currents, threshold, Reset.SOFT, update_state=True, out=out)
            ),
        },
        device,
        repeats,
    )
    moved = 4 * (2 * currents.numel() + 2 * v.numel())
    return {
        "shape": list(shape),
        **{f"{k}_ms": 1e3 * t for k, t in medians.items()},
        **{f"{k}_GBps": moved / t / 1e9 for k, t in medians.items()},
    }


@torch.no_grad()
def chunk_lengths(
    name: str, device: str, timesteps: int = 256, batch: int = 100, repeats: int = 3
) -> list[dict]:
    """Simulation time at several memory budgets per chunk (more steps per chunk: fewer, larger launches)."""
    _, snn, x = build(name, batch, device)
    snn, x = snn.to(device), x.to(device)
    rows = []
    for budget in (1 << 28, 1 << 30, 1 << 32, 1 << 34, None):  # None: the default (automatic) budget
        snn.memory_budget = budget
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        seconds = medians_on({"snn": lambda: snn.simulate(x, timesteps)}, device, repeats)["snn"]
        peak = torch.cuda.max_memory_allocated() if device == "cuda" else float("nan")
        rows.append(
            {
                "network": name,
                "timesteps": timesteps,
                "memory_budget_GiB": "auto" if budget is None else budget / 2**30,
                "chunk": snn.chunk_steps(batch, timesteps, device),
                "snn_ms_per_image": 1e3 * seconds / batch,
                "peak_GiB": peak / 2**30,
            }
        )
    return rows


def pipeline(device: str, samples: int = 10_000) -> list[dict]:
    """Convert and evaluate the trained demo CNN on the GPU and on the CPU: same results, and how fast."""
    from spikeport.demo import demo_model

    rows = []
    for method in ("percentile", "calibrated", "ecc", "fs", "rmp", "max"):
        timesteps = [2, 3, 4, 5, 6, 8] if method == "fs" else [1, 2, 4, 8, 16, 32]
        row: dict = {"method": method}
        for where in (device, "cpu"):
            model = demo_model(progress=False, log=lambda *_: None).to(where)
            synchronize(where)
            start = time.perf_counter()
            snn = sp.convert(model, "mnist:train", method, calibration_samples=5000)
            synchronize(where)
            converted = time.perf_counter()
            ev = sp.evaluate(snn, "mnist:test", timesteps, limit=samples, progress=False)
            synchronize(where)
            evaluated = time.perf_counter()
            side = "gpu" if where == device else "cpu"
            row[f"{side}_device"] = str(snn.device)
            row[f"{side}_convert_s"] = converted - start
            row[f"{side}_evaluate_s"] = evaluated - converted
            row[f"{side}_accuracy"] = {t: ev.accuracy[t] for t in timesteps}
            row[f"{side}_agreement"] = {t: ev.agreement[t] for t in timesteps}
            if side == "gpu":
                row["time_to_agreement"] = time_to_agreement(snn, ev, timesteps, where)
        rows.append(row)
    return rows


@torch.no_grad()
def time_to_agreement(snn, ev, timesteps: list[int], device: str, target: float = 0.995) -> dict:
    """The first T (or code length K) with agreement >= target and the time per image of a run that long,
    at batch 100 (as the CPU peers bench) and 1,000 (a GPU's kind of batch)."""
    from spikeport.data import load_dataset

    reached = next((t for t in timesteps if ev.agreement[t] >= target), None)
    if reached is None:
        return {"T": None}
    images = load_dataset("mnist:test").x[:1000].to(device)
    result: dict = {"T": reached}
    for batch in (100, 1000):

        def run(batch=batch):
            for start in range(0, images.shape[0], batch):
                snn.simulate(images[start : start + batch], reached)

        seconds = medians_on({"run": run}, device, 5)["run"]
        result[f"ms_per_image_batch{batch}"] = 1e3 * seconds / images.shape[0]
    return result


def kernel_kind(kernel: str) -> str:
    lowered = kernel.lower()
    if "if_scan" in lowered:
        return "fused IF scan"
    if any(k in lowered for k in ("conv", "gemm", "cudnn", "cutlass", "xmma", "sm90", "implicit")):
        return "conv/linear"
    if "pool" in lowered:
        return "pools"
    if "reduce" in lowered or "scan" in lowered or "cumsum" in lowered:
        return "reductions/cumsum"
    return "other elementwise"


@torch.no_grad()
def kernel_profile(name: str, device: str, timesteps: int, fused: bool) -> dict:
    from torch.profiler import ProfilerActivity, profile

    model, snn, x = build(name, 100, device)
    snn, x = snn.to(device), x.to(device)
    run = with_scan(fused, lambda: snn.simulate(x, timesteps))
    run()
    synchronize(device)
    activities = [ProfilerActivity.CUDA] if device == "cuda" else [ProfilerActivity.CPU]
    start = time.perf_counter()
    with profile(activities=activities) as prof:
        run()
        synchronize(device)
    wall = time.perf_counter() - start
    spent: dict[str, float] = defaultdict(float)
    for event in prof.key_averages():
        device_time = (
            getattr(event, "device_time_total", 0.0) if device == "cuda" else event.self_cpu_time_total
        )
        if device_time and (device != "cuda" or event.device_type.name == "CUDA"):
            spent[kernel_kind(event.key)] += device_time / 1e6
    return {"network": name, "timesteps": timesteps, "fused": fused, "wall_s": wall, "kernel_s": dict(spent)}


def print_table(title: str, header: list[str], rows: list[list[str]]) -> None:
    """A markdown table: first column left-aligned, the rest right-aligned."""
    print(f"\n{title}\n| " + " | ".join(header) + " |")
    print("|:---|" + "---:|" * (len(header) - 1))
    for row in rows:
        print("| " + " | ".join(row) + " |")


def print_checks(checks: list[dict]) -> None:
    print_table(
        "GPU against CPU (float32, TF32 off), T = 32, batch 100",
        ["network", "max rel. diff", "same prediction", "fused == eager (bit for bit)"],
        [
            [
                c["network"],
                f"{c['gpu_vs_cpu_max_abs_diff_relative']:.1e}",
                f"{100 * c['gpu_vs_cpu_same_prediction']:.1f} %",
                str(c["fused_equals_eager"]),
            ]
            for c in checks
        ],
    )


def print_scan(scan: dict) -> None:
    print(
        f"\nIF scan alone, {scan['shape']}: eager {scan['eager_ms']:.3f} ms ({scan['eager_GBps']:.0f} GB/s, "
        f"one read and one write per step), fused {scan['fused_ms']:.3f} ms ({scan['fused_GBps']:.0f} GB/s)"
    )


def print_profiles(profiles: list[dict]) -> None:
    kinds = sorted({k for p in profiles for k in p["kernel_s"]})
    print_table(
        "kernel seconds by kind (torch.profiler), T = 64, batch 100",
        ["network", "scan", "wall s", *kinds],
        [
            [p["network"], "fused" if p["fused"] else "eager", f"{p['wall_s']:.3f}"]
            + [f"{p['kernel_s'].get(k, 0.0):.3f}" for k in kinds]
            for p in profiles
        ],
    )


def print_speed(rows: list[dict], batch: int) -> None:
    print_table(
        f"batch {batch}; ratio = SNN time per image / (T x ANN forward time per image)",
        ["network", "T", "chunk", "ANN ms/img", "SNN eager ms/img", "SNN fused ms/img", "ratio eager"]
        + ["ratio fused", "fused vs ANN at chunk x batch"],
        [
            [r["network"], str(r["timesteps"]), str(r["chunk"]), f"{r['ann_ms_per_image_step']:.4f}"]
            + [f"{r['snn_eager_ms_per_image']:.3f}", f"{r['snn_fused_ms_per_image']:.3f}"]
            + [f"{r['ratio_eager']:.2f}", f"{r['ratio_fused']:.2f}", f"{r['ratio_fused_vs_wide_ann']:.2f}"]
            for r in rows
        ],
    )


def print_chunks(chunks: list[dict]) -> None:
    print_table(
        "chunk length against speed and memory (fused scan)",
        ["network", "T", "memory budget GiB", "steps per chunk", "SNN fused ms/img", "peak GPU memory GiB"],
        [
            [c["network"], str(c["timesteps"]), str(c["memory_budget_GiB"]), str(c["chunk"])]
            + [f"{c['snn_ms_per_image']:.3f}", f"{c['peak_GiB']:.1f}"]
            for c in chunks
        ],
    )


def print_pipeline(flows: list[dict]) -> None:
    rows = []
    for f in flows:
        for side in ("gpu", "cpu"):
            accuracy = ", ".join(f"{t}: {100 * a:.2f}" for t, a in f[f"{side}_accuracy"].items())
            reach = f.get("time_to_agreement", {}) if side == "gpu" else {}
            reach_text = (
                f"T={reach['T']}: {reach['ms_per_image_batch100']:.4f} ms/img (batch 100), "
                f"{reach['ms_per_image_batch1000']:.4f} (batch 1000)"
                if reach.get("T")
                else ""
            )
            rows.append(
                [f["method"], f[f"{side}_device"], f"{f[f'{side}_convert_s']:.1f}"]
                + [f"{f[f'{side}_evaluate_s']:.1f}", accuracy, reach_text]
            )
    print_table(
        "Demo CNN on MNIST (10,000 test images), converted and evaluated on each device; accuracy %",
        ["method", "device", "convert s", "evaluate s", "accuracy at each T", "time to 99.5 % agreement"],
        rows,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timesteps", default="64,256")
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--networks", default=",".join(NETWORKS))
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--sections", default="check,scan,profile,speed,chunks", help="parts to run")
    parser.add_argument(
        "--pipeline", action="store_true", help="also the real-data pipeline (MNIST, demo CNN)"
    )
    parser.add_argument("--json", default="bench/results/gpu.json")
    args = parser.parse_args()
    names, device = args.networks.split(","), args.device
    sections = set(args.sections.split(",")) | ({"pipeline"} if args.pipeline else set())
    gpu = torch.cuda.get_device_name() if device == "cuda" else platform.processor()
    print(f"{gpu}; torch {torch.__version__}; fused scan available: {fused_scan.triton is not None}")
    results: dict = {
        "meta": {"device": gpu, "torch": torch.__version__, "tf32_conv": torch.backends.cudnn.allow_tf32}
    }
    if "check" in sections:
        results["checks"] = [check(name, device) for name in names]
        print_checks(results["checks"])
    if "scan" in sections:
        results["scan"] = scan_throughput(device)
        print_scan(results["scan"])
    if "profile" in sections:
        results["profiles"] = [
            kernel_profile(name, device, 64, fused) for name in names for fused in (False, True)
        ]
        print_profiles(results["profiles"])
    if "speed" in sections:
        steps = [int(t) for t in args.timesteps.split(",")]
        results["speed"] = [speed(name, device, args.batch, t, args.repeats) for name in names for t in steps]
        print_speed(results["speed"], args.batch)
    if "chunks" in sections:
        results["chunks"] = [
            row for name in names if name != "demo CNN" for row in chunk_lengths(name, device)
        ]
        print_chunks(results["chunks"])
    if "pipeline" in sections:
        results["pipeline"] = pipeline(device)
        print_pipeline(results["pipeline"])
    save_json(args.json, results)


if __name__ == "__main__":
    main()
