"""Arrays in a NumPy .npz file: ``x`` (inputs) and optionally ``y`` (labels)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import torch

from spikeport.data.arrays import ArrayDataset, from_uint8
from spikeport.errors import DataError


def load_npz(path: str | Path) -> ArrayDataset:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such .npz file")
    try:
        with np.load(path, allow_pickle=False) as arrays:
            found = dict(arrays)
    except (OSError, ValueError, zipfile.BadZipFile) as error:
        raise DataError(f"{path}: not a readable .npz file ({error})") from None
    if "x" not in found:
        raise DataError(
            f"{path}: needs an array named 'x' (and optionally 'y'); found {', '.join(found) or 'none'}"
        )
    x = found["x"]
    x = from_uint8(x) if x.dtype == np.uint8 else torch.as_tensor(x).float()
    y = torch.as_tensor(found["y"]).long() if "y" in found else None
    return ArrayDataset(x, y, path.stem)
