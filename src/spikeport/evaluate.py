"""sp.evaluate: accuracy, agreement, spikes, SOPs and energy at every step count, in as few runs as the
coding allows (a rate code: one run of max(T) steps per batch answers every T)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from spikeport import distributed
from spikeport.coding import Run
from spikeport.data import as_batches, resolved, sample_count
from spikeport.errors import DataError, InputError, OptionError
from spikeport.evaluation import AnalogLayerReport, Evaluation, LayerReport
from spikeport.graph.ops import ACTIVATION_MODULES
from spikeport.metrics import EnergyModel
from spikeport.network import SpikingNetwork, module_device
from spikeport.neurons import SpikingLayer
from spikeport.options import positive_ints
from spikeport.progress import reporting, track
from spikeport.report import method_label


def _zeros(size: int) -> Tensor:
    return torch.zeros(size, dtype=torch.float64)


class _RunTally:
    """Sums over the evaluation set for one run: hits per read-out row, events and costs per step."""

    def __init__(self, run: Run, rows: int, layers: list[str]):
        self.run = run
        self.correct, self.agree = _zeros(rows), _zeros(rows)
        self.spikes = {name: _zeros(run.steps) for name in layers}
        self.sops = {name: _zeros(run.steps) for name in layers}
        self.input_sops, self.input_macs = _zeros(run.steps), _zeros(run.steps)

    def add(self, sim, y: Tensor | None, reference: Tensor | None) -> None:
        predictions = sim.readout.argmax(dim=-1)  # [rows, B]
        if y is not None:
            self.correct += (predictions == y.unsqueeze(0)).sum(dim=1).double().cpu()
        if reference is not None:
            self.agree += (predictions == reference.unsqueeze(0)).sum(dim=1).double().cpu()
        for name in self.spikes:
            self.spikes[name] += sim.spikes[name].double().cpu()
            self.sops[name] += sim.sops[name].double().cpu()
        if sim.input_sops is not None:
            self.input_sops += sim.input_sops.cpu()
        if sim.input_macs is not None:
            self.input_macs += sim.input_macs.cpu()

    def tensors(self) -> list[Tensor]:
        return [
            self.correct,
            self.agree,
            *self.spikes.values(),
            *self.sops.values(),
            self.input_sops,
            self.input_macs,
        ]

    def replace(self, tensors: Iterator[Tensor]) -> None:
        """Take the summed tensors back, in ``tensors``' order."""
        self.correct, self.agree = next(tensors), next(tensors)
        self.spikes = {name: next(tensors) for name in self.spikes}
        self.sops = {name: next(tensors) for name in self.sops}
        self.input_sops, self.input_macs = next(tensors), next(tensors)


class _Tally:
    """Every run's sums, the ANN's hits and the sample count; reduced over processes in one all_reduce."""

    def __init__(self, tallies: list[_RunTally]):
        self.runs = tallies
        self.ann_correct = 0
        self.samples = 0
        self.labelled = True

    def all_reduce(self) -> None:
        """Sum the tallies of every torch.distributed process (counts: exact in any order)."""
        if not distributed.active():
            return
        parts = [t for run in self.runs for t in run.tensors()]
        parts.append(
            torch.tensor([self.ann_correct, self.samples, int(not self.labelled)], dtype=torch.float64)
        )
        summed = distributed.all_sum(torch.cat(parts))
        pieces = iter(summed.split([t.numel() for t in parts]))
        for run in self.runs:
            run.replace(pieces)
        self.ann_correct, self.samples, unlabelled = (int(v) for v in next(pieces))
        self.labelled = unlabelled == 0


def _on_device(snn: SpikingNetwork, x: Tensor, y: Tensor | None) -> tuple[Tensor, Tensor | None]:
    """A batch moved to where the network simulates, in its dtype."""
    x = x.to(device=snn.device, dtype=snn.dtype)
    return x, None if y is None else y.to(snn.device)


