"""The figure of one evaluation or a comparison, readable in a paper.

Four panels: accuracy (or agreement) against latency and against cost with the ANN as reference in both;
the conversion loss (images on which the SNN disagrees with its ANN) on a log axis, where the differences
between good conversions show; and each layer's firing rate. Time steps are labelled as numbers (1, 2, 4...),
the y range follows the data, and the title names the model, the data and the number of images.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from spikeport.coding import coding_named

if TYPE_CHECKING:
    from spikeport.evaluation import Evaluation

COSTS = {  # cost name -> (Evaluation field, axis label, scale, the ANN's own figure, its name)
    "sops": ("sops_per_image", "synaptic operations per image", 1.0, "ann_macs_per_image", "ANN MACs"),
    "energy": ("energy_per_image", "energy per image (µJ)", 1e6, "ann_energy_per_image", "ANN energy"),
}


def _plain_numbers(axis, values: list[float]) -> None:
    """Log-scaled ``axis`` (``"x"`` of an Axes) labelled in plain numbers: 1, 2, 4... for step counts,
    1k, 20k, 1M... for costs, with no overlapping minor labels when the span is short."""
    from matplotlib import ticker

    positive = [v for v in values if v and v > 0]
    if not positive:
        return
    low, high = min(positive), max(positive)
    if high / low < 1e3:  # short spans: ticks at 1, 2 and 5 of each decade
        axis.set_major_locator(ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(ticker.FuncFormatter(lambda v, _: _short(v)))
    axis.set_minor_formatter(ticker.NullFormatter())


def _short(value: float) -> str:
    for suffix, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if value >= size:
            return f"{value / size:g}{suffix}"
    return f"{value:g}"


def _steps_axis(axes, largest: int) -> None:
    """Time steps on a log2 axis labelled 1, 2, 4, 8... (never 4 x 10^0)."""
    from matplotlib import ticker

    axes.set_xscale("log", base=2)
    axes.xaxis.set_major_locator(ticker.LogLocator(base=2, numticks=max(2, largest.bit_length() + 1)))
    axes.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    axes.xaxis.set_minor_formatter(ticker.NullFormatter())


def _y_range(values: list[float], reference: float | None) -> tuple[float, float]:
    """Percent limits that hold every plotted value and the ANN's, with a small margin."""
    points = [v for v in values if v is not None] + ([reference] if reference is not None else [])
    if not points:
        return 0.0, 100.0
    low, high = min(points), max(points)
    margin = max(0.5, 0.05 * (high - low))
    return max(0.0, low - margin), min(100.0, high + margin)


def _title(evaluations: dict[str, Evaluation]) -> str:
    first = next(iter(evaluations.values()))
    model = first.model or "SNN"
    data = f" on {first.data}" if first.data else ""
    return f"{model}{data}, {first.samples} images"


def plot_evaluations(evaluations: dict[str, Evaluation], path: str | Path, cost: str = "sops") -> Path:
    """The four-panel figure of one or more evaluations of the same model on the same data, as a PNG."""
    import matplotlib.pyplot as plt

    fig = evaluation_figure(evaluations, cost)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def evaluation_figure(evaluations: dict[str, Evaluation], cost: str = "sops"):
    """The matplotlib figure ``plot_evaluations`` writes (the caller closes it)."""
    if cost not in COSTS:
        raise ValueError(f"cost must be one of {', '.join(COSTS)}, got {cost!r}")
    key, cost_label, scale, ann_key, ann_name = COSTS[cost]
    for label, ev in evaluations.items():
        if coding_named(ev.coding).step_curves and key not in ev.curves:
            raise ValueError(f"evaluation {label!r} has no per-step {key} (written by an older spikeport)")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import ticker

    fig, ((by_steps, by_cost), (loss, rates)) = plt.subplots(2, 2, figsize=(12, 8.5))
    first = next(iter(evaluations.values()))
    metric = "accuracy" if first.accuracy[first.timesteps[0]] is not None else "agreement"
    reference = 100 * first.ann_accuracy if metric == "accuracy" and first.ann_accuracy is not None else None
    if metric == "agreement":
        reference = 100.0  # the ANN agrees with itself
    plotted, costs_seen, largest = [], [], 1
    for label, ev in evaluations.items():
        coding = coding_named(ev.coding)
        steps, curve, costs = coding.series(ev, metric, key)
        percent = [None if v is None else 100 * v for v in curve]
        by_steps.plot(steps, percent, coding.plot_style, label=label)
        by_cost.plot([scale * v for v in costs], percent, coding.plot_style, label=label)
        plotted += percent
        costs_seen += [scale * v for v in costs]
        largest = max(largest, max(steps))
        if first.agreement[first.timesteps[0]] is not None:
            _, agreement, _ = coding.series(ev, "agreement", key)
            # a count of images (at least half of one) so that 100 % agreement stays on the log axis
            floor = 50 / ev.samples
            loss.plot(steps, [max(floor, 100 * (1 - a)) for a in agreement], coding.plot_style, label=label)
        last = ev.timesteps[-1]
        neurons = [layer for layer in ev.layers if layer.neurons]
        rates.plot(
            range(1, len(neurons) + 1),
            [layer.firing_rate[last] for layer in neurons],
            "o-",
            label=f"{label} ({coding.steps_symbol} = {last})",
        )
    ann_cost = scale * getattr(first, ann_key)
    costs_seen.append(ann_cost)
    for axes in (by_steps, by_cost):
        if reference is not None:
            axes.axhline(reference, color="grey", linestyle="--", linewidth=1, label="ANN")
        axes.set_ylim(*_y_range(plotted, reference))
    by_cost.axvline(ann_cost, color="grey", linestyle=":", linewidth=1, label=ann_name)
    ylabel = "accuracy (%)" if metric == "accuracy" else "agreement with the ANN (%)"
    by_steps.set(xlabel="latency: time steps until the read-out", ylabel=ylabel, title=f"{metric} vs latency")
    _steps_axis(by_steps, largest)
    by_cost.set(
        xscale="log",
        xlabel=cost_label,
        ylabel=ylabel,
        title=f"{metric} vs {'SOPs' if cost == 'sops' else cost}",
    )
    _plain_numbers(by_cost.xaxis, costs_seen)
    loss.set(
        yscale="log",
        xlabel="latency: time steps until the read-out",
        ylabel="images classified unlike the ANN (%)",
        title="conversion loss",
    )
    _steps_axis(loss, largest)
    loss.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    rates.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))
    rates.set_ylim(bottom=0)
    rates.set(
        xlabel="spiking layer (input to output)",
        ylabel="spikes per neuron per time step",
        title="firing rate per layer",
    )
    for axes in (by_steps, by_cost, loss, rates):
        axes.grid(True, which="major", alpha=0.3)
        if axes.get_legend_handles_labels()[0]:
            axes.legend(loc="best", fontsize="small")
    fig.suptitle(_title(evaluations))
    fig.tight_layout()
    return fig
