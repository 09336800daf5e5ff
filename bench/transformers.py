"""Vision transformers converted: accuracy, agreement, spikes, SOPs and analog ops at every T (and K).

Trains (cached in --out) the small pre-norm ViT of ``spikeport.models.vit`` (4x4 patches, class token, width 64,
4 blocks, 4 heads, GELU MLP) on MNIST and on Fashion-MNIST, calibrates on training images, and evaluates on
the test images: FS (temporal coding, K = 4..12 with the shipped GELU codes; K = 12 with codes fitted to each
layer's calibration inputs, ``fs[fit=layer]``) and the rate-coded methods (T = 1..64). Analog ops (LayerNorm,
softmax, the attention's products, GELU under rate coding) are counted beside the SOPs; simulation time is
measured against the ANN's on one batch of 100 images, in turns (SNN / (T x ANN) for a rate code, SNN / ANN for
FS's one pass).
Run: python bench/transformers.py [--epochs 6] [--limit 10000] [--rate-limit 2000] [--out results/transformers]
     [--fs "fs;fs[fit=layer]"] [--methods ecc,percentile,max[reset=soft],percentile[spike_bits=4]]
     (an empty list runs none; a spike of the graded method carries 4 bits and a sign, counted in spike bits/img)
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from benchlib import interleaved_medians, save_json
from torch import nn

import spikeport as sp
from spikeport.data import load_dataset
from spikeport.models import vit
from spikeport.options import split_specs
from spikeport.train import accuracy, train_classifier

CODES = (4, 6, 8, 10, 12)
FITTED_STEPS = 12  # fs[fit=layer] fits one code length per conversion
TIMESTEPS = (1, 2, 4, 8, 16, 32, 64)
RATE_METHODS = ("ecc", "percentile", "max[reset=soft]", "percentile[spike_bits=4]")


def trained(dataset: str, train, epochs: int, out: Path) -> tuple[nn.Module, float]:
    torch.manual_seed(0)
    model = vit(image_size=28, patch_size=4, in_channels=1, num_classes=10, width=64, depth=4, heads=4)
    path = out / f"{dataset}-vit-e{epochs}.pt"
    if path.is_file():
        model.load_state_dict(torch.load(path, weights_only=True))
        return model.eval(), 0.0
    start = time.perf_counter()
    train_classifier(model, train.x.reshape(-1, 1, 28, 28), train.y, epochs=epochs, lr=1e-3, seed=0)
    torch.save(model.state_dict(), path)
    return model.eval(), time.perf_counter() - start


def speed(model: nn.Module, snn: sp.SpikingNetwork, x: torch.Tensor, steps: int) -> dict:
    """Simulation time of a ``steps`` run against as many ANN passes as it stands for (one per step of a rate
    code, one for a temporal code's single read-out), on one batch, run in turns."""
    passes = steps if snn.coding.step_curves else 1
    with torch.no_grad():
        medians = interleaved_medians({"snn": lambda: snn(x, timesteps=steps), "ann": lambda: model(x)}, 3)
    return {
        "batch": len(x),
        "steps": steps,
        "snn_seconds": medians["snn"],
        "ann_seconds": medians["ann"],
        "ratio": medians["snn"] / (passes * medians["ann"]),
    }


def summary(ev: sp.Evaluation) -> dict:
    return {
        "accuracy": ev.accuracy,
        "agreement": ev.agreement,
        "spikes_per_image": ev.spikes_per_image,
        "spike_bits_per_image": ev.spike_bits_per_image,
        "sops_per_image": ev.sops_per_image,
        "analog_ops_per_image": ev.analog_ops_per_image,
        "latency_steps": ev.latency_steps,
        "ann_analog_ops_per_image": ev.ann_analog_ops_per_image,
        "ann_macs_per_image": ev.ann_macs_per_image,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--datasets", default="mnist,fashion-mnist")
    parser.add_argument("--limit", type=int, default=10000, help="test images for FS")
    parser.add_argument("--rate-limit", type=int, default=2000, help="test images for the rate-coded methods")
    parser.add_argument("--calibration", type=int, default=2000, help="training images to calibrate on")
    parser.add_argument("--methods", default=",".join(RATE_METHODS))
    parser.add_argument("--fs", default="fs;fs[fit=layer]", help="FS method specs, separated by semicolons")
    parser.add_argument("--out", default="results/transformers")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results: dict = {"codes": CODES, "timesteps": TIMESTEPS, "nets": {}}
    rows = []
    for dataset in args.datasets.split(","):
        train = load_dataset(dataset, "train")
        test = load_dataset(dataset, "test")
        x_test, y_test = test.x.reshape(-1, 1, 28, 28), test.y
        calibration = train.x[-args.calibration :].reshape(-1, 1, 28, 28)  # training images, not the test set
        model, seconds = trained(dataset, train, args.epochs, out)
        ann = accuracy(model, x_test, y_test)
        print(
            f"{dataset}: ANN {100 * ann:.2f}% ({'cached' if not seconds else f'trained in {seconds:.0f} s'})"
        )
        entry = results["nets"][dataset] = {"ann_accuracy": ann, "train_seconds": seconds, "methods": {}}
        fs = [
            (spec, CODES if "fit=layer" not in spec else (FITTED_STEPS,))
            for spec in args.fs.split(";")
            if spec
        ]
        runs = [(spec, codes, args.limit, {"steps": max(codes)}) for spec, codes in fs]
        runs += [(m, TIMESTEPS, args.rate_limit, {}) for m in split_specs(args.methods)]
        for spec, steps, limit, options in runs:
            start = time.perf_counter()
            snn = sp.convert(model, calibration, spec, **options)
            converted = time.perf_counter() - start
            data = (x_test[:limit], y_test[:limit])
            start = time.perf_counter()
            ev = sp.evaluate(snn, data, steps, ann=model, progress=False)
            simulated = time.perf_counter() - start
            entry["methods"][spec] = summary(ev) | {
                "samples": ev.samples,
                "convert_seconds": converted,
                "evaluate_seconds": simulated,
                "speed": speed(model, snn, x_test[:100], max(steps)),
            }
            timing = entry["methods"][spec]["speed"]
            print(
                f"{spec}: {max(steps)} steps of 100 images in {timing['snn_seconds']:.2f} s; "
                f"SNN / ANN passes = {timing['ratio']:.1f}"
            )
            for t in steps:
                rows.append(
                    f"| {dataset} | {spec} | {t} | {ev.samples} | {100 * ev.accuracy[t]:.2f} | "
                    f"{100 * ev.agreement[t]:.2f} | {ev.spikes_per_image[t] / 1e3:.1f}k | "
                    f"{ev.spike_bits_per_image[t] / 1e3:.1f}k | "
                    f"{ev.sops_per_image[t] / 1e6:.2f}M | {ev.analog_ops_per_image[t] / 1e6:.2f}M |"
                )
                print(rows[-1], flush=True)
            print(ev.to_markdown())
    header = (
        "| data | method | T or K | images | accuracy % | agreement % | spikes/img | spike bits/img | SOPs/img "
        "| analog ops/img |\n|:---|:---|---:|---:|---:|---:|---:|---:|---:|---:|"
    )
    table = header + "\n" + "\n".join(rows)
    print("\n" + table)
    (out / "results.md").write_text(table + "\n")
    save_json(out / "results.json", results)


if __name__ == "__main__":
    main()
