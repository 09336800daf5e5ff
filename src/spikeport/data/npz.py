"""Arrays in a NumPy .npz file: ``x`` (inputs, [N, ...]) and optionally ``y`` (integer labels, [N])."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import torch

from spikeport.data.arrays import ArrayDataset, from_uint8
from spikeport.errors import DataError


def load_npz(path: str | Path) -> ArrayDataset:
    """uint8 ``x`` is scaled by 1/255 like every image loader here; float ``x`` is taken as it is."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such .npz file; check the path in npz:FILE")
    try:
        loaded = np.load(path, allow_pickle=False)
        if isinstance(loaded, np.ndarray):
            raise DataError(
                f"{path}: holds one array, not an .npz; save it with numpy.savez(path, x=..., y=...)"
            )
        with loaded:
            found = dict(loaded)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise DataError(f"{path}: not a readable .npz file ({error}); save it with numpy.savez") from None
    if "x" not in found:
        names = ", ".join(sorted(found)) or "none"
        raise DataError(f"{path}: needs an array named 'x' (and optionally 'y'); found {names}")
    x, y = found["x"], found.get("y")
    if x.ndim == 0 or not (x.dtype == np.uint8 or np.issubdtype(x.dtype, np.floating)):
        raise DataError(f"{path}: 'x' must be a float or uint8 array [N, ...], got {x.dtype} {list(x.shape)}")
    if y is not None and (y.shape != (len(x),) or not np.issubdtype(y.dtype, np.integer)):
        raise DataError(
            f"{path}: 'y' must hold {len(x)} integer labels, got {y.dtype} {list(y.shape)}; "
            "save it with y.astype(int)"
        )
    inputs = from_uint8(x) if x.dtype == np.uint8 else torch.from_numpy(x.astype(np.float32))
    return ArrayDataset(inputs, None if y is None else torch.from_numpy(y.astype(np.int64)), path.stem)
