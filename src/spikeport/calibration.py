"""Calibration as a phase of its own: prepare -> calibrate -> convert, as in torch.ao.quantization.fx.

1. Prepare: trace, canonical ops, BN folded (``graph.prepare``, on the first calibration batch).
2. Calibrate: ``sp.calibrate(model, data)`` prepares the model exactly as ``sp.convert`` does, runs the ANN
   on the data with an observer (``graph.observers``) before every activation, and returns ``Statistics``:
   per activation, a channel-wise histogram of the positive inputs (fixed log2 bins) and their maxima.
   Layer-wise figures are exact reductions of it (counts sum over channels, maxima take the largest), so
   one ``Statistics`` serves every data-based method, layer- or channel-wise, at any percentile
   (``percentiles=False``: the maxima alone, 2.4 times faster on the MNIST CNN).
3. Convert: a method turns statistics into thresholds (or FS coding scales) and places its neurons.

    stats = sp.calibrate(model, "mnist:train")
    stats.thresholds(channelwise=False, percentile=99.9)   # inspect: a level per activation
    stats.save("stats.safetensors"); stats = sp.Statistics.load("stats.safetensors")
    snn = sp.convert(model, "mnist:train", "percentile", statistics=stats)   # no second pass over the data

Methods that read ANN statistics (``ecc``, ``max``, ``percentile``, and ``fs`` for its ReLU scales) say so
(``Method.shares_statistics``), and give the same network from shared statistics as from their own pass;
``sp.compare`` calibrates once for all of them. A method that changes the graph before calibration
(``weight_bits``, ``max_to_avg``, ``pool_before_neurons``) collects its own statistics. Without
``statistics=``, ``sp.convert`` collects only what its method needs.

Methods that calibrate on the SNN itself (``rmp``: each layer's input currents in the SNN converted so far;
``calibrated``: each layer fitted on the SNN fitted so far) use one simulation hook,
``SpikingNetwork.observing({layer: observer})``: inside the block the named neuron layers hand their
input currents, ``[steps, batch, ...]`` chunk by chunk, to the observers and emit nothing, the graph ends at
them, and ``snn.simulate`` runs as usual (the same chunks, encoding and static input as any run).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from spikeport.data import as_batches, resolved, sample_count
from spikeport.distributed import active, shard
from spikeport.errors import CalibrationError, SaveFormatError
from spikeport.graph.observers import HistogramStatistic, MaxStatistic
from spikeport.graph.prepare import PreparedModel, prepare
from spikeport.methods.base import Batches
from spikeport.methods.statistics import observe_activations
from spikeport.network import model_dtype, module_device
from spikeport.progress import reporting

FORMAT = "spikeport-statistics"
VERSION = 1

DEFAULT_BATCH_SIZE = 256  # calibration samples per forward pass
# Calibration reads the first 5,000 samples unless told otherwise (None: all). Thresholds read maxima and high
# percentiles, which 5,000 samples estimate well; every pass of rmp and calibrated simulates them.
DEFAULT_CALIBRATION_SAMPLES = 5000


def activation_shapes(prepared: PreparedModel) -> dict[str, tuple[int, ...]]:
    """Each activation's sample shape, by node name: what statistics of the prepared model describe."""
    return {n.name: tuple(n.meta["sample_shape"]) for n in prepared.activation_nodes()}


@dataclass
class CalibrationBatches:
    """A re-iterable source of calibration input batches (labels are not needed), on ``device``: each call
    starts a new pass. A spec string is loaded once, not on every pass. Under torch.distributed each process
    gets its share of the batches (``sharded``).
    """

    data: object  # any form ``as_batches`` takes
    batch_size: int
    limit: int | None
    dtype: torch.dtype
    sharded: bool = True
    device: torch.device | str = "cpu"

    def __post_init__(self) -> None:
        self.data = resolved(self.data, split_default="train")

    @property
    def samples(self) -> int | None:
        """How many samples one pass yields, where known without reading them (progress totals)."""
        return None if self.sharded and active() else sample_count(self.data, self.limit)

    def __call__(self) -> Iterator[Tensor]:
        source = as_batches(
            self.data, batch_size=self.batch_size, limit=self.limit, split_default="train", role="calibration"
        )
        for x, _ in shard(source) if self.sharded else source:
            yield x.to(device=self.device, dtype=self.dtype)


def prepared_model(
    model: nn.Module, calibration, batch_size: int, limit: int | None
) -> tuple[PreparedModel, Batches]:
    """The model prepared on the first calibration batch (every process traces the same one), and the
    calibration batches, where the model's weights are."""
    dtype, device = model_dtype(model), module_device(model)
    batches = CalibrationBatches(calibration, batch_size, limit, dtype, device=device)
    everything = replace(batches, sharded=False)
    example = next(everything(), None)
    if example is None or example.shape[0] == 0:
        raise CalibrationError("calibration data is empty; pass at least one batch of training inputs")
    return prepare(model, example), batches


