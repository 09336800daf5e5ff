"""Issue 7's bars on the demo CNN: ``calibrated`` at T = 1..32 on the 10,000 MNIST test images.

The demo CNN (``spikeport demo``'s, trained once and cached) is converted with ``calibrated`` (fitted for T = 8),
``calibrated[timesteps=4]`` and ``calibrated[simulated_fit=false]``, calibrating on 5,000 training images, and
evaluated against the ANN. Bars: loss <= 0.05 points at T = 8 and <= 0.3 at T = 4, agreement >= 99.7 % at T = 8.
Run: python bench/demo_bars.py [--device cuda] [--json bench/results/demo_bars.json]
(On a GPU, TF32 is off so that figures compare with the CPU's.)
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from devices import exact_float32, synchronize

import spikeport as sp
from spikeport.demo import demo_model

SPECS = ("calibrated", "calibrated[timesteps=4]", "calibrated[simulated_fit=false]")
TIMESTEPS = (1, 2, 4, 8, 16, 32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", default="bench/results/demo_bars.json")
    args = parser.parse_args()
    exact_float32(args.device)
    model = demo_model(progress=False).to(args.device)
    results = {}
    for spec in SPECS:
        start = time.perf_counter()
        snn = sp.convert(model, "mnist:train", spec, calibration_samples=5000)
        synchronize(args.device)
        converted = time.perf_counter() - start
        ev = sp.evaluate(snn, "mnist:test", TIMESTEPS, ann=model, progress=False)
        cells = {t: (100 * ev.accuracy[t], 100 * ev.agreement[t]) for t in TIMESTEPS}
        ann = 100 * ev.ann_accuracy
        print(
            f"{spec} (ANN {ann:.2f} %, converted in {converted:.1f} s): "
            + ", ".join(f"T={t} {a:.2f} ({a - ann:+.2f}; {g:.2f})" for t, (a, g) in cells.items()),
            flush=True,
        )
        results[spec] = {"ann_accuracy": ann, "convert_seconds": converted, "accuracy_agreement": cells}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps({"device": args.device, "results": results}, indent=1))
    print(f"JSON: {args.json}")


if __name__ == "__main__":
    main()
