"""CIFAR-10 in its standard python format (the cifar-10-batches-py folder of pickled batches)."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch

from spikeport.data.arrays import ArrayDataset, from_uint8
from spikeport.errors import DataError

FOLDER = "cifar-10-batches-py"
BATCHES = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
ROW = 3 * 32 * 32  # one image: the R, G and B planes of 32x32, each row-major


# The only globals a CIFAR-10 batch's pickle names: numpy's array, dtype and scalar rebuilders (under
# numpy 1's and numpy 2's module names), and _codecs.encode, with which Python 3 writes bytes at
# protocol 2. Anything else could run code, so it is refused.
ALLOWED_GLOBALS = {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy._core.numeric", "_frombuffer"),
    ("_codecs", "encode"),
}


class _BatchUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays, lists and dicts only, so a forged batch file cannot run code."""

    def __init__(self, file: BinaryIO, path: Path) -> None:
        super().__init__(file, encoding="bytes")
        self.path = path

    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in ALLOWED_GLOBALS:
            raise DataError(
                f"{self.path}: refuses to unpickle {module}.{name}; a CIFAR-10 batch holds only numpy "
                "arrays, lists and dicts; use the python-version batches of the official archive"
            )
        return super().find_class(module, name)


def _read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with open(path, "rb") as f:
            batch = _BatchUnpickler(f, path).load()
    except DataError:
        raise
    except Exception as error:  # a damaged pickle can raise almost anything
        raise DataError(
            f"{path}: not a readable CIFAR-10 batch ({type(error).__name__}); re-download it"
        ) from None
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        keys = sorted(batch) if isinstance(batch, dict) else type(batch).__name__
        raise DataError(f"{path}: a CIFAR-10 batch is a dict with b'data' and b'labels', got {keys}")
    data, labels = np.asarray(batch[b"data"]), np.asarray(batch[b"labels"])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != ROW:
        raise DataError(f"{path}: expected b'data' uint8 [N, {ROW}], got {data.dtype} {list(data.shape)}")
    if labels.shape != (len(data),) or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(
            f"{path}: expected {len(data)} integer labels, got {labels.dtype} {list(labels.shape)}"
        )
    return data, labels.astype(np.int64)


def load_cifar10(directory: str | Path, split: str) -> ArrayDataset:
    """``directory``: cifar-10-batches-py or its parent. Images: float32 [N, 3, 32, 32] in [0, 1]."""
    if split not in BATCHES:
        raise DataError(f"split must be 'train' or 'test', got {split!r}")
    directory = Path(directory)
    if (directory / FOLDER).is_dir():
        directory = directory / FOLDER
    if not directory.is_dir():
        raise DataError(f"{directory}: no such folder; cifar10:DIR takes the {FOLDER} folder or its parent")
    missing = [name for name in BATCHES[split] if not (directory / name).is_file()]
    if missing:
        raise DataError(
            f"{directory}: missing CIFAR-10 batch file(s) {', '.join(missing)}; "
            f"point cifar10:DIR at the python-version {FOLDER} folder"
        )
    parts = [_read_batch(directory / name) for name in BATCHES[split]]
    images = np.concatenate([data for data, _ in parts]).reshape(-1, 3, 32, 32)
    labels = np.concatenate([labels for _, labels in parts])
    return ArrayDataset(from_uint8(images), torch.from_numpy(labels), "cifar10")
