"""ANN layers that torch.nn lacks: frontends emit them, the converter knows them."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class PaddedMaxPool2d(nn.Module):
    """A max-pool with uneven padding (TensorFlow's 'same': the extra pixel at the end), as one layer.

    The padding is -inf, so border windows take the max of their real pixels only. Keeping pad and pool in
    one module lets the converter treat it as one max-pool (a -inf pad alone is no signal a spike can carry).
    """

    def __init__(
        self,
        padding: tuple[int, int, int, int],  # left, right, top, bottom (F.pad's order)
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] | None = None,
    ):
        super().__init__()
        self.padding = tuple(padding)
        self.pool = nn.MaxPool2d(kernel_size, stride)

    def extra_repr(self) -> str:
        return f"padding={self.padding}"

    def forward(self, x: Tensor) -> Tensor:
        return self.pool(F.pad(x, self.padding, value=float("-inf")))
