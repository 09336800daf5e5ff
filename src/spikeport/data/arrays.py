"""The in-memory dataset every loader returns, so callers never care which format the data came from."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from spikeport.errors import DataError


@dataclass
class ArrayDataset(Dataset):
    """Inputs ``x`` (float32, [N, ...]) with optional int64 class labels ``y`` ([N])."""

    x: Tensor
    y: Tensor | None
    name: str = "data"

    def __post_init__(self) -> None:
        if not isinstance(self.x, Tensor) or self.x.dim() == 0:
            raise DataError(f"{self.name}: inputs must be a tensor with a leading sample dimension")
        if self.y is not None and (not isinstance(self.y, Tensor) or self.y.shape != (len(self.x),)):
            shape = tuple(self.y.shape) if isinstance(self.y, Tensor) else type(self.y).__name__
            raise DataError(
                f"{self.name}: {len(self.x)} inputs need labels of shape ({len(self.x)},), got {shape}"
            )

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, index: int) -> Tensor | tuple[Tensor, Tensor]:
        return self.x[index] if self.y is None else (self.x[index], self.y[index])

    def subset(self, n: int) -> ArrayDataset:
        """The first ``n`` samples (all of them if there are fewer), e.g. a calibration set."""
        if n < 0:
            raise DataError(f"subset size must be >= 0, got {n}")
        return ArrayDataset(self.x[:n], None if self.y is None else self.y[:n], self.name)


def from_uint8(images: np.ndarray, scale: float = 255.0) -> Tensor:
    """uint8 pixels as float32 ``pixels / scale``; one place so every loader scales the same way."""
    return torch.from_numpy(np.array(images, dtype=np.float32)).div_(scale)


def normalise(x: Tensor, mean: Tensor | None, std: Tensor | None, where: str) -> Tensor:
    """``(x - mean) / std`` over channels (dimension 1 of a batch, 0 of one sample given ``x[None]``)."""
    for values, option in ((mean, "mean"), (std, "std")):
        if values is not None and len(values) > 1 and (x.dim() < 2 or x.shape[1] != len(values)):
            raise DataError(
                f"{where}: {option} has {len(values)} values but the inputs have "
                f"{x.shape[1] if x.dim() >= 2 else 'no'} channels (shape {tuple(x.shape[1:])}); give one value "
                "per channel or one for all"
            )

    def shaped(values: Tensor) -> Tensor:
        return values.reshape(-1, *([1] * (x.dim() - 2))) if len(values) > 1 else values.reshape(())

    if mean is not None:
        x = x - shaped(mean)
    if std is not None:
        x = x / shaped(std)
    return x
