"""ANN layers that torch.nn lacks: frontends emit them, the converter knows them (pools of one spelling, the
analog ops of transformers as modules of their own, spike sites); and QCFS, the activation of
conversion-aware training (``spikeport.qcfs``)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules.utils import _pair


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


class TiledAvgPool2d(nn.AvgPool2d):
    """``nn.AvgPool2d`` over non-overlapping, unpadded windows, computed as a sum of strided slices.

    The same numbers as ``F.avg_pool2d`` (each window summed in row-major order, then divided by its size;
    tested bit for bit) at a fraction of its time on CPU for NCHW tensors that fit in cache (``python
    bench/pools.py``: 0.29 ms against 0.84 ms for [100, 16, 28, 28]); its passes over the input cost more than
    the library's one where the input does not (9.2 against 4.4 ms for [100, 64, 32, 32], 26 MB), so larger
    inputs go to ``F.avg_pool2d``. The simulator pools every step, so assembly puts this in place of eligible
    average pools (``tiles``).
    """

    LARGE_INPUT_BYTES = 16 << 20  # half the 32 MB L3 of the machine measured

    @staticmethod
    def tiles(pool: nn.Module) -> bool:
        """Whether ``pool`` is an average pool this class computes exactly."""
        if type(pool) is not nn.AvgPool2d or _pair(pool.padding) != (0, 0) or pool.ceil_mode:
            return False
        return _pair(pool.kernel_size) == _pair(pool.stride) and pool.divisor_override is None

    @classmethod
    def like(cls, pool: nn.AvgPool2d) -> TiledAvgPool2d:
        return cls(pool.kernel_size, pool.stride, 0, False, pool.count_include_pad)

    def forward(self, x: Tensor) -> Tensor:
        if x.numel() * x.element_size() > self.LARGE_INPUT_BYTES:
            return super().forward(x)
        kh, kw = _pair(self.kernel_size)
        height, width = x.shape[-2] // kh * kh, x.shape[-1] // kw * kw  # floor mode drops the remainder
        tiles = [x[..., i:height:kh, j:width:kw] for i in range(kh) for j in range(kw)]
        if len(tiles) == 1:
            return tiles[0] / 1  # a fresh tensor, as from the pool
        total = torch.add(tiles[0], tiles[1])  # the first two tiles in one pass, not a copy and an add
        for tile in tiles[2:]:
            total.add_(tile)
        return total.div_(kh * kw)


class TiledMaxPool2d(nn.MaxPool2d):
    """``nn.MaxPool2d`` over non-overlapping, unpadded windows, computed as a maximum of strided slices.

    The same numbers as ``F.max_pool2d`` (a max is exact in any order; NaN wins in both) and on CPU 10-15 times
    faster for NCHW tensors (``python bench/pools.py``: 1.1 ms against 13.6 ms for [100, 64, 32, 32], 0.17
    against 2.6 for [100, 16, 28, 28]; PyTorch's CPU pool also computes the indices it then throws away).
    Spiking max-pools pool every step, so assembly puts this inside the eligible ones (``tiles``).
    """

    @staticmethod
    def tiles(pool: nn.Module) -> bool:
        """Whether ``pool`` is a max-pool this class computes exactly."""
        if type(pool) is not nn.MaxPool2d or pool.return_indices or pool.ceil_mode:
            return False
        if _pair(pool.padding) != (0, 0) or _pair(pool.dilation) != (1, 1):
            return False
        return _pair(pool.kernel_size) == _pair(pool.stride)

    @classmethod
    def like(cls, pool: nn.MaxPool2d) -> TiledMaxPool2d:
        return cls(pool.kernel_size, pool.stride)

    def forward(self, x: Tensor) -> Tensor:
        kh, kw = _pair(self.kernel_size)
        height, width = x.shape[-2] // kh * kh, x.shape[-1] // kw * kw  # floor mode drops the remainder
        rows = x[..., 0:height:kh, :width]
        if kh > 1:  # the first two rows of each window in one pass, not a copy and a maximum
            rows = torch.maximum(rows, x[..., 1:height:kh, :width])
            for i in range(2, kh):
                torch.maximum(rows, x[..., i:height:kh, :width], out=rows)
        best = torch.maximum(rows[..., 0::kw], rows[..., 1::kw]) if kw > 1 else rows.clone()
        for j in range(2, kw):
            torch.maximum(best, rows[..., j::kw], out=best)
        return best


def floor_straight_through(x: Tensor) -> Tensor:
    """floor(x) forward, identity backward (the straight-through estimator the method trains with)."""
    return x + (torch.floor(x) - x).detach()


class CappedReLU(nn.ReLU):
    """``min(max(x, 0), ceiling)``: ReLU6 (``ceiling=6``) and ``Hardtanh(0, c)``.

    A ReLU to every method (an ``nn.ReLU`` subclass): a neuron's rate saturates at its threshold anyway.
    Assembly caps the threshold (an FS code's scale) at the ceiling (``capped``), so the SNN never
    saturates above what the ANN does.
    """

    def __init__(self, ceiling: float = 6.0):
        super().__init__()
        if not ceiling > 0:
            raise ValueError(f"ceiling must be > 0, got {ceiling}")
        self.ceiling = float(ceiling)

    def extra_repr(self) -> str:
        return f"ceiling={self.ceiling:g}"

    def forward(self, x: Tensor) -> Tensor:
        return x.clamp(0, self.ceiling)


def clip_activation(low: float | None, high: float | None) -> nn.Module | None:
    """``clamp(x, low, high)`` as an activation: from 0 a ReLU, capped where ``high`` is finite (ReLU6);
    None for any other clip (it does not convert). The one rule every frontend and the tracer follow."""
    if low != 0 or (high is not None and not high > 0):
        return None
    return nn.ReLU() if high is None or math.isinf(high) else CappedReLU(float(high))


# Padding that converts exactly, by torch's mode names, as (1-d, 2-d) modules: zeros (absent spikes) or copies
# of the border (copied spike trains). A non-zero constant would be a current no neuron sends.
PADDING_MODULES: dict[str, tuple[type[nn.Module], type[nn.Module]]] = {
    "constant": (nn.ZeroPad1d, nn.ZeroPad2d),
    "reflect": (nn.ReflectionPad1d, nn.ReflectionPad2d),
    "replicate": (nn.ReplicationPad1d, nn.ReplicationPad2d),
    "circular": (nn.CircularPad1d, nn.CircularPad2d),
}


def capped(threshold: Tensor, activation: nn.Module) -> Tensor:
    """A neuron's threshold (or FS scale) for ``activation``: at most its ceiling where it has one."""
    return threshold.clamp(max=activation.ceiling) if isinstance(activation, CappedReLU) else threshold


class QCFS(nn.Module):
    """The QCFS activation with ``levels`` (L) steps and a learnable clip value ``threshold`` (lambda)."""

    def __init__(self, levels: int = 8, threshold: float = 8.0):
        super().__init__()
        if levels < 1:
            raise ValueError(f"levels must be >= 1, got {levels}")
        self.levels = int(levels)
        self.threshold = nn.Parameter(torch.tensor(float(threshold)))

    def extra_repr(self) -> str:
        return f"levels={self.levels}, threshold={float(self.threshold.detach()):.4g}"

    def forward(self, x: Tensor) -> Tensor:
        levels = self.levels
        steps = floor_straight_through(x / self.threshold * levels + 0.5)
        return torch.clamp(steps, 0, levels) / levels * self.threshold


class Softmax(nn.Module):
    """A softmax inside the network (attention weights), as its own op: unlike a softmax that ends the
    network, it cannot be dropped, and the converter computes it as an analog op."""

    def __init__(self, dim: int = -1):
        super().__init__()
        self.dim = int(dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"

    def forward(self, x: Tensor) -> Tensor:
        return torch.softmax(x, dim=self.dim)


class MatMul(nn.Module):
    """``a @ b`` of two signals (attention scores, attention times values): an analog op."""

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        return torch.matmul(a, b)


class ScaledDotProductAttention(nn.Module):
    """``F.scaled_dot_product_attention(q, k, v)`` without a mask from data: an analog op of three signals."""

    def __init__(self, is_causal: bool = False, scale: float | None = None):
        super().__init__()
        self.is_causal = bool(is_causal)
        self.scale = None if scale is None else float(scale)

    def extra_repr(self) -> str:
        return f"is_causal={self.is_causal}, scale={self.scale}"

    def forward(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        return F.scaled_dot_product_attention(q, k, v, is_causal=self.is_causal, scale=self.scale)


class SpikeSite(nn.Module):
    """Where the output of an analog op (a normalisation, an attention, a product) enters synapses.

    The identity in the ANN. Conversion calibrates it like an activation, on the magnitude of the signal, and
    puts signed spiking neurons there, so that the synapses after it are driven by spikes, not by analog
    values.
    """

    def forward(self, x: Tensor) -> Tensor:
        return x


class AnalogProduct(nn.Module):
    """The elementwise product of two signals (a squeeze-and-excitation gate times its features).

    No spiking neuron multiplies two signals, so this is an analog op, computed and counted as such.
    """

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        return a * b
