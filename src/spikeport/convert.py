"""sp.convert: prepare -> calibrate -> convert, in one call."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from spikeport.data import as_batches
from spikeport.distributed import shard
from spikeport.encoding import Encoding
from spikeport.errors import CalibrationError, ConversionError
from spikeport.graph.prepare import prepare
from spikeport.methods import make_method, parse_method
from spikeport.network import DEFAULT_MEMORY_BUDGET, SpikingNetwork, module_device
from spikeport.options import Count, Positive, check_fields


def model_dtype(model: nn.Module) -> torch.dtype:
    """The floating dtype the model computes in (float32 unless its weights say otherwise)."""
    return next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)


def calibration_batches(
    calibration,
    batch_size: int,
    limit: int | None,
    dtype: torch.dtype,
    sharded: bool = True,
    device: torch.device | str = "cpu",
):
    """A re-iterable source of calibration input batches (labels are not needed), on ``device``.

    Under torch.distributed each process gets its share of the batches (``sharded``).
    """

    def batches() -> Iterator[Tensor]:
        source = as_batches(
            calibration, batch_size=batch_size, limit=limit, split_default="train", role="calibration"
        )
        for x, _ in shard(source) if sharded else source:
            yield x.to(device=device, dtype=dtype)

    return batches


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
    method: str = "rmp",
    *,
    encoding: Encoding | str = "analog",
    encoding_scale: float = 1.0,
    seed: int = 0,
    calibration_samples: int | None = None,
    batch_size: int = 256,
    memory_budget: int | None = DEFAULT_MEMORY_BUDGET,
    **options,
) -> SpikingNetwork:
    """Convert ``model`` to a SpikingNetwork with ``method`` (``rmp``, ``ecc``, ``max``, ``percentile``, ``fs``).

    ``calibration`` is training data in any form ``spikeport.data.as_batches`` takes (a DataLoader, a
    Dataset, a tensor, ``(x, y)``, or a spec string such as ``"mnist:train"``); ``calibration_samples``
    caps how much of it is used. Method options (``reset``, ``initial_potential``, ``channelwise``,
    ``alpha``, ``percentile``, ``thresholding``, ``weight_bits``...) are passed as keywords or written
    into ``method`` (``"max[reset=soft]"``); keywords win. Calibration runs where the model's weights are
    (move the model to a GPU to calibrate there), and the network comes back on that device.
    """
    _ConvertSettings(encoding_scale, seed, calibration_samples, batch_size, memory_budget)
    name, written = parse_method(method)
    strategy = make_method(name, **{**written, **options})
    if not isinstance(model, nn.Module):
        raise ConversionError(f"expected a torch.nn.Module to convert, got {type(model).__name__}")
    dtype, device = model_dtype(model), module_device(model)  # calibration runs where the weights are
    batches = calibration_batches(calibration, batch_size, calibration_samples, dtype, device=device)
    everything = calibration_batches(calibration, batch_size, calibration_samples, dtype, False, device)
    example = next(everything(), None)  # every process traces the same first batch
    if example is None or example.shape[0] == 0:
        raise CalibrationError("calibration data is empty; pass at least one batch of training inputs")
    prepared = prepare(model, example)
    strategy.check(prepared)
    reference = copy.deepcopy(prepared.graph_module)  # agreement is measured against the ANN as given
    strategy.transform(prepared)
    info = {**strategy.describe(), "encoding": Encoding.parse(encoding).value, "notes": prepared.notes}
    return strategy.build(  # assembly places the network on the device of the prepared graph: the model's
        prepared,
        batches,
        ann=reference,
        encoding=encoding,
        encoding_scale=encoding_scale,
        seed=seed,
        memory_budget=memory_budget,
        info=info,
    )