@torch.no_grad()
def _ann_predictions(ann: nn.Module, x: Tensor, classes: int) -> Tensor:
    """The reference ANN's classes for ``x``, computed wherever the ANN's weights are; an ANN with another
    number of classes than the network is refused (its agreement would read about 0, not an error)."""
    out = ann(x.to(module_device(ann)))
    if out.shape[-1] != classes:
        raise OptionError(
            f"ann= outputs {out.shape[-1]} classes, the network {classes}; pass the ANN it was converted from"
        )
    return out.argmax(dim=-1).to(x.device)


@contextmanager
def _evaluating(ann: nn.Module | None) -> Iterator[None]:
    """``ann`` in eval mode while it serves as reference, every module's own mode restored after: the model
    is the caller's (one in the middle of training must stay in train mode)."""
    modes = [(module, module.training) for module in ann.modules()] if ann is not None else []
    if ann is not None:
        ann.eval()
    try:
        yield
    finally:
        for module, training in modes:
            module.training = training


def _check_labels(y: Tensor, batch: int, samples: int, classes: int) -> None:
    """Labels must be class indices of the network, one per sample: any other would count as a wrong answer,
    silently."""
    if y.shape != (samples,):
        raise InputError(
            f"labels of batch {batch} have shape {list(y.shape)}; give one class index per sample, [{samples}]"
        )
    if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
        raise InputError(
            f"labels of batch {batch} are {str(y.dtype).removeprefix('torch.')}; give integer class indices "
            f"0..{classes - 1}"
        )
    bad = ((y < 0) | (y >= classes)).nonzero()
    if len(bad):
        sample = int(bad[0, 0])
        raise InputError(
            f"batch {batch} has label {int(y[sample])} at sample {sample}, but the network has "
            f"{classes} classes (labels 0..{classes - 1})"
        )


def describe_data(data) -> str:
    """Data in a few words, for titles: its spec, its name, or its kind."""
    if isinstance(data, str):
        return data
    if isinstance(data, tuple):
        return "(x, y) tensors"
    return getattr(data, "name", None) or type(data).__name__


def evaluate(
    snn: SpikingNetwork,
    data,
    timesteps: int | Iterable[int] = (1, 2, 4, 8, 16, 32, 64, 128),
    ann: nn.Module | None = None,
    *,
    batch_size: int = 100,
    limit: int | None = None,
    energy: EnergyModel | None = None,
    progress: bool = True,
) -> Evaluation:
    """Accuracy, agreement with ``ann``, spikes, SOPs and energy at each step count in ``timesteps``.

    ``data``: anything ``spikeport.data.as_batches`` accepts (default split: test). Labels are optional;
    without them only agreement and costs are reported. ``ann`` defaults to the ANN the network was
    converted from (BN folded), so agreement is always available. ``agreement[T]`` is the fraction of inputs on which
    the SNN after T steps predicts the ANN's class: the conversion loss, independent of labels. ``ann`` is
    run in eval mode and left in the mode it came in. ``timesteps``: an int or several (``[16]``, not ``"16"``);
    for a temporal code, code lengths K.
    """
    steps = positive_ints(timesteps, "timesteps")
    coding = snn.coding
    coding.check_steps(snn, steps)
    energy = energy or EnergyModel()
    ann = ann if ann is not None else snn.ann
    runs = coding.runs(steps)
    layers = list(snn.spiking_layers())
    rows = [1 + max(coding.readout_row(run, p) for p in run.points) for run in runs]
    tally = _Tally([_RunTally(run, r, layers) for run, r in zip(runs, rows, strict=True)])
    described = describe_data(data)  # for titles
    data = resolved(data)
    stage = f"simulating {coding.steps_symbol}={','.join(str(run.steps) for run in runs)}"
    total = None if distributed.active() else sample_count(data, limit)
    batches = distributed.shard(enumerate(as_batches(data, batch_size=batch_size, limit=limit)))
    with _evaluating(ann), reporting(method_label(snn.info), progress):
        for index, (x, y) in track(batches, stage, total, size=lambda batch: len(batch[1][0])):
            x, y = _on_device(snn, x, y)
            reference = None
            for number, run_tally in enumerate(tally.runs):
                sim = snn.simulate(x, run_tally.run.steps, record=True)
                if number == 0:  # labels and the ANN's answers, once per batch
                    classes = sim.readout.shape[-1]
                    if y is not None:
                        _check_labels(y, index, len(x), classes)
                    if ann is not None:
                        reference = _ann_predictions(ann, x, classes)
                        if y is not None:
                            tally.ann_correct += int((reference == y).sum())
                run_tally.add(sim, y, reference)
            tally.labelled = tally.labelled and y is not None
            tally.samples += x.shape[0]
    tally.all_reduce()
    if tally.samples == 0:
        raise DataError("evaluation data is empty")
    evaluation = _summarise(snn, tally, steps, ann is not None, energy)
    evaluation.model, evaluation.data = str(snn.info.get("model", "")), described
    return evaluation


