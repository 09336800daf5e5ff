"""FS temporal coding on a net that rate codes cannot express: SiLU activations and a squeeze-and-excitation gate.

A small CNN (conv-SiLU-avgpool, conv-SiLU, an SE block: global average, linear-SiLU, linear-sigmoid, gate x
features, avgpool, linear) is trained on real MNIST or Fashion-MNIST (cached after the first run), then:

- every rate-coded method is asked to convert it, and its error is printed (they must refuse, clearly);
- ``fs`` converts it with the shipped SiLU/sigmoid codes and runs at K = 8, 12, 16 on the test set:
  accuracy, agreement, spikes per neuron, SOPs, analog MACs (input and gate), latency;
- ``fs[fit=layer]`` fits a code per layer to its calibration inputs, once per K, and runs it.
Run: python bench/fs_silu.py [--data mnist|fashion-mnist] [--epochs 2] [--limit 10000] [--out results/fs-silu]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import spikeport as sp
from spikeport.data import load_dataset
from spikeport.train import accuracy, train_classifier


class SqueezeExcite(nn.Module):
    def __init__(self, channels: int, reduced: int):
        super().__init__()
        self.reduce = nn.Linear(channels, reduced)
        self.expand = nn.Linear(reduced, channels)

    def forward(self, x):
        s = x.mean(dim=(2, 3))
        s = torch.sigmoid(self.expand(F.silu(self.reduce(s))))
        return x * s.unsqueeze(-1).unsqueeze(-1)


class SiLUNet(nn.Module):
    def __init__(self, classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 5, padding=2)
        self.conv2 = nn.Conv2d(16, 32, 5, padding=2)
        self.se = SqueezeExcite(32, 8)
        self.fc = nn.Linear(32 * 7 * 7, classes)

    def forward(self, x):
        x = F.avg_pool2d(F.silu(self.conv1(x)), 2)
        x = self.se(F.silu(self.conv2(x)))
        return self.fc(F.avg_pool2d(x, 2).flatten(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="mnist", choices=["mnist", "fashion-mnist"])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--limit", type=int, default=10000, help="test images simulated")
    parser.add_argument("--codes", default="8,12,16", help="code lengths K")
    parser.add_argument("--out", default="results/fs-silu")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    train = load_dataset(args.data, "train")
    test = load_dataset(args.data, "test").subset(args.limit)
    shape = (1, 28, 28)
    model = SiLUNet()
    weights = out / f"silu-se-{args.data}-e{args.epochs}.pt"
    if weights.is_file():
        model.load_state_dict(torch.load(weights, weights_only=True))
    else:
        start = time.perf_counter()
        train_classifier(model, train.x.reshape(-1, *shape), train.y, epochs=args.epochs, lr=2e-3, seed=0)
        print(f"trained {args.epochs} epochs in {time.perf_counter() - start:.0f} s")
        torch.save(model.state_dict(), weights)
    model.eval()
    x_test = test.x.reshape(-1, *shape)
    print(f"ANN accuracy on {len(x_test)} test images: {100 * accuracy(model, x_test, test.y):.2f}%")
    calibration = train.x[:5000].reshape(-1, *shape)
    refusals = {}
    for method in ("rmp", "ecc", "max", "percentile"):
        try:
            sp.convert(model, calibration, method)
            refusals[method] = "CONVERTED (unexpected)"
        except sp.ConversionError as error:
            refusals[method] = str(error)
        print(f"{method}: {refusals[method]}")
    codes = [int(k) for k in args.codes.split(",")]
    start = time.perf_counter()
    snn = sp.convert(model, calibration, "fs", steps=max(codes))
    converted = time.perf_counter() - start
    ev = sp.evaluate(snn, (x_test, test.y), timesteps=codes, ann=model)
    print(f"converted in {converted:.1f} s; notes: {snn.info['notes']}")
    print(ev.to_markdown())
    ev.to_json(out / "fs.json")
    per_layer = {}
    for k in codes:  # codes fitted to each layer's own calibration inputs, one conversion per K
        start = time.perf_counter()
        own = sp.convert(model, calibration, "fs", steps=k, fit="layer")
        seconds = time.perf_counter() - start
        layer_ev = sp.evaluate(own, (x_test, test.y), timesteps=[k], ann=model, progress=False)
        per_layer[k] = {"accuracy": layer_ev.accuracy[k], "agreement": layer_ev.agreement[k]}
        print(
            f"fs[fit=layer] K={k}: accuracy {100 * layer_ev.accuracy[k]:.2f}% "
            f"({100 * (layer_ev.accuracy[k] - layer_ev.ann_accuracy):+.2f}), agreement "
            f"{100 * layer_ev.agreement[k]:.2f}%, {layer_ev.spikes_per_neuron[k]:.2f} spikes/neuron, "
            f"converted in {seconds:.1f} s"
        )
        for note in own.info["notes"]:
            print(f"  note: {note}")
    summary = {
        "data": args.data,
        "epochs": args.epochs,
        "test_images": len(x_test),
        "ann_accuracy": ev.ann_accuracy,
        "refusals": refusals,
        "fs": {k: {"accuracy": ev.accuracy[k], "agreement": ev.agreement[k]} for k in codes},
        "fs_fit_layer": per_layer,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"JSON: {out / 'fs.json'}, {out / 'summary.json'}")


if __name__ == "__main__":
    main()
