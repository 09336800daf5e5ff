"""sp.convert: prepare -> calibrate -> convert, in one call."""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, fields

from torch import nn

from spikeport.calibration import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_CALIBRATION_SAMPLES,
    Statistics,
    prepared_model,
)
from spikeport.encoding import Encoding
from spikeport.errors import ConversionError, OptionError
from spikeport.methods import Method, make_method, parse_method
from spikeport.network import DEFAULT_MEMORY_BUDGET, SpikingNetwork
from spikeport.options import Count, Positive, check_fields
from spikeport.progress import note, reporting

# What sp.convert does without a method: the best general-purpose conversion on the zoo's held-out images
# (bench/zoo.py, docs/benchmarks.md): ecc's thresholds, one per channel, with 4-bit graded spikes converts in
# seconds and agreed with its ANN on >= 99.55 % of images from T = 16 on all 18 zoo nets (MNIST and
# Fashion-MNIST), where every binary method failed on some. For binary spikes (NIR export, binary hardware)
# name a method: ecc, calibrated[timesteps=T], rmp...
DEFAULT_METHOD = "ecc[spike_bits=4,channelwise=true]"


def method_of(method: str, options: dict) -> Method:
    """The method a spec names, with its written options and ``options`` (keywords win) that are not
    ``convert``'s own keywords."""
    name, written = parse_method(method)
    own = {f.name for f in fields(_ConvertSettings)} | {"encoding", "statistics"}
    return make_method(name, **{**written, **{k: v for k, v in options.items() if k not in own}})


@dataclass
class _ConvertSettings:
    """``convert``'s own keywords, checked like method options (a seed of 1.5, a budget of 0 bytes...)."""

    encoding_scale: Positive
    seed: int
    calibration_samples: Count | None
    batch_size: Count
    memory_budget: Count | None

    def __post_init__(self) -> None:
        check_fields(self, "sp.convert")


def convert(
    model: nn.Module,
    calibration,
    method: str = DEFAULT_METHOD,
    *,
    encoding: Encoding | str = "analog",
    encoding_scale: float = 1.0,
    seed: int = 0,
    calibration_samples: int | None = DEFAULT_CALIBRATION_SAMPLES,
    batch_size: int = DEFAULT_BATCH_SIZE,
    memory_budget: int | None = DEFAULT_MEMORY_BUDGET,
    statistics: Statistics | None = None,
    progress: bool = True,
    **options,
) -> SpikingNetwork:
    """Convert ``model`` to a SpikingNetwork with ``method`` (``ecc``, ``rmp``, ``max``, ``percentile``,
    ``calibrated``, ``qcfs``, ``fs``; default ``DEFAULT_METHOD``: ecc, channel-wise, with 4-bit graded spikes).

    ``calibration`` is training data in any form ``spikeport.data.as_batches`` takes (a DataLoader, a
    Dataset, a tensor, ``(x, y)``, or a spec string such as ``"mnist:train"``); ``calibration_samples``: its
    first N samples are used (default 5,000; None: all). Method options (``reset``, ``initial_potential``, ``channelwise``,
    ``alpha``, ``percentile``, ``thresholding``, ``weight_bits``...) are passed as keywords or written
    into ``method`` (``"max[reset=soft]"``); keywords win. Calibration runs where the model's weights are
    (move the model to a GPU to calibrate there), and the network comes back on that device.
    ``statistics``: what ``sp.calibrate`` collected on this model, for a method that reads ANN statistics
    (ecc, max, percentile; fs for its ReLU scales): its thresholds come from them, with no pass over the
    data. ``progress``: report each pass over the data and each fitting stage (``spikeport.progress``: bars
    in a terminal, a line per stage in a log).
    """
    _ConvertSettings(encoding_scale, seed, calibration_samples, batch_size, memory_budget)
    strategy = method_of(method, options)
    if statistics is not None and not strategy.shares_statistics():
        raise OptionError(
            f"method {method!r} does not calibrate on the statistics of the model as given (it simulates the SNN, "
            "or changes the graph first); convert without statistics="
        )
    if not isinstance(model, nn.Module):
        raise ConversionError(f"expected a torch.nn.Module to convert, got {type(model).__name__}")
    with reporting(method, progress):
        start = time.perf_counter()
        if isinstance(calibration, str):
            note(f"loading {calibration} to calibrate on")
        prepared, batches = prepared_model(model, calibration, batch_size, calibration_samples)
        if statistics is not None:
            statistics.check_describes(prepared)
            prepared.statistics = statistics
        strategy.check(prepared)
        samples = (
            f"{batches.samples} calibration samples" if batches.samples is not None else "calibration data"
        )
        note("converting on " + ("shared statistics" if statistics is not None else samples))
        reference = copy.deepcopy(prepared.graph_module)  # agreement is measured against the ANN as given
        strategy.transform(prepared)
        info = {
            **strategy.describe(),
            "encoding": Encoding.parse(encoding).value,
            "model": type(model).__name__,  # a name for titles; the CLI writes the file or factory it loaded
            "notes": prepared.notes,
        }
        snn = strategy.build(  # assembly places the network on the device of the prepared graph: the model's
            prepared,
            batches,
            ann=reference,
            encoding=encoding,
            encoding_scale=encoding_scale,
            seed=seed,
            memory_budget=memory_budget,
            info=info,
        )
        note(f"converted in {time.perf_counter() - start:.1f} s")
    return snn