def _summarise(
    snn: SpikingNetwork, tally: _Tally, steps: list[int], with_ann: bool, energy: EnergyModel
) -> Evaluation:
    """Per-step-count figures from the runs' sums: each step count read where its run answers it."""
    coding, n = snn.coding, tally.samples
    accuracy, agreement, spikes, sops, macs, priced, bits = {}, {}, {}, {}, {}, {}, {}
    # graded spikes: their synaptic ops cost more (``EnergyModel.sop_weight``) and carry more bits
    weights = {name: energy.sop_weight(layer.spike_bits) for name, layer in snn.spiking_layers().items()}
    event_bits = {name: _event_bits(layer) for name, layer in snn.spiking_layers().items()}
    layer_spikes: dict[str, dict[int, float]] = {name: {} for name in snn.spiking_layers()}
    layer_sops: dict[str, dict[int, float]] = {name: {} for name in snn.spiking_layers()}
    curves: dict[str, list] = {}
    once, per_run = _analog_ops(snn)
    for run in tally.runs:
        total_spikes = sum(run.spikes.values(), _zeros(run.run.steps)).cumsum(0)
        total_bits = sum((s * event_bits[k] for k, s in run.spikes.items()), _zeros(run.run.steps)).cumsum(0)
        total_sops = sum(run.sops.values(), run.input_sops.clone())
        total_priced = sum((s * weights[k] for k, s in run.sops.items()), run.input_sops.clone())
        cumulative_sops, cumulative_macs = total_sops.cumsum(0), run.input_macs.cumsum(0)
        cumulative_priced = total_priced.cumsum(0)
        per_layer = {name: (run.spikes[name].cumsum(0), run.sops[name].cumsum(0)) for name in run.spikes}
        for point in run.run.points:
            row, counted = coding.readout_row(run.run, point), coding.counted_steps(run.run, point) - 1
            accuracy[point] = float(run.correct[row]) / n if tally.labelled else None
            agreement[point] = float(run.agree[row]) / n if with_ann else None
            spikes[point] = float(total_spikes[counted]) / n
            bits[point] = float(total_bits[counted]) / n
            sops[point], macs[point] = (
                float(cumulative_sops[counted]) / n,
                float(cumulative_macs[counted]) / n,
            )
            priced[point] = float(cumulative_priced[counted]) / n
            for name, (layer_spike_sums, layer_sop_sums) in per_layer.items():
                layer_spikes[name][point] = float(layer_spike_sums[counted]) / n
                layer_sops[name][point] = float(layer_sop_sums[counted]) / n
        if coding.step_curves:  # a read-out after every step: keep each step's figures
            elapsed = torch.arange(1, run.run.steps + 1, dtype=torch.float64)
            analog = once + per_run * elapsed  # an analog op runs at every step of a rate code
            curves = {
                "accuracy": (run.correct / n).tolist() if tally.labelled else [None] * run.run.steps,
                "agreement": (run.agree / n).tolist() if with_ann else [None] * run.run.steps,
                "sops_per_image": (cumulative_sops / n).tolist(),
                "energy_per_image": energy.energy(
                    cumulative_priced / n, cumulative_macs / n + analog
                ).tolist(),
            }
    analog_layers = _analog_reports(snn, steps)
    analog = {t: sum(layer.ops_per_image[t] for layer in analog_layers) for t in steps}
    # The ANN's own analog ops; an activation computed on values is an SNN's stand-in for a neuron, not ANN work
    ann_analog = sum(
        layer.ops_per_sample
        for layer in snn.analog_layers().values()
        if not isinstance(layer.op, ACTIVATION_MODULES)
    )
    neurons = _neuron_count(snn)
    layers = _layer_reports(
        snn,
        steps,
        lambda name: {t: layer_spikes[name][t] for t in steps},
        lambda name: {t: layer_sops[name][t] for t in steps},
    )
    return Evaluation(
        timesteps=steps,
        samples=n,
        accuracy={t: accuracy[t] for t in steps},
        agreement={t: agreement[t] for t in steps},
        spikes_per_image={t: spikes[t] for t in steps},
        sops_per_image={t: sops[t] for t in steps},
        macs_per_image={t: macs[t] for t in steps},
        energy_per_image={t: energy.energy(priced[t], macs[t] + analog[t]) for t in steps},
        ann_accuracy=(tally.ann_correct / n) if (with_ann and tally.labelled) else None,
        ann_macs_per_image=snn.ann_macs_per_image,
        ann_energy_per_image=energy.energy(0, snn.ann_macs_per_image + ann_analog),
        method=dict(snn.info),
        energy_model={"joules_per_sop": energy.joules_per_sop, "joules_per_mac": energy.joules_per_mac},
        layers=layers,
        curves=curves,
        coding=coding.name,
        latency_steps={t: coding.latency(t) for t in steps},
        throughput={t: coding.throughput(t) for t in steps},
        spikes_per_neuron={t: spikes[t] / neurons for t in steps},
        spike_bits_per_image={t: bits[t] for t in steps},
        analog_ops_per_image=analog,
        ann_analog_ops_per_image=float(ann_analog),
        analog_layers=analog_layers,
    )


