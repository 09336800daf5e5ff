"""The IDX format of (Fashion-)MNIST: big-endian header, then raw uint8 data, optionally gzipped."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import torch

from spikeport.data.arrays import ArrayDataset, from_uint8
from spikeport.errors import DataError

UBYTE = 0x08
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"


def read_idx(path: Path) -> np.ndarray:
    """One IDX file as a uint8 array, with the header and size checked."""
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as error:
        raise DataError(f"{path}: cannot read IDX file ({error})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != UBYTE:
        raise DataError(f"{path}: not an unsigned-byte IDX file (bad magic number)")
    dims = raw[3]
    header = 4 + 4 * dims
    if len(raw) < header:
        raise DataError(f"{path}: truncated IDX header")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims))
    expected = header + int(np.prod(shape))
    if len(raw) != expected:
        raise DataError(f"{path}: IDX header announces {expected} bytes, file has {len(raw)} (truncated?)")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def _find(directory: Path, stem: str) -> Path:
    for candidate in (directory / f"{stem}.gz", directory / stem):
        if candidate.is_file():
            return candidate
    raise DataError(
        f"{directory}: missing {stem}(.gz); an IDX folder holds the standard (Fashion-)MNIST file names"
    )


def load_idx_dir(directory: str | Path, split: str, name: str = "idx") -> ArrayDataset:
    directory = Path(directory)
    if not directory.is_dir():
        raise DataError(f"{directory}: no such folder of IDX files")
    images_stem, labels_stem = FILES[split]
    images = read_idx(_find(directory, images_stem))
    labels = read_idx(_find(directory, labels_stem))
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise DataError(f"{directory}: images {images.shape} and labels {labels.shape} do not match")
    return ArrayDataset(from_uint8(images).unsqueeze(1), torch.as_tensor(labels.astype(np.int64)), name)


def load_fashion_mnist(split: str) -> ArrayDataset:
    directory = Path(os.environ.get("SPIKEPORT_FASHION_MNIST_DIR", FASHION_MNIST_DIR))
    if not directory.is_dir():
        raise DataError(
            f"Fashion-MNIST not found in {directory}: install it with `apt-get install dataset-fashion-mnist`, "
            "set SPIKEPORT_FASHION_MNIST_DIR, or use idx:DIR"
        )
    return load_idx_dir(directory, split, "fashion-mnist")