@dataclass
class Statistics:
    """What calibration saw before each activation of one prepared model (see the module docstring)."""

    # By activation node name, channel-wise: histograms with their maxima, or maxima alone
    # (``calibrate(..., percentiles=False)``).
    histograms: dict[str, HistogramStatistic | MaxStatistic]
    shapes: dict[str, tuple[int, ...]]  # each activation's sample shape: what the statistics describe

    @property
    def percentiles(self) -> bool:
        """Whether these statistics hold histograms, so that percentiles can be read from them."""
        return all(isinstance(s, HistogramStatistic) for s in self.histograms.values())

    def level(self, name: str, channelwise: bool, percentile: float | None) -> Tensor:
        """The maximum (``percentile=None``) or a percentile of one activation, per channel or per layer."""
        statistic = self.histograms[name]
        if percentile is not None and not isinstance(statistic, HistogramStatistic):
            raise CalibrationError(
                f"these statistics hold maxima only, no percentile {percentile:g}: calibrate with "
                "sp.calibrate(..., percentiles=True)"
            )
        if percentile is None:
            return statistic.max if channelwise else statistic.max.max().reshape(1)
        if channelwise:
            return statistic.percentile(percentile)
        layer = HistogramStatistic(False, statistic.bins_per_octave)
        layer.max = statistic.max.max().reshape(1)
        layer.counts = statistic.counts.sum(dim=0, keepdim=True)
        return layer.percentile(percentile)

    def thresholds(self, channelwise: bool, percentile: float | None = None) -> dict[str, Tensor]:
        """The level of every activation, as data-based methods turn it into thresholds."""
        return {name: self.level(name, channelwise, percentile) for name in self.histograms}

    def check_describes(self, prepared: PreparedModel) -> None:
        """Refuse statistics of another model: its activations must be these, of these shapes."""
        shapes = activation_shapes(prepared)
        if shapes != self.shapes:
            raise CalibrationError(
                f"these statistics describe activations {self.shapes}, the model has {shapes}; calibrate this "
                "model (sp.calibrate) or convert without statistics="
            )

    def save(self, path: str | Path) -> Path:
        """A safetensors file: counts and maxima by activation, shapes in the header (no pickle)."""
        tensors = {}
        for name, statistic in self.histograms.items():
            if isinstance(statistic, HistogramStatistic):
                tensors[f"{name}/counts"] = statistic.counts.contiguous()
            tensors[f"{name}/max"] = statistic.max.contiguous()
        bins = {
            name: s.bins_per_octave
            for name, s in self.histograms.items()
            if isinstance(s, HistogramStatistic)
        }
        metadata = {
            "format": FORMAT,
            "version": str(VERSION),
            "shapes": json.dumps(self.shapes),
            "bins": json.dumps(bins),
        }
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file(tensors, str(path), metadata=metadata)
        return path

    @classmethod
    def load(cls, path: str | Path) -> Statistics:
        try:
            with safe_open(str(path), framework="pt") as handle:
                metadata = handle.metadata() or {}
            tensors = load_file(str(path))
            if metadata.get("format") != FORMAT or metadata.get("version") != str(VERSION):
                raise ValueError("not a spikeport statistics file of version 1 (written by Statistics.save)")
            shapes = {name: tuple(shape) for name, shape in json.loads(metadata["shapes"]).items()}
            bins = json.loads(metadata["bins"])
            histograms = {}
            for name in shapes:
                statistic = HistogramStatistic(True, int(bins[name])) if name in bins else MaxStatistic(True)
                statistic.max = tensors[f"{name}/max"]
                if name in bins:
                    statistic.counts = tensors[f"{name}/counts"]
                    if (
                        statistic.counts.shape[1] != statistic.bins
                        or statistic.counts.shape[0] != statistic.max.shape[0]
                    ):
                        raise ValueError(f"the tensors of {name!r} do not fit {bins[name]} bins per octave")
                histograms[name] = statistic
        except (SafetensorError, OSError, ValueError, KeyError, TypeError) as error:
            raise SaveFormatError(
                f"{path}: {str(error).splitlines()[0] if str(error) else type(error).__name__}"
            ) from None
        return cls(histograms, shapes)

    def __repr__(self) -> str:
        rows = ", ".join(f"{name}: max {float(s.max.max()):.4g}" for name, s in self.histograms.items())
        return f"Statistics({len(self.histograms)} activations; {rows})"


def collect_statistics(prepared: PreparedModel, batches: Batches, percentiles: bool = True) -> Statistics:
    """Run the prepared ANN on ``batches`` with a channel-wise histogram (or, without ``percentiles``, the
    maximum alone) before every activation."""
    statistic = HistogramStatistic if percentiles else MaxStatistic
    histograms = observe_activations(prepared, batches, lambda _: statistic(channelwise=True))
    return Statistics(histograms, activation_shapes(prepared))


def calibrate(
    model: nn.Module,
    data,
    *,
    calibration_samples: int | None = DEFAULT_CALIBRATION_SAMPLES,
    batch_size: int = DEFAULT_BATCH_SIZE,
    percentiles: bool = True,
    progress: bool = True,
) -> Statistics:
    """Statistics of ``model``'s activations on ``data`` (any form ``sp.convert`` takes as calibration).

    ``calibration_samples``: the first N samples (default 5,000; None: all).
    ``percentiles=False`` keeps the maxima alone (faster), enough for methods that read no percentile.
    ``progress``: report the pass over the data (``spikeport.progress``).
    """
    if not isinstance(model, nn.Module):
        raise CalibrationError(f"expected a torch.nn.Module to calibrate, got {type(model).__name__}")
    with reporting("calibrate", progress):
        prepared, batches = prepared_model(model, data, batch_size, calibration_samples)
        return collect_statistics(prepared, batches, percentiles)