def _analog_work(snn: SpikingNetwork, layer) -> tuple[float, float]:
    """One analog op's work for one image: what it does once (a plain op on a constant, in a static prefix:
    nothing accumulated), and what it does each time it runs (``coding.analog_runs`` times a run)."""
    if layer.in_static_prefix and snn.static_input:
        return layer.ops_per_sample, 0.0
    return 0.0, layer.ops_per_sample + layer.extra_ops_per_sample


def _analog_ops(snn: SpikingNetwork) -> tuple[float, float]:
    """The analog work of one image: what runs once, and what runs every step (``_analog_work``, summed)."""
    works = [_analog_work(snn, layer) for layer in snn.analog_layers().values()]
    return sum(once for once, _ in works), sum(each for _, each in works)


def _analog_reports(snn: SpikingNetwork, steps: list[int]) -> list[AnalogLayerReport]:
    """Each analog op's work per image at every step count."""
    reports = []
    for name, layer in snn.analog_layers().items():
        once, each = _analog_work(snn, layer)
        ops = {t: once + each * snn.coding.analog_runs(t) for t in steps}
        reports.append(AnalogLayerReport(name, type(layer.op).__name__, ops))
    return reports


def _layer_reports(
    snn: SpikingNetwork,
    steps: list[int],
    spikes: Callable[[str], dict[int, float]],
    sops: Callable[[str], dict[int, float]],
) -> list[LayerReport]:
    """One report per spiking layer from its spikes and SOPs per image at each T (or K)."""
    reports = []
    for name, layer in snn.spiking_layers().items():
        size = int(layer.fanout.numel())
        per_image = spikes(name)
        reports.append(
            LayerReport(
                name=name,
                neurons=size,
                spikes_per_image=per_image,
                firing_rate={t: per_image[t] / (size * t) for t in steps},
                sops_per_image=sops(name),
                signed=_signed(layer),
                spike_bits=int(layer.spike_bits),
            )
        )
    return reports


def _signed(layer: SpikingLayer) -> bool:
    """Signed IF neurons, and FS neurons of signed sites, send spikes of either sign."""
    return bool(getattr(layer, "signed", False))


def _event_bits(layer: SpikingLayer) -> int:
    """Bits one event of ``layer`` carries: its magnitude's, plus one for a sign."""
    return int(layer.spike_bits) + _signed(layer)


def _neuron_count(snn: SpikingNetwork) -> int:
    """Neurons of the network (max-pools emit events but are no neurons)."""
    layers = snn.spiking_layers().values()
    return max(1, sum(int(layer.fanout.numel()) for layer in layers if layer.is_neuron))
