"""as_batches: every form of data a user may hand us, as (x, y-or-None) batches."""

from __future__ import annotations

from collections.abc import Iterator

from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from spikeport.data.arrays import ArrayDataset
from spikeport.data.specs import load_dataset
from spikeport.errors import DataError

Batch = tuple[Tensor, Tensor | None]


def _split(item) -> Batch:
    if isinstance(item, Tensor):
        return item, None
    if isinstance(item, list | tuple) and item and isinstance(item[0], Tensor):
        labels = item[1] if len(item) > 1 and isinstance(item[1], Tensor) else None
        return item[0], None if labels is None else labels.long()
    raise DataError(f"a batch must be a tensor or an (inputs, labels) pair, got {type(item).__name__}")


def _source(data, batch_size: int, split_default: str) -> Iterator[Batch]:
    if isinstance(data, str):
        data = load_dataset(data, default_split=split_default)
    if isinstance(data, ArrayDataset):
        data = (data.x, data.y)
    if isinstance(data, Tensor):
        data = (data, None)
    if isinstance(data, tuple) and len(data) == 2 and isinstance(data[0], Tensor):
        x, y = data
        for start in range(0, len(x), batch_size):
            yield x[start : start + batch_size], None if y is None else y[start : start + batch_size].long()
        return
    if isinstance(data, Dataset):
        data = DataLoader(data, batch_size=batch_size, shuffle=False)
    if isinstance(data, DataLoader):
        for item in data:
            yield _split(item)
        return
    raise DataError(
        f"cannot read data of type {type(data).__name__}; pass a DataLoader, a Dataset, a tensor, a tuple "
        "(x, y) of tensors, or a spec string such as 'mnist:test'"
    )


def as_batches(
    data, batch_size: int = 256, limit: int | None = None, split_default: str = "test"
) -> Iterator[Batch]:
    """Yield ``(x, y)`` batches (``y`` None without labels), at most ``limit`` samples in all."""
    remaining = limit
    for x, y in _source(data, batch_size, split_default):
        if remaining is not None:
            if remaining <= 0:
                return
            x, y = x[:remaining], None if y is None else y[:remaining]
            remaining -= len(x)
        if len(x):
            yield x, y


__all__ = ["as_batches"]
