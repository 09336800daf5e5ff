"""Tables and plots of evaluations, for people."""

from __future__ import annotations

from pathlib import Path

from spikeport.evaluation import Evaluation

# Agreement levels at which tables report the latency (steps) and the SOPs spent to get there.
LATENCY_TARGETS = (0.99, 0.999)


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.2f}"


def _count(value: float) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= size:
            return f"{value / size:.2f}{unit}"
    return f"{value:.0f}"


def evaluation_markdown(ev: Evaluation) -> str:
    """One row per T: accuracy, loss against the ANN, agreement, spikes, SOPs, MACs, energy."""
    name = ev.method.get("method", "snn")
    header = (
        f"**{name}** on {ev.samples} samples — ANN accuracy {_pct(ev.ann_accuracy)}%, "
        f"ANN {_count(ev.ann_macs_per_image)} MACs / {ev.ann_energy_per_image * 1e6:.3f} µJ per image\n\n"
        "| T | accuracy % | Δ vs ANN | agreement % | spikes/img | SOPs/img | MACs/img | energy/img µJ | energy vs ANN |\n"
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n"
    )
    rows = []
    for t in ev.timesteps:
        acc = ev.accuracy[t]
        delta = "–" if acc is None or ev.ann_accuracy is None else f"{100 * (acc - ev.ann_accuracy):+.2f}"
        ratio = ev.energy_per_image[t] / ev.ann_energy_per_image if ev.ann_energy_per_image else float("nan")
        rows.append(
            f"| {t} | {_pct(acc)} | {delta} | {_pct(ev.agreement[t])} | {_count(ev.spikes_per_image[t])} | "
            f"{_count(ev.sops_per_image[t])} | {_count(ev.macs_per_image[t])} | "
            f"{ev.energy_per_image[t] * 1e6:.3f} | {ratio:.2f}× |"
        )
    footer = ""
    for target in LATENCY_TARGETS:
        steps = ev.latency(target)
        if steps is not None:
            footer += f"\nLatency: {steps} steps to {100 * target:g}% agreement with the ANN."
    return header + "\n".join(rows) + ("\n" + footer if footer else "") + "\n"


def plot_evaluations(evaluations: dict[str, Evaluation], path: str | Path) -> Path:
    """Two panels: accuracy against time steps and against SOPs per image, one curve per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, (by_steps, by_sops) = plt.subplots(1, 2, figsize=(11, 4.2))
    ann_drawn = False
    for label, ev in evaluations.items():
        metric = "accuracy" if ev.curves["accuracy"][0] is not None else "agreement"
        curve = [100 * v for v in ev.curves[metric]]
        steps = list(range(1, len(curve) + 1))
        by_steps.plot(steps, curve, label=label)
        by_sops.plot(ev.curves["sops_per_image"], curve, label=label)
        if ev.ann_accuracy is not None and not ann_drawn:
            for axis in (by_steps, by_sops):
                axis.axhline(100 * ev.ann_accuracy, color="grey", linestyle="--", linewidth=1, label="ANN")
            ann_drawn = True
    ylabel = "accuracy %" if metric == "accuracy" else "agreement with ANN %"
    by_steps.set(xscale="log", xlabel="time steps T", ylabel=ylabel, title="accuracy vs time steps")
    by_sops.set(xscale="log", xlabel="synaptic operations per image", ylabel=ylabel, title="accuracy vs SOPs")
    top = max(100 * ev.ann_accuracy for ev in evaluations.values() if ev.ann_accuracy) if ann_drawn else 100
    for axis in (by_steps, by_sops):
        axis.set_ylim(max(0, top - 25), min(100, top + 2))
        axis.grid(True, which="both", alpha=0.3)
        axis.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _latency_cells(ev: Evaluation, target: float) -> str:
    """Steps until agreement stays at ``target`` and the SOPs per image spent by then (or: not reached)."""
    steps = ev.latency(target)
    if steps is None:
        return f"not within {len(ev.curves['agreement'])} | –"
    return f"{steps} | {_count(ev.curves['sops_per_image'][steps - 1])}"


def comparison_markdown(evaluations: dict[str, Evaluation]) -> str:
    """Methods side by side: accuracy (agreement) and SOPs per image at each T."""
    first = next(iter(evaluations.values()))
    labels = list(evaluations)
    header = "| T | " + " | ".join(f"{label} acc % (agree %) | {label} SOPs/img" for label in labels) + " |\n"
    header += "|---:|" + "---:|---:|" * len(labels) + "\n"
    rows = []
    for t in first.timesteps:
        cells = [
            f"{_pct(ev.accuracy[t])} ({_pct(ev.agreement[t])}) | {_count(ev.sops_per_image[t])}"
            for ev in evaluations.values()
        ]
        rows.append(f"| {t} | " + " | ".join(cells) + " |")
    for target in LATENCY_TARGETS:
        cells = [_latency_cells(ev, target) for ev in evaluations.values()]
        rows.append(f"| steps to {100 * target:g}% agreement | " + " | ".join(cells) + " |")
    ann = f"ANN: {_pct(first.ann_accuracy)}% accuracy, {_count(first.ann_macs_per_image)} MACs per image, "
    ann += f"{first.samples} test samples.\n\n"
    return ann + header + "\n".join(rows) + "\n"
