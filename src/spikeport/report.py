"""Tables and plots of evaluations, for people."""

from __future__ import annotations

from typing import TYPE_CHECKING

from spikeport.coding import coding_named
from spikeport.metrics import EnergyModel

if TYPE_CHECKING:
    from spikeport.evaluation import Evaluation

# Agreement levels at which tables report the latency (steps) and the SOPs spent to get there.
LATENCY_TARGETS = (0.99, 0.999)
# Comparison tables also report the cost of coming within this much of the ANN's accuracy (0.1 points).
ACCURACY_GAP = 0.001


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.2f}"


def _count(value: float) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= size:
            return f"{value / size:.2f}{unit}"
    return f"{value:.0f}"


def method_label(method: dict) -> str:
    """The method's name plus the options that change what the SNN is (e.g. quantised weights)."""
    label = method.get("method", "snn")
    if method.get("weight_bits"):
        label += f" ({method['weight_bits']}-bit weights)"
    if (method.get("spike_bits") or 1) > 1:
        label += f" ({method['spike_bits']}-bit spikes)"
    if method.get("max_to_avg"):
        label += " (max-pools as averages)"
    return label


def evaluation_markdown(ev: Evaluation) -> str:
    """One row per T (or code length K): accuracy, loss against the ANN, agreement, spikes, SOPs, energy."""
    name = method_label(ev.method)
    coding = coding_named(ev.coding)
    analog = bool(ev.analog_layers)
    bits = _carries_bits(ev)
    columns = coding.steps_header().count("|") + 10 + analog + bits
    header = (
        f"**{name}** on {ev.samples} samples — ANN accuracy {_pct(ev.ann_accuracy)}%, "
        f"ANN {_count(ev.ann_macs_per_image)} MACs{_ann_analog(ev)} / {ev.ann_energy_per_image * 1e6:.3f} µJ "
        "per image\n\n"
        f"| {coding.steps_header()} | accuracy % | Δ vs ANN | agreement % | spikes/img |"
        f"{' spike bits/img |' if bits else ''} spikes/neuron | SOPs/img | "
        f"MACs/img |{' analog ops/img |' if analog else ''} energy/img µJ | energy vs ANN |\n"
        "|" + "---:|" * columns + "\n"
    )
    rows = []
    for t in ev.timesteps:
        acc = ev.accuracy[t]
        delta = "–" if acc is None or ev.ann_accuracy is None else f"{100 * (acc - ev.ann_accuracy):+.2f}"
        ratio = ev.energy_per_image[t] / ev.ann_energy_per_image if ev.ann_energy_per_image else float("nan")
        per_neuron = ev.spikes_per_neuron.get(t)
        rows.append(
            f"| {coding.steps_cell(ev, t)} | {_pct(acc)} | {delta} | {_pct(ev.agreement[t])} | "
            f"{_count(ev.spikes_per_image[t])} | "
            + (f"{_count(ev.spike_bits_per_image[t])} | " if bits else "")
            + f"{'–' if per_neuron is None else f'{per_neuron:.2f}'} | "
            f"{_count(ev.sops_per_image[t])} | {_count(ev.macs_per_image[t])} | "
            + (f"{_count(ev.analog_ops_per_image[t])} | " if analog else "")
            + f"{ev.energy_per_image[t] * 1e6:.3f} | {ratio:.2f}× |"
        )
    footer = coding.table_notes(ev) + _graded_note(ev) + _analog_note(ev)
    for target in LATENCY_TARGETS:
        steps = ev.latency(target)
        if steps is not None:
            footer += f"\nLatency: {steps} step{'' if steps == 1 else 's'} to {100 * target:g}% agreement with the ANN."
    return header + "\n".join(rows) + ("\n" + footer if footer else "") + "\n"


def _carries_bits(ev: Evaluation) -> bool:
    """Whether some spikes carry more than one bit (graded or signed): then tables count the bits too."""
    return bool(ev.spike_bits_per_image) and any(layer.spike_bits > 1 or layer.signed for layer in ev.layers)


def _graded_note(ev: Evaluation) -> str:
    """How many bits graded spikes carry, and how the energy prices them."""
    graded = [layer for layer in ev.layers if layer.spike_bits > 1]
    if not graded:
        return ""
    widest = max(layer.spike_bits for layer in graded)
    weight = EnergyModel(**ev.energy_model).sop_weight(widest)
    return (
        f"\nGraded spikes: {len(graded)} of {len(ev.layers)} spiking layers send spikes of up to {widest} bits "
        f"({2**widest - 1} levels per step); spike bits/img counts them. Their synaptic ops are priced as "
        f"{weight:.3g} SOPs each in the energy (a shift-and-add per bit, at most a MAC)."
    )


def _ann_analog(ev: Evaluation) -> str:
    return f" + {_count(ev.ann_analog_ops_per_image)} analog ops" if ev.ann_analog_ops_per_image else ""


