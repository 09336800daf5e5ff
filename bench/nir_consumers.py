"""spikeport's NIR files in other tools, and theirs in spikeport: same outputs step for step? (real MNIST images)

Zoo nets (trained as bench/zoo.py trains them) converted with hard reset (`max`) and soft reset
(`max[reset=soft]`), exported with `sp.export_nir`, then imported and run by Norse, sinabs, snnTorch and Rockpool
in their own virtual environment (bench/nir_consumers_worker.py; never a dependency). Per tool and file: does it
import, how far its output current per step is from spikeport's, on how many images every step agrees, and
whether the predicted class after T steps does. The reverse: each tool's own Linear-IF-Linear network, exported
by the tool, imported with `sp.import_nir` and run against the tool's outputs.
Run: python bench/nir_consumers.py [--venv results/peers-venv] [--nets mlp,wide-cnn] [--steps 32] [--images 64]
"""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path

import numpy as np
import torch
from benchlib import save_json
from zoo import CALIBRATION_IMAGES, trained

import spikeport as sp
from spikeport.data import load_dataset

METHODS = ("max", "max[reset=soft]")
TOLERANCE = 1e-4  # relative to the largest output: float reassociation, not a different dynamics


def per_step_currents(readout: torch.Tensor) -> np.ndarray:
    """The output layer's current at each step, from spikeport's running means ``[T, B, ...]``."""
    steps = torch.arange(1, readout.shape[0] + 1, dtype=readout.dtype).reshape(-1, *[1] * (readout.dim() - 1))
    totals = readout * steps
    return torch.cat([totals[:1], totals[1:] - totals[:-1]]).numpy()


def compare(mine: np.ndarray, theirs: np.ndarray) -> dict:
    if mine.shape != theirs.shape:
        return {"shape": f"{list(theirs.shape)} against {list(mine.shape)}"}
    scale = max(float(np.abs(mine).max()), 1e-12)
    close = np.abs(mine - theirs) <= TOLERANCE * scale
    per_image = close.reshape(close.shape[0], close.shape[1], -1).all(axis=(0, 2))
    same_class = mine.sum(0).argmax(-1) == theirs.sum(0).argmax(-1)
    return {
        "max_abs_difference": float(np.abs(mine - theirs).max()),
        "images_equal_every_step": float(per_image.mean()),
        "steps_equal": float(close.reshape(close.shape[0], -1).all(axis=1).mean()),
        "same_class_after_T": float(same_class.mean()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--venv", default="results/peers-venv")
    parser.add_argument("--nets", default="mlp,wide-cnn")
    parser.add_argument("--steps", type=int, default=32)
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--out", default="results/nir-consumers")
    parser.add_argument("--json", default="bench/results/nir_consumers.json")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    train, test = load_dataset("mnist", "train"), load_dataset("mnist", "test")
    x = test.x[: args.images].reshape(-1, 1, 28, 28)
    calibration = train.x[:CALIBRATION_IMAGES].reshape(-1, 1, 28, 28)
    mine: dict[str, np.ndarray] = {}
    files = []
    for name in args.nets.split(","):
        model, _ = trained(name, "mnist", train, 2, Path("results/zoo"))
        for method in METHODS:
            snn = sp.convert(model, calibration, method, progress=False)
            stem = f"{name}-{method.replace('[', '-').replace(']', '').replace('=', '-')}"
            sp.export_nir(snn, out / f"{stem}.nir")
            files.append(str(out / f"{stem}.nir"))
            mine[stem] = per_step_currents(snn(x, args.steps))
    np.save(out / "input.npy", x.numpy())
    python = Path(args.venv) / "bin" / "python"
    worker = Path(__file__).with_name("nir_consumers_worker.py")
    command = [str(python), str(worker), "--files", ",".join(files), "--input", str(out / "input.npy")]
    subprocess.run([*command, "--steps", str(args.steps), "--out", str(out)], check=True)
    report = json.loads((out / "worker.json").read_text())
    results: dict = {"steps": args.steps, "images": len(x), "imports": {}, "exports": {}}
    print(f"spikeport's files in other tools ({len(x)} MNIST test images, T = {args.steps}):\n")
    print("| file | tool | result |")
    print("|:---|:---|:---|")
    results["nir_in_venv"] = report["nir"]
    for key, entry in report["imports"].items():
        stem, tool = key.split(":")
        row = entry if "error" in entry else compare(mine[stem], np.load(out / f"{stem}-{tool}.npy"))
        results["imports"][key] = row
        print(f"| {stem} | {tool} | {_cell(row)} |")
    print("\nEach tool's own network in spikeport (`sp.import_nir`):\n")
    print("| tool | NIR nodes | result |")
    print("|:---|:---|:---|")
    tool_input = torch.from_numpy(np.load(out / "tool-input.npy"))
    for tool, entry in report["exports"].items():
        if "error" in entry:
            row = entry
        else:
            try:
                snn = sp.import_nir(entry["file"])
                theirs = np.load(out / f"from-{tool}-outputs.npy")
                row = compare(per_step_currents(snn(tool_input, args.steps)), theirs)
            except Exception as error:  # what spikeport refuses, in its own words
                row = {"error": f"{type(error).__name__}: {error}".splitlines()[0][:300]}
        results["exports"][tool] = {**row, "nodes": entry.get("nodes")}
        print(f"| {tool} | {', '.join(entry.get('nodes') or [])} | {_cell(row)} |")
    save_json(args.json, results)


def _cell(row: dict) -> str:
    if "error" in row or "shape" in row:
        return row.get("error") or f"output shape {row['shape']}"
    return (
        f"max |diff| {row['max_abs_difference']:.2g}; images equal at every step "
        f"{100 * row['images_equal_every_step']:.1f} %; same class after T {100 * row['same_class_after_T']:.1f} %"
    )


if __name__ == "__main__":
    main()
