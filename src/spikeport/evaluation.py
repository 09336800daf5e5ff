"""Evaluation: what a converted network gives at every number of time steps, in numbers."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from spikeport.coding import coding_named
from spikeport.plots import plot_evaluations
from spikeport.report import evaluation_markdown, method_label


@dataclass
class LayerReport:
    """One spiking layer: size, spikes and the synaptic operations its spikes cause, per image.

    A spiking max-pool is a layer too: its events are the gated spikes it sends on.
    """

    name: str
    neurons: int
    spikes_per_image: dict[int, float]
    firing_rate: dict[int, float]  # spikes per neuron per time step
    sops_per_image: dict[int, float]
    signed: bool = False  # spikes of either sign: each carries one bit more than a binary spike
    spike_bits: int = 1  # bits of magnitude per spike: 1 binary, more for graded spikes


@dataclass
class AnalogLayerReport:
    """One analog op (a normalisation, softmax, product...): the operations it costs per image at each T."""

    name: str
    op: str
    ops_per_image: dict[int, float]


@dataclass
class Evaluation:
    """Results of ``sp.evaluate``; every per-T field is a dict keyed by the number of time steps.

    ``curves`` holds accuracy, agreement and SOPs after *every* step 1..max(timesteps) of the same run, so
    the plot and ``latency`` need no further simulation. Units: accuracy and agreement are fractions (0..1),
    counts are per image, energies in joules (the ``_uj`` properties: microjoules).
    """

    timesteps: list[int]
    samples: int
    accuracy: dict[int, float | None]
    agreement: dict[int, float | None]
    spikes_per_image: dict[int, float]
    sops_per_image: dict[int, float]
    macs_per_image: dict[int, float]  # analog input current into the first layer(s), every step
    energy_per_image: dict[int, float]  # joules (``energy_per_image_uj``: microjoules, as tables print it)
    ann_accuracy: float | None
    ann_macs_per_image: int
    ann_energy_per_image: float  # joules
    method: dict = field(default_factory=dict)
    energy_model: dict = field(default_factory=dict)
    layers: list[LayerReport] = field(default_factory=list)
    curves: dict[str, list[float | None]] = field(default_factory=dict)
    # The coding's name (``spikeport.coding``): "rate", T steps give a read-out after T steps; "temporal"
    # (FS), ``timesteps`` are code lengths K and the read-out exists after ``latency_steps[K]`` steps.
    coding: str = "rate"
    latency_steps: dict[int, int] = field(default_factory=dict)
    throughput: dict[int, float] = field(default_factory=dict)  # images per time step, layers pipelined
    spikes_per_neuron: dict[int, float] = field(default_factory=dict)  # mean over all neurons, per image
    # Work outside the synapses (``graph.analog_cost``), priced like MACs in the energy: the SNN's at each T,
    # the ANN's per image, and per analog op.
    analog_ops_per_image: dict[int, float] = field(default_factory=dict)
    ann_analog_ops_per_image: float = 0.0
    analog_layers: list[AnalogLayerReport] = field(default_factory=list)
    # Bits the spikes carry per image (each spike's magnitude bits, plus one for a sign): what a binary
    # network's spike count is, for graded or signed spikes.
    spike_bits_per_image: dict[int, float] = field(default_factory=dict)
    # What was evaluated, for titles: the model's name and the data (a spec string, or its kind).
    model: str = ""
    data: str = ""

    @property
    def energy_per_image_uj(self) -> dict[int, float]:
        """Energy per image at each T in microjoules (µJ), the unit tables and plots use."""
        return {t: joules * 1e6 for t, joules in self.energy_per_image.items()}

    @property
    def ann_energy_per_image_uj(self) -> float:
        """The ANN's energy per image in microjoules (µJ)."""
        return self.ann_energy_per_image * 1e6

    def latency(self, target: float = 0.99, metric: str = "agreement") -> int | None:
        """First time step at which ``metric`` (agreement or accuracy) reaches ``target`` and stays there.

        For a temporal code: the latency of the shortest code from which every evaluated code reaches it.
        """
        return coding_named(self.coding).latency_reaching(self, target, metric)

    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2))
        return path

    @classmethod
    def from_json(cls, path: str | Path) -> Evaluation:
        return cls.from_dict(json.loads(Path(path).read_text()))

    @classmethod
    def from_dict(cls, raw: dict) -> Evaluation:
        """Inverse of ``to_dict`` (JSON turns the integer T keys into strings; this turns them back)."""
        raw = dict(raw)

        def keyed(d: dict) -> dict:
            return {int(k): v for k, v in d.items()}

        per_t = [
            "accuracy",
            "agreement",
            "spikes_per_image",
            "sops_per_image",
            "macs_per_image",
            "energy_per_image",
            "latency_steps",
            "throughput",
            "spikes_per_neuron",
            "analog_ops_per_image",
            "spike_bits_per_image",
        ]
        for key in per_t:
            if key in raw:
                raw[key] = keyed(raw[key])
        raw["layers"] = [
            LayerReport(
                **{
                    **layer,
                    **{k: keyed(layer[k]) for k in ("spikes_per_image", "firing_rate", "sops_per_image")},
                }
            )
            for layer in raw["layers"]
        ]
        raw["analog_layers"] = [
            AnalogLayerReport(**{**layer, "ops_per_image": keyed(layer["ops_per_image"])})
            for layer in raw.get("analog_layers", [])
        ]
        return cls(**raw)

    def to_markdown(self) -> str:
        return evaluation_markdown(self)

    def plot(self, path: str | Path, cost: str = "sops") -> Path:
        """Accuracy (or agreement) against T and against ``cost`` ("sops" or "energy") per image, the
        conversion loss against T and the firing rate of each layer, as a PNG (``spikeport.plots``)."""
        return plot_evaluations({method_label(self.method): self}, path, cost=cost)
