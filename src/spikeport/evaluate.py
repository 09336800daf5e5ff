"""sp.evaluate: one simulation of max(T) steps per batch gives the results for every T."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from spikeport import distributed
from spikeport.data import as_batches
from spikeport.errors import DataError, InputError, OptionError
from spikeport.evaluation import Evaluation, LayerReport
from spikeport.metrics import EnergyModel
from spikeport.network import SpikingNetwork, module_device
from spikeport.options import positive_ints


class _Tally:
    """Per-step sums over the whole evaluation set."""

    def __init__(self, steps: int):
        self.steps = steps
        self.correct = torch.zeros(steps, dtype=torch.float64)
        self.agree = torch.zeros(steps, dtype=torch.float64)
        self.spikes: dict[str, Tensor] = {}
        self.sops: dict[str, Tensor] = {}
        self.input_sops = torch.zeros(steps, dtype=torch.float64)
        self.input_macs = torch.zeros(steps, dtype=torch.float64)
        self.ann_correct = 0
        self.samples = 0
        self.labelled = True

    def add(self, name: str, table: dict[str, Tensor], per_step: Tensor) -> None:
        table[name] = table.get(name, torch.zeros(self.steps, dtype=torch.float64)) + per_step.double().cpu()

    def all_reduce(self, layers: list[str]) -> None:
        """Sum the tallies of every torch.distributed process (counts: exact in any order)."""
        if not distributed.active():
            return
        for table in (self.spikes, self.sops):
            for name in layers:
                table[name] = distributed.all_sum(
                    table.get(name, torch.zeros(self.steps, dtype=torch.float64))
                )
        for field in ("correct", "agree", "input_sops", "input_macs"):
            setattr(self, field, distributed.all_sum(getattr(self, field)))
        counts = torch.tensor([self.ann_correct, self.samples, int(not self.labelled)], dtype=torch.float64)
        self.ann_correct, self.samples, unlabelled = (int(v) for v in distributed.all_sum(counts))
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
    """Accuracy, agreement with ``ann``, spikes, SOPs and energy at each T in ``timesteps``.

    ``data``: anything ``spikeport.data.as_batches`` accepts (default split: test). Labels are optional;
    without them only agreement and costs are reported. ``ann`` defaults to the ANN the network was
    converted from (BN folded), so agreement is always available. ``agreement[T]`` is the fraction of inputs on which
    the SNN after T steps predicts the ANN's class: the conversion loss, independent of labels. ``ann`` is
    run in eval mode and left in the mode it came in. ``timesteps``: an int or several (``[16]``, not ``"16"``).
    """
    steps = positive_ints(timesteps, "timesteps")
    energy = energy or EnergyModel()
    ann = ann if ann is not None else snn.ann
    with _evaluating(ann):
        if snn.coding == "temporal":
            return _evaluate_codes(snn, data, steps, ann, batch_size, limit, energy, progress)
        return _evaluate_rates(snn, data, steps, ann, batch_size, limit, energy, progress)


def _evaluate_rates(
    snn: SpikingNetwork,
    data,
    steps: list[int],
    ann: nn.Module | None,
    batch_size: int,
    limit: int | None,
    energy: EnergyModel,
    progress: bool,
) -> Evaluation:
    """``evaluate`` for a rate code: one run of max(T) steps per batch gives every T."""
    tally = _Tally(steps[-1])
    progress = progress and distributed.is_main()
    bar = tqdm(desc=f"simulating T={steps[-1]}", unit="img", disable=not progress, leave=False)
    for index, (x, y) in distributed.shard(enumerate(as_batches(data, batch_size=batch_size, limit=limit))):
        x, y = _on_device(snn, x, y)
        sim = snn.simulate(x, steps[-1], record=True)
        predictions = sim.readout.argmax(dim=-1)  # [T, B]
        classes = sim.readout.shape[-1]
        if y is None:
            tally.labelled = False
        else:
            _check_labels(y, index, len(x), classes)
            tally.correct += (predictions == y.unsqueeze(0)).sum(dim=1).double().cpu()
        if ann is not None:
            reference = _ann_predictions(ann, x, classes)
            tally.agree += (predictions == reference.unsqueeze(0)).sum(dim=1).double().cpu()
            if y is not None:
                tally.ann_correct += int((reference == y).sum())
        for name in sim.spikes:
            tally.add(name, tally.spikes, sim.spikes[name])
            tally.add(name, tally.sops, sim.sops[name])
        if sim.input_sops is not None:
            tally.input_sops += sim.input_sops.cpu()
        if sim.input_macs is not None:
            tally.input_macs += sim.input_macs.cpu()
        tally.samples += x.shape[0]
        bar.update(x.shape[0])
    bar.close()
    tally.all_reduce(list(snn.spiking_layers()))
    if tally.samples == 0:
        raise DataError("evaluation data is empty")
    return _summarise(snn, tally, steps, ann is not None, energy)


def _summarise(
    snn: SpikingNetwork, tally: _Tally, steps: list[int], with_ann: bool, energy: EnergyModel
) -> Evaluation:
    n = tally.samples

    def at(series: Tensor) -> dict[int, float]:
        cumulative = series.cumsum(0)
        return {t: float(cumulative[t - 1]) / n for t in steps}

    total_spikes = at(sum(tally.spikes.values(), torch.zeros(tally.steps, dtype=torch.float64)))
    total_sops = sum(tally.sops.values(), tally.input_sops.clone())
    sops, macs = at(total_sops), at(tally.input_macs)
    accuracy_curve = (tally.correct / n).tolist() if tally.labelled else [None] * tally.steps
    agreement_curve = (tally.agree / n).tolist() if with_ann else [None] * tally.steps
    layers = _layer_reports(
        snn, steps, lambda name: at(tally.spikes[name]), lambda name: at(tally.sops[name])
    )
    ann_macs = snn.ann_macs_per_image
    neurons = _neuron_count(snn)
    return Evaluation(
        timesteps=steps,
        samples=n,
        accuracy={t: accuracy_curve[t - 1] for t in steps},
        agreement={t: agreement_curve[t - 1] for t in steps},
        spikes_per_image=total_spikes,
        sops_per_image=sops,
        macs_per_image=macs,
        energy_per_image={t: energy.energy(sops[t], macs[t]) for t in steps},
        ann_accuracy=(tally.ann_correct / n) if (with_ann and tally.labelled) else None,
        ann_macs_per_image=ann_macs,
        ann_energy_per_image=energy.energy(0, ann_macs),
        method=dict(snn.info),
        energy_model={"joules_per_sop": energy.joules_per_sop, "joules_per_mac": energy.joules_per_mac},
        layers=layers,
        latency_steps={t: t for t in steps},
        throughput={t: 1.0 / t for t in steps},
        spikes_per_neuron={t: total_spikes[t] / neurons for t in steps},
        curves={
            "accuracy": accuracy_curve,
            "agreement": agreement_curve,
            "sops_per_image": (total_sops.cumsum(0) / n).tolist(),
            "energy_per_image": energy.energy(
                total_sops.cumsum(0) / n, tally.input_macs.cumsum(0) / n
            ).tolist(),
        },
    )


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
            )
        )
    return reports


def _neuron_count(snn: SpikingNetwork) -> int:
    """Neurons of the network (max-pools emit events but are no neurons)."""
    layers = snn.spiking_layers().values()
    return max(1, sum(int(layer.fanout.numel()) for layer in layers if layer.is_neuron))


def _evaluate_codes(
    snn: SpikingNetwork,
    data,
    codes: list[int],
    ann: nn.Module | None,
    batch_size: int,
    limit: int | None,
    energy: EnergyModel,
    progress: bool,
) -> Evaluation:
    """``evaluate`` for a temporal code: one run per code length K, each a complete pass through the net."""
    missing = [k for k in codes if k not in snn.supported_steps()]
    if missing:
        raise OptionError(
            f"this FS network has no codes for K = {', '.join(map(str, missing))}; it runs K = "
            f"{', '.join(map(str, snn.supported_steps()))}"
        )
    n, ann_correct, labelled = 0, 0, True
    correct = dict.fromkeys(codes, 0)
    agree = dict.fromkeys(codes, 0)
    spikes: dict[int, dict[str, float]] = {k: {} for k in codes}  # per layer, summed over the images
    layer_sops: dict[int, dict[str, float]] = {k: {} for k in codes}
    macs = dict.fromkeys(codes, 0.0)
    bar = tqdm(
        desc=f"simulating K={','.join(map(str, codes))}",
        unit="img",
        disable=not (progress and distributed.is_main()),
        leave=False,
    )
    for index, (x, y) in distributed.shard(enumerate(as_batches(data, batch_size=batch_size, limit=limit))):
        x, y = _on_device(snn, x, y)
        runs = {k: snn.simulate(x, k, record=True) for k in codes}
        classes = runs[codes[0]].readout.shape[-1]
        if y is not None:
            _check_labels(y, index, len(x), classes)
        reference = None
        if ann is not None:
            reference = _ann_predictions(ann, x, classes)
            if y is not None:
                ann_correct += int((reference == y).sum())
        labelled = labelled and y is not None
        for k, sim in runs.items():
            prediction = sim.readout[-1].argmax(dim=-1)
            if y is not None:
                correct[k] += int((prediction == y).sum())
            if reference is not None:
                agree[k] += int((prediction == reference).sum())
            for name in sim.spikes:
                spikes[k][name] = spikes[k].get(name, 0.0) + float(sim.spikes[name].sum())
                layer_sops[k][name] = layer_sops[k].get(name, 0.0) + float(sim.sops[name].sum())
            macs[k] += float(sim.input_macs.sum())
        n += x.shape[0]
        bar.update(x.shape[0])
    bar.close()
    if distributed.active():  # sum every counter over the processes (integer-valued: exact)
        names = list(snn.spiking_layers())
        counters = [n, ann_correct, int(not labelled)]
        for k in codes:
            counters += [correct[k], agree[k], macs[k]]
            counters += [spikes[k].get(name, 0.0) for name in names] + [
                layer_sops[k].get(name, 0.0) for name in names
            ]
        summed = iter(distributed.all_sum(torch.tensor(counters, dtype=torch.float64)).tolist())
        n, ann_correct, labelled = int(next(summed)), int(next(summed)), next(summed) == 0
        for k in codes:
            correct[k], agree[k], macs[k] = int(next(summed)), int(next(summed)), next(summed)
            spikes[k] = {name: next(summed) for name in names}
            layer_sops[k] = {name: next(summed) for name in names}
    if n == 0:
        raise DataError("evaluation data is empty")
    with_ann = ann is not None
    neurons = _neuron_count(snn)
    total_spikes = {k: sum(spikes[k].values()) / n for k in codes}
    sops = {k: sum(layer_sops[k].values()) for k in codes}
    layers = _layer_reports(
        snn,
        codes,
        lambda name: {k: spikes[k][name] / n for k in codes},
        lambda name: {k: layer_sops[k][name] / n for k in codes},
    )
    return Evaluation(
        timesteps=codes,
        samples=n,
        accuracy={k: correct[k] / n if labelled else None for k in codes},
        agreement={k: agree[k] / n if with_ann else None for k in codes},
        spikes_per_image=total_spikes,
        sops_per_image={k: sops[k] / n for k in codes},
        macs_per_image={k: macs[k] / n for k in codes},
        energy_per_image={k: energy.energy(sops[k] / n, macs[k] / n) for k in codes},
        ann_accuracy=ann_correct / n if (with_ann and labelled) else None,
        ann_macs_per_image=snn.ann_macs_per_image,
        ann_energy_per_image=energy.energy(0, snn.ann_macs_per_image),
        method=dict(snn.info),
        energy_model={"joules_per_sop": energy.joules_per_sop, "joules_per_mac": energy.joules_per_mac},
        layers=layers,
        coding="temporal",
        latency_steps={k: snn.latency(k) for k in codes},
        throughput={k: snn.throughput(k) for k in codes},
        spikes_per_neuron={k: total_spikes[k] / neurons for k in codes},
    )
