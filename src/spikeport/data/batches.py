"""as_batches: every form of data a user may hand us, as (x, y-or-None) batches.

Conversion and evaluation take data in whatever form the user has; this is the one place that knows them all.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from spikeport.data.arrays import ArrayDataset
from spikeport.data.specs import load_dataset
from spikeport.errors import DataError, InputError

Batch = tuple[Tensor, Tensor | None]
DataSource = str | ArrayDataset | Dataset | DataLoader | Tensor | tuple[Tensor, Tensor | None]
ACCEPTED = (
    "a spec string such as 'mnist:test', a Dataset, a DataLoader, a tensor, or a tuple (x, y) of tensors"
)


def _split(item: object) -> Batch:
    """A DataLoader batch: a tensor x, or a list/tuple whose first two entries are x and (maybe) y."""
    if isinstance(item, Tensor):
        return item, None
    if isinstance(item, list | tuple) and item and isinstance(item[0], Tensor):
        labels = item[1] if len(item) > 1 and isinstance(item[1], Tensor) else None
        return item[0], None if labels is None else _labels(labels)
    raise DataError(
        f"a batch must be a tensor or an (inputs, labels) pair of tensors, got {type(item).__name__}"
    )


def _slices(x: Tensor, y: Tensor | None, batch_size: int) -> Iterator[Batch]:
    for start in range(0, len(x), batch_size):
        yield x[start : start + batch_size], None if y is None else _labels(y[start : start + batch_size])


def _labels(y: Tensor) -> Tensor:
    """Integer labels as int64; others as given, for the evaluator to refuse (``.long()`` would floor 0.7 to 0)."""
    return y if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool else y.long()


def _from_loader(loader: Iterable) -> Iterator[Batch]:
    for item in loader:
        yield _split(item)


def _tensor_pair(data: tuple) -> tuple[Tensor, Tensor | None]:
    x, y = data
    if not isinstance(x, Tensor) or not (y is None or isinstance(y, Tensor)):
        raise DataError(f"a tuple (x, y) must hold tensors, got ({type(x).__name__}, {type(y).__name__})")
    if x.dim() == 0:
        raise DataError("x must have a leading sample dimension, got a 0-d tensor")
    if y is not None and (y.dim() != 1 or len(y) != len(x)):
        raise DataError(f"(x, y): {len(x)} samples need labels of shape ({len(x)},), got {tuple(y.shape)}")
    return x, y


def _source(data: object, batch_size: int, split_default: str) -> Iterator[Batch]:
    """Batches of ``data``; raises at once (not on first use) when ``data`` is of no accepted kind."""
    if isinstance(data, str):
        data = load_dataset(data, default_split=split_default)
    if isinstance(data, ArrayDataset):
        return _slices(data.x, data.y, batch_size)
    if isinstance(data, Tensor):
        return _slices(*_tensor_pair((data, None)), batch_size)
    if isinstance(data, tuple) and len(data) == 2:
        return _slices(*_tensor_pair(data), batch_size)
    if isinstance(data, Dataset):
        return _from_loader(DataLoader(data, batch_size=batch_size, shuffle=False))
    if isinstance(data, DataLoader):
        return _from_loader(data)
    raise DataError(f"cannot read data of type {type(data).__name__}; pass {ACCEPTED}")


def _limited(batches: Iterator[Batch], limit: int | None) -> Iterator[Batch]:
    remaining = limit
    if remaining == 0:
        return
    for x, y in batches:
        if remaining is not None:
            x, y = x[:remaining], None if y is None else y[:remaining]
            remaining -= len(x)
        if len(x):
            yield x, y
        if remaining == 0:
            return  # before pulling another, maybe costly, batch


def _check_batch(x: Tensor, index: int, first: int, role: str) -> None:
    """Refuse integer images and non-finite values: either silently changes every threshold and result."""
    if not (x.is_floating_point() or x.is_complex()):
        low, high = (int(x.min()), int(x.max())) if x.numel() else (0, 0)
        raise InputError(
            f"{role} batch {index} is {str(x.dtype).removeprefix('torch.')} with values {low}..{high}, but the "
            "network takes floats; fix: scale it as the network was trained on, e.g. x.float() / 255"
        )
    if bool(torch.isfinite(x).all()):
        return
    where = (~torch.isfinite(x)).nonzero()[0].tolist()
    value = x[tuple(where)].item()
    raise InputError(
        f"{role} batch {index} has a non-finite value ({value}) at sample {first + where[0]}, "
        f"element ({', '.join(map(str, where[1:]))}): one such value skews every threshold and result; "
        "fix: clean or drop such samples"
    )


def _checked(batches: Iterator[Batch], role: str) -> Iterator[Batch]:
    first = 0
    for index, (x, y) in enumerate(batches):
        _check_batch(x, index, first, role)
        first += len(x)
        yield x, y


def resolved(data: DataSource, split_default: str = "test") -> DataSource:
    """``data`` with a spec string loaded (``split_default`` unless it names a split): what several passes
    over the same data read, so that the files are read once."""
    return load_dataset(data, default_split=split_default) if isinstance(data, str) else data


def sample_count(data: DataSource, limit: int | None = None) -> int | None:
    """How many samples ``as_batches(data, limit=limit)`` yields, where known without reading them: for
    arrays, tensors and sized datasets; None for a spec string (resolve it first) or an iterable dataset."""
    if isinstance(data, ArrayDataset | Tensor):
        count = len(data)
    elif isinstance(data, tuple) and len(data) == 2 and isinstance(data[0], Tensor):
        count = len(data[0])
    elif isinstance(data, DataLoader | Dataset):
        try:
            count = len(data.dataset if isinstance(data, DataLoader) else data)
        except TypeError:  # an IterableDataset has no length
            return None
    else:
        return None
    return count if limit is None else min(count, limit)


def as_batches(
    data: DataSource,
    batch_size: int = 256,
    limit: int | None = None,
    split_default: str = "test",
    role: str = "evaluation",
) -> Iterator[Batch]:
    """Yield ``(x, y)`` batches (``y`` int64, or None without labels), at most ``limit`` samples in all.

    A DataLoader's batches come as it makes them (its own batch size); everything else is cut into
    ``batch_size`` pieces in order. A spec string loads ``split_default`` unless it names a split.
    Integer or non-finite inputs raise InputError, naming ``role`` (what the data is for) and the spot.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise DataError(f"batch_size must be a positive integer, got {batch_size!r}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise DataError(f"limit must be None or an integer >= 0, got {limit!r}")
    return _checked(_limited(_source(data, batch_size, split_default), limit), role)


__all__ = ["Batch", "DataSource", "as_batches"]
