"""The in-memory dataset every loader returns."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset


@dataclass
class ArrayDataset(Dataset):
    """Inputs ``x`` (float32, [N, ...]) with optional integer labels ``y`` ([N])."""

    x: Tensor
    y: Tensor | None
    name: str = "data"

    def __post_init__(self) -> None:
        if self.y is not None and len(self.y) != len(self.x):
            raise ValueError(f"{self.name}: {len(self.x)} inputs but {len(self.y)} labels")

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, index: int):
        return self.x[index] if self.y is None else (self.x[index], self.y[index])

    def subset(self, n: int) -> ArrayDataset:
        """The first ``n`` samples."""
        return ArrayDataset(self.x[:n], None if self.y is None else self.y[:n], self.name)


def from_uint8(images, scale: float = 255.0) -> Tensor:
    """uint8 images as float32 in [0, 1]."""
    return torch.tensor(np.asarray(images)).float().div_(scale)
