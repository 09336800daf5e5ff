"""sp.compare: several conversions of one model, measured on the same data — the energy–accuracy trade-off.

Each method is converted and evaluated exactly as ``sp.convert`` + ``sp.evaluate`` would; the comparison
only puts the results side by side (one table, one plot, one JSON).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from torch import nn

from spikeport.calibration import DEFAULT_BATCH_SIZE, DEFAULT_CALIBRATION_SAMPLES, calibrate
from spikeport.convert import DEFAULT_METHOD, convert, method_of
from spikeport.errors import OptionError
from spikeport.evaluate import evaluate
from spikeport.evaluation import Evaluation
from spikeport.methods import make_method, parse_method
from spikeport.metrics import EnergyModel
from spikeport.options import positive_ints
from spikeport.plots import plot_evaluations
from spikeport.progress import reporting
from spikeport.report import comparison_markdown

DEFAULT_METHODS = (DEFAULT_METHOD, "ecc", "rmp", "percentile")
DEFAULT_TIMESTEPS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
# Code lengths K at which temporal methods (fs) are evaluated, where their codes exist.
DEFAULT_CODES = (2, 3, 4, 5, 6, 8, 10, 12, 16)


@dataclass
class Comparison:
    """Evaluations by method label, plus how long each conversion and simulation took (seconds)."""

    evaluations: dict[str, Evaluation]
    seconds: dict[str, dict[str, float]] = field(default_factory=dict)

    def __getitem__(self, label: str) -> Evaluation:
        return self.evaluations[label]

    def to_markdown(self) -> str:
        return comparison_markdown(self.evaluations)

    def plot(self, path: str | Path, cost: str = "sops") -> Path:
        """Accuracy against T and against ``cost`` ("sops" or "energy") per image, one curve per method."""
        return plot_evaluations(self.evaluations, path, cost=cost)

    def to_json(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        raw = {
            "evaluations": {k: ev.to_dict() for k, ev in self.evaluations.items()},
            "seconds": self.seconds,
        }
        path.write_text(json.dumps(raw, indent=2))
        return path

    @classmethod
    def from_json(cls, path: str | Path) -> Comparison:
        raw = json.loads(Path(path).read_text())
        evaluations = {k: Evaluation.from_dict(v) for k, v in raw["evaluations"].items()}
        return cls(evaluations, raw.get("seconds", {}))


def method_specs(methods: Sequence[str] | Mapping[str, str]) -> dict[str, str]:
    """Label -> method spec; a list of specs labels each by itself. Specs are checked before any work."""
    specs = dict(methods) if isinstance(methods, Mapping) else {spec: spec for spec in methods}
    if not specs:
        raise OptionError("compare needs at least one method, e.g. methods=['ecc', 'rmp', 'percentile']")
    for spec in specs.values():
        name, options = parse_method(spec)
        make_method(name, **options)  # unknown names and options fail here, not after other conversions
    return specs


def compare(
    model: nn.Module,
    calibration,
    data,
    methods: Sequence[str] | Mapping[str, str] = DEFAULT_METHODS,
    timesteps: int | Iterable[int] = DEFAULT_TIMESTEPS,
    *,
    ann: nn.Module | None = None,
    codes: int | Iterable[int] = DEFAULT_CODES,
    calibration_samples: int | None = DEFAULT_CALIBRATION_SAMPLES,
    limit: int | None = None,
    batch_size: int = 100,
    energy: EnergyModel | None = None,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
    **options,
) -> Comparison:
    """Convert ``model`` with each method and evaluate every conversion on ``data`` at ``timesteps``.

    ``methods``: specs such as ``"ecc"`` or ``"max[reset=soft]"``, or a mapping label -> spec. ``options``
    go to every ``sp.convert`` call (e.g. ``encoding``). Agreement is measured against ``ann`` (default:
    ``model`` itself). Methods that read the ANN's statistics (ecc, max, percentile, fs) share one
    calibration pass (``sp.calibrate``). Temporal methods (``fs``) run the code lengths in ``codes`` that
    their networks have codes for, instead of ``timesteps``; tables and plots place both by latency.
    """
    specs = method_specs(methods)
    timesteps, codes = positive_ints(timesteps, "timesteps"), positive_ints(codes, "codes")
    strategies = {label: method_of(spec, options) for label, spec in specs.items()}
    sharing = {label for label, strategy in strategies.items() if strategy.shares_statistics()}
    statistics, calibrated = None, 0.0
    if len(sharing) > 1:  # one pass over the calibration data serves them all
        start = time.perf_counter()
        with reporting(f"calibrating once for {', '.join(sorted(sharing))}", progress):
            statistics = calibrate(
                model,
                calibration,
                calibration_samples=calibration_samples,
                batch_size=options.get("batch_size", DEFAULT_BATCH_SIZE),
                percentiles=any(strategies[label].reads_percentile() for label in sharing),  # else maxima do
            )
        calibrated = time.perf_counter() - start
        if log is not None:
            log(f"calibrated once for {', '.join(sorted(sharing))} in {calibrated:.1f} s")
    evaluations: dict[str, Evaluation] = {}
    seconds: dict[str, dict[str, float]] = {}
    for label, spec in specs.items():
        shared = statistics if label in sharing else None
        start = time.perf_counter()
        with reporting(label, progress):  # every bar and line of this method says which it is
            snn = convert(
                model,
                calibration,
                spec,
                calibration_samples=calibration_samples,
                statistics=shared,
                **options,
            )
            converted = time.perf_counter()
            steps = snn.coding.evaluation_steps(snn, timesteps, codes)
            evaluations[label] = evaluate(
                snn,
                data,
                steps,
                ann=ann if ann is not None else model,
                batch_size=batch_size,
                limit=limit,
                energy=energy,
            )
        seconds[label] = {"convert": converted - start, "simulate": time.perf_counter() - converted}
        if shared is not None:
            seconds[label]["calibrate (shared)"] = calibrated
        if log is not None:
            log(
                f"{label}: converted in {seconds[label]['convert']:.1f} s, simulated in {seconds[label]['simulate']:.0f} s"
            )
    return Comparison(evaluations, seconds)
