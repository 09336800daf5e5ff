"""CIFAR-10 in its standard python format (the cifar-10-batches-py folder)."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch

from spikeport.data.arrays import ArrayDataset, from_uint8
from spikeport.errors import DataError

BATCHES = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}


def _read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with open(path, "rb") as f:
            batch = pickle.load(f, encoding="bytes")
    except (OSError, pickle.UnpicklingError, EOFError, ValueError) as error:
        raise DataError(f"{path}: not a readable CIFAR-10 batch ({error})") from None
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        raise DataError(f"{path}: a CIFAR-10 batch is a dict with b'data' and b'labels'")
    data = np.asarray(batch[b"data"], dtype=np.uint8)
    labels = np.asarray(batch[b"labels"], dtype=np.int64)
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(labels) != len(data):
        raise DataError(f"{path}: expected data [N, 3072] and N labels, got {data.shape} and {labels.shape}")
    return data, labels


def load_cifar10(directory: str | Path, split: str) -> ArrayDataset:
    """``directory``: the cifar-10-batches-py folder or its parent. Images: float32 [N, 3, 32, 32] in [0, 1]."""
    directory = Path(directory)
    if (directory / "cifar-10-batches-py").is_dir():
        directory = directory / "cifar-10-batches-py"
    missing = [name for name in BATCHES[split] if not (directory / name).is_file()]
    if missing:
        raise DataError(f"{directory}: missing CIFAR-10 batch file(s) {', '.join(missing)} (python version)")
    parts = [_read_batch(directory / name) for name in BATCHES[split]]
    data = np.concatenate([p[0] for p in parts]).reshape(-1, 3, 32, 32)
    labels = np.concatenate([p[1] for p in parts])
    return ArrayDataset(from_uint8(data), torch.as_tensor(labels), "cifar10")