def _analog_note(ev: Evaluation) -> str:
    """What the analog ops cost, and a warning where they outweigh the spikes' synaptic work."""
    signed = [layer.name for layer in ev.layers if layer.signed]
    note = (
        f"\nSigned spikes: {len(signed)} of {len(ev.layers)} spiking layers send spikes of either sign (one bit "
        "more per spike)."
        if signed
        else ""
    )
    if not ev.analog_layers:
        return note
    last = ev.timesteps[-1]
    heaviest = max(ev.analog_layers, key=lambda layer: layer.ops_per_image[last])
    note += (
        f"\nAnalog ops (normalisations, softmax, products; not spike-driven, priced like MACs in the energy): "
        f"{len(ev.analog_layers)} ops, the heaviest {heaviest.name} ({heaviest.op}, "
        f"{_count(heaviest.ops_per_image[last])} per image at {last})."
    )
    if ev.analog_ops_per_image[last] > ev.sops_per_image[last]:
        ratio = ev.analog_ops_per_image[last] / max(ev.sops_per_image[last], 1.0)
        note += f" They dominate: {ratio:.1f}× the SOPs at {last}."
    return note


def _reached(ev: Evaluation, target: float, metric: str) -> str:
    """Steps until ``metric`` stays at ``target``, the SOPs per image and energy vs the ANN by then."""
    steps = ev.latency(target, metric)
    if steps is None:
        longest = max(ev.latency_steps.values(), default=len(ev.curves.get(metric, [])))
        return f"not within {longest} | – | –"
    sops, energy = coding_named(ev.coding).cost_at(ev, steps)
    ratio = f"{energy / ev.ann_energy_per_image:.2f}×" if energy and ev.ann_energy_per_image else "–"
    return f"{steps} | {_count(sops)} | {ratio}"


def comparison_markdown(evaluations: dict[str, Evaluation]) -> str:
    """Methods side by side: one row per (T or K, method), then the cost of reaching fixed quality levels.

    Rate-coded methods give a read-out after T steps; a temporal code (FS) of K steps per layer gives it
    after its latency (K x coded layers), which the latency column states for both.
    """
    first = next(iter(evaluations.values()))
    analog = any(ev.analog_layers for ev in evaluations.values())
    bits = any(_carries_bits(ev) for ev in evaluations.values())  # graded or signed spikes somewhere
    lines = [
        f"ANN: {_pct(first.ann_accuracy)}% accuracy, {_count(first.ann_macs_per_image)} MACs{_ann_analog(first)} and "
        f"{first.ann_energy_per_image * 1e6:.3f} µJ per image; {first.samples} test samples.",
        "",
        "| T or K | method | latency | accuracy % | Δ vs ANN | agreement % | spikes/img | "
        + ("spike bits/img | " if bits else "")
        + "SOPs/img | "
        + ("analog ops/img | " if analog else "")
        + "energy vs ANN |",
        "|---:|:---|---:|---:|---:|---:|---:|---:|"
        + ("---:|" if analog else "")
        + ("---:|" if bits else "")
        + "---:|",
    ]
    for t in sorted({t for ev in evaluations.values() for t in ev.timesteps}):
        for label, ev in evaluations.items():
            if t not in ev.timesteps:
                continue
            acc = ev.accuracy.get(t)
            delta = "–" if acc is None or ev.ann_accuracy is None else f"{100 * (acc - ev.ann_accuracy):+.2f}"
            ratio = (
                ev.energy_per_image[t] / ev.ann_energy_per_image if ev.ann_energy_per_image else float("nan")
            )
            lines.append(
                f"| {t} | {label} | {ev.latency_steps.get(t, t)} | {_pct(acc)} | {delta} | "
                f"{_pct(ev.agreement.get(t))} | {_count(ev.spikes_per_image[t])} | "
                + (f"{_count(ev.spike_bits_per_image.get(t, ev.spikes_per_image[t]))} | " if bits else "")
                + f"{_count(ev.sops_per_image[t])} | "
                + (f"{_count(ev.analog_ops_per_image.get(t, 0.0))} | " if analog else "")
                + f"{ratio:.2f}× |"
            )
    goals = [(f"{100 * target:g}% agreement", target, "agreement") for target in LATENCY_TARGETS]
    if first.ann_accuracy is not None:
        target = first.ann_accuracy - ACCURACY_GAP
        goals.append((f"ANN accuracy − {100 * ACCURACY_GAP:g} pt", target, "accuracy"))
    lines += [
        "",
        "Cost of reaching a quality level (steps until it holds for good, SOPs per image and energy vs the ANN "
        "by then):",
        "",
        "| method | " + " | ".join(f"{name}: steps | SOPs/img | energy" for name, _, _ in goals) + " |",
        "|:---|" + "---:|---:|---:|" * len(goals),
    ]
    for label, ev in evaluations.items():
        lines.append(f"| {label} | " + " | ".join(_reached(ev, t, m) for _, t, m in goals) + " |")
    return "\n".join(lines) + "\n"
