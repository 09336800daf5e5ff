"""The IDX format of (Fashion-)MNIST: a big-endian header, then raw uint8 data, optionally gzipped."""

from __future__ import annotations

import gzip
import math
import os
import zlib
from pathlib import Path

import numpy as np
import torch

from spikeport.data.arrays import ArrayDataset, from_uint8
from spikeport.errors import DataError

LABELS_MAGIC = 0x00000801  # unsigned bytes, 1 dimension
IMAGES_MAGIC = 0x00000803  # unsigned bytes, 3 dimensions
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"  # where Debian's dataset-fashion-mnist installs it


def read_idx(path: str | Path, magic: int) -> np.ndarray:
    """One IDX file as a uint8 array; the magic number, header and size are checked before trusting it."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            raw = f.read()
        if raw[:2] == b"\x1f\x8b":  # gzip, whatever the file is called
            raw = gzip.decompress(raw)
    except EOFError:
        raise DataError(f"{path}: truncated gzip data; re-download the file") from None
    except (OSError, zlib.error) as error:
        raise DataError(f"{path}: cannot read IDX file ({error}); re-download it") from None
    found = int.from_bytes(raw[:4], "big")
    if found != magic:
        raise DataError(
            f"{path}: bad magic number 0x{found:08x}, expected 0x{magic:08x}; "
            "is this the right (uncorrupted) IDX file?"
        )
    dims = magic & 0xFF
    header = 4 + 4 * dims
    if len(raw) < header:
        raise DataError(f"{path}: truncated IDX header ({len(raw)} bytes); re-download the file")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims))
    expected = header + math.prod(shape)  # Python ints: a forged header cannot overflow past the check
    if len(raw) != expected:
        problem = "truncated" if len(raw) < expected else "has trailing bytes"
        raise DataError(
            f"{path}: {problem}: header announces dims {shape} = {expected} bytes, file has {len(raw)}; "
            "re-download it"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def _find(directory: Path, stem: str) -> Path:
    for candidate in (directory / f"{stem}.gz", directory / stem):
        if candidate.is_file():
            return candidate
    raise DataError(
        f"{directory}: missing {stem}(.gz); an IDX folder holds the standard (Fashion-)MNIST files"
    )


def load_idx_dir(directory: str | Path, split: str, name: str = "idx") -> ArrayDataset:
    """A folder of the standard (Fashion-)MNIST IDX files; images become float32 [N, 1, H, W] in [0, 1]."""
    if split not in FILES:
        raise DataError(f"split must be 'train' or 'test', got {split!r}")
    directory = Path(directory)
    if not directory.is_dir():
        raise DataError(f"{directory}: no such folder of IDX files; check the path in idx:DIR")
    images_stem, labels_stem = FILES[split]
    images = read_idx(_find(directory, images_stem), IMAGES_MAGIC)
    labels = read_idx(_find(directory, labels_stem), LABELS_MAGIC)
    if len(images) != len(labels):
        raise DataError(
            f"{directory}: {len(images)} {split} images but {len(labels)} labels; files do not match"
        )
    return ArrayDataset(from_uint8(images).unsqueeze(1), torch.from_numpy(labels.astype(np.int64)), name)


def load_fashion_mnist(split: str) -> ArrayDataset:
    """Fashion-MNIST from the Debian package's folder, or ``$SPIKEPORT_FASHION_MNIST_DIR``."""
    directory = Path(os.environ.get("SPIKEPORT_FASHION_MNIST_DIR") or FASHION_MNIST_DIR)
    if not directory.is_dir():
        raise DataError(
            f"Fashion-MNIST not found in {directory}: `apt-get install dataset-fashion-mnist`, "
            "set SPIKEPORT_FASHION_MNIST_DIR to a folder of its IDX files, or use idx:DIR"
        )
    return load_idx_dir(directory, split, "fashion-mnist")
