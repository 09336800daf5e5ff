"""spikeport against SpikingJelly's ann2snn recipes on the same trained net, data and time steps.

SpikingJelly is never a dependency of spikeport: this script makes a separate virtual environment
(``--venv``, with the system's packages visible so it uses the same torch), installs SpikingJelly 2.0 and
loguru there with ``--no-deps`` (so nothing can replace torch), and runs the peer side in it. Both sides
convert the demo CNN (trained by ``spikeport demo``, cached), calibrate on the first 5,000 MNIST training
images and are evaluated on the same test images at T = 1, 2, 4, 8, 16, 32: accuracy and agreement with the
ANN. Peer recipes (SpikingJelly's own MNIST example settings): RateCodingRecipe max; 99.9 % channel-wise with
the half-threshold start; LocalThresholdBalancingRecipe.
Run: python bench/peers.py [--limit 10000] [--venv results/peers-venv] [--json bench/results/peers.json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

TIMESTEPS = (1, 2, 4, 8, 16, 32)
PEER_PACKAGES = ("spikingjelly==2.0.0", "loguru")


def ensure_venv(path: Path) -> Path:
    python = path / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(path)], check=True)
    check = subprocess.run([str(python), "-c", "import spikingjelly"], capture_output=True)
    if check.returncode != 0:
        subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", *PEER_PACKAGES], check=True)
    return python


def data(limit: int):
    from spikeport.data import load_dataset

    test = load_dataset("mnist", "test").subset(limit)
    calibration = load_dataset("mnist", "train").subset(5000)
    return calibration.x.reshape(-1, 1, 28, 28), test.x.reshape(-1, 1, 28, 28), test.y


def peer_side(limit: int, out: Path) -> None:
    """Runs inside the peer venv: SpikingJelly conversions of the demo CNN."""
    import copy

    import torch
    from spikingjelly.activation_based import ann2snn, functional

    from spikeport.demo import demo_model

    torch.set_num_threads(torch.get_num_threads())
    model = demo_model(progress=False, log=lambda *a: None).eval()
    calibration, x, y = data(limit)
    loader = [(calibration[i : i + 100], None) for i in range(0, len(calibration), 100)]
    recipes = {
        "SpikingJelly RateCoding max": lambda: ann2snn.RateCodingRecipe(dataloader=loader, mode="max"),
        "SpikingJelly RateCoding 99.9% channel-wise, half threshold": lambda: ann2snn.RateCodingRecipe(
            dataloader=loader, mode="99.9%", channel_wise=True, half_threshold=True
        ),
        "SpikingJelly LocalThresholdBalancing": lambda: ann2snn.LocalThresholdBalancingRecipe(
            dataloader=loader
        ),
    }
    with torch.no_grad():
        reference = model(x).argmax(1)
    results = {}
    for label, recipe in recipes.items():
        start = time.perf_counter()
        snn = ann2snn.FXConverter(recipe=recipe(), device="cpu").convert(copy.deepcopy(model)).eval()
        converted = time.perf_counter() - start
        correct = torch.zeros(max(TIMESTEPS))
        agree = torch.zeros(max(TIMESTEPS))
        start = time.perf_counter()
        with torch.no_grad():
            for i in range(0, len(x), 100):
                functional.reset_net(snn)
                total = None
                for t in range(max(TIMESTEPS)):
                    step = snn(x[i : i + 100])
                    total = step if total is None else total + step
                    prediction = total.argmax(1)
                    correct[t] += (prediction == y[i : i + 100]).sum()
                    agree[t] += (prediction == reference[i : i + 100]).sum()
        results[label] = {
            "accuracy": {t: float(correct[t - 1]) / len(x) for t in TIMESTEPS},
            "agreement": {t: float(agree[t - 1]) / len(x) for t in TIMESTEPS},
            "convert_seconds": converted,
            "simulate_seconds": time.perf_counter() - start,
        }
    out.write_text(json.dumps(results))


def our_side(limit: int) -> dict:
    import spikeport as sp
    from spikeport.demo import demo_model

    model = demo_model(progress=False, log=lambda *a: None).eval()
    calibration, x, y = data(limit)
    results = {}
    for spec in ("calibrated", "calibrated[timesteps=4]", "ecc"):
        start = time.perf_counter()
        snn = sp.convert(model, calibration, spec)
        converted = time.perf_counter() - start
        start = time.perf_counter()
        ev = sp.evaluate(snn, (x, y), TIMESTEPS, ann=model, progress=False)
        results[f"spikeport {spec}"] = {
            "accuracy": ev.accuracy,
            "agreement": ev.agreement,
            "convert_seconds": converted,
            "simulate_seconds": time.perf_counter() - start,
            "ann_accuracy": ev.ann_accuracy,
        }
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=10000)
    parser.add_argument("--venv", default="results/peers-venv")
    parser.add_argument("--json", default="bench/results/peers.json")
    parser.add_argument("--peer-side", help=argparse.SUPPRESS)  # internal: run the peer side, write here
    args = parser.parse_args()
    if args.peer_side:
        peer_side(args.limit, Path(args.peer_side))
        return
    python = ensure_venv(Path(args.venv))
    ours = our_side(args.limit)
    peer_json = Path(args.json).with_suffix(".peer.json")
    peer_json.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [str(python), __file__, "--limit", str(args.limit), "--peer-side", str(peer_json)], check=True
    )
    peers = {
        k: {
            **v,
            "accuracy": {int(t): a for t, a in v["accuracy"].items()},
            "agreement": {int(t): a for t, a in v["agreement"].items()},
        }
        for k, v in json.loads(peer_json.read_text()).items()
    }
    everything = {**ours, **peers}
    ann = next(iter(ours.values()))["ann_accuracy"]
    print(f"demo CNN, MNIST, {args.limit} test images; ANN {100 * ann:.2f}%. Accuracy % (agreement %):\n")
    print("| method | " + " | ".join(f"T={t}" for t in TIMESTEPS) + " | convert s |")
    print("|:---|" + "---:|" * (len(TIMESTEPS) + 1))
    for label, r in everything.items():
        cells = " | ".join(f"{100 * r['accuracy'][t]:.2f} ({100 * r['agreement'][t]:.2f})" for t in TIMESTEPS)
        print(f"| {label} | {cells} | {r['convert_seconds']:.1f} |")
    best_peer = {t: max(r["accuracy"][t] for r in peers.values()) for t in TIMESTEPS}
    ours_best = {t: max(r["accuracy"][t] for r in ours.values()) for t in TIMESTEPS}
    ahead = {t: ours_best[t] >= best_peer[t] for t in TIMESTEPS}
    print(f"\nspikeport's best >= the best peer at every T: {all(ahead.values())} ({ahead})")
    Path(args.json).write_text(
        json.dumps({"ann_accuracy": ann, "results": everything, "ahead": ahead}, indent=2)
    )
    print(f"JSON: {args.json}")


if __name__ == "__main__":
    main()
