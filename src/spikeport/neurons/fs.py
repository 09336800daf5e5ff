"""FS (few-spikes) neurons: a temporal code of at most one spike per neuron per step (Stöckl & Maass 2021).

A neuron first integrates its whole input ``x`` (the previous layer's K weighted steps), then runs K
steps of a fixed code: at step t it spikes when its potential reaches the threshold ``T(t)``, the spike
lowers the potential by ``h(t)`` and reaches the next layer with weight ``d(t)``. The next layer thus
receives ``sum_t d(t) z(t)``, the neuron's approximation of its activation function. With
``T = h = d = 2^-t`` the code is the binary expansion of ``x`` (most significant bit first), so a ReLU
becomes an exact K-bit quantiser; other activations get parameters fitted by gradient descent
(``spikeport.fs_fit``).

Spikes fire on ``v >= T(t)`` (the paper writes ``>``; ``>=`` makes the binary code a floor quantiser).
A homogeneous activation (ReLU) is coded in units of a per-layer or per-channel ``scale``, so one
binary code serves every layer; codes of other activations work in the ANN's own units (scale 1).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from spikeport.neurons.events import SpikingLayer, level_repr


@dataclass(frozen=True)
class FSCode:
    """The K-step parameters of one FS neuron, plus where its potential starts and its output's offset.

    ``start`` is added to the normalised input before the first step (half a code unit turns the binary
    code's floor into rounding to nearest); ``offset`` is added to the decoded output (a constant the next
    layer can take as bias; fitted codes of activations with negative values use it).
    """

    thresholds: tuple[float, ...]
    resets: tuple[float, ...]
    weights: tuple[float, ...]
    start: float = 0.0
    offset: float = 0.0

    def __post_init__(self) -> None:
        if not len(self.thresholds) == len(self.resets) == len(self.weights) >= 1:
            raise ValueError(
                "an FS code needs one threshold, reset and output weight per step, got "
                f"{len(self.thresholds)}, {len(self.resets)}, {len(self.weights)}"
            )

    @property
    def steps(self) -> int:
        return len(self.thresholds)

    def tensors(
        self, dtype: torch.dtype, device: torch.device | str = "cpu"
    ) -> tuple[Tensor, Tensor, Tensor]:
        def as_tensor(values: tuple[float, ...]) -> Tensor:
            return torch.tensor(values, dtype=dtype, device=device)

        return as_tensor(self.thresholds), as_tensor(self.resets), as_tensor(self.weights)

    def values(self, dtype: torch.dtype) -> tuple[list[float], list[float], list[float]]:
        """The parameters as Python numbers, each rounded to ``dtype``: exactly what tensors of that dtype hold."""
        thresholds, resets, weights = self.tensors(dtype)
        return thresholds.tolist(), resets.tolist(), weights.tolist()


# float32 holds 24 significant bits: the binary code (plus half a unit for rounding) stays exact up to here.
MAX_BINARY_STEPS = 22


def binary_code(steps: int, rounding: str = "nearest") -> FSCode:
    """The K-bit binary code of [0, 1): ``T = h = d = 2^-t``; ``rounding`` "floor" or "nearest".

    Decoded, it is ``min(floor(x * 2^K + start * 2^K), 2^K - 1) / 2^K`` for x >= 0 and 0 below: a ReLU
    clipped at 1 and quantised to K bits (test: tests/test_fs.py).
    """
    if not 1 <= steps <= MAX_BINARY_STEPS:
        raise ValueError(f"the binary FS code has 1 to {MAX_BINARY_STEPS} steps in float32, got {steps}")
    if rounding not in ("floor", "nearest"):
        raise ValueError(f"rounding must be 'floor' or 'nearest', got {rounding!r}")
    levels = tuple(2.0**-t for t in range(1, steps + 1))
    start = 2.0 ** -(steps + 1) if rounding == "nearest" else 0.0
    return FSCode(levels, levels, levels, start=start)


def fs_scan(x: Tensor, code: FSCode) -> tuple[Tensor, Tensor]:
    """Run ``code`` on the integrated inputs ``x`` ([B, ...]): returns (spikes [K, B, ...] in {0, 1}, decoded).

    ``decoded`` is ``sum_t d(t) z(t) + offset``, what the next layer receives. Pure: ``x`` is not changed.
    Three passes per step: with z in {0, 1}, ``v - h z`` and ``decoded + d z`` are exact products added
    with one rounding, so scalar ``alpha`` arguments give the very numbers of multiplying first (test).
    """
    thresholds, resets, weights = code.values(x.dtype)
    v = x + code.start if code.start else x.clone()
    spikes = x.new_empty(code.steps, *x.shape)
    decoded = None
    for t in range(code.steps):
        z = torch.ge(v, thresholds[t], out=spikes[t])  # 0/1 written as floats
        if t + 1 < code.steps:  # the potential after the last step is never read
            v.sub_(z, alpha=resets[t])
        decoded = torch.mul(z, weights[t]) if decoded is None else decoded.add_(z, alpha=weights[t])
    if code.offset:
        decoded += code.offset
    return spikes, decoded


def binary_levels(x: Tensor, code: FSCode) -> Tensor:
    """What the binary ``code`` decodes ``x`` ([B, ...], normalised) to, in units of 2^-K: integer levels.

    The binary code is a K-bit quantiser, ``clip(floor((x + start) 2^K), 0, 2^K - 1)``, and that is what
    its K steps compute to the last bit (tested for every K, on the level boundaries, for infinities and
    NaN, which never spikes: level 0). Computed directly it takes five in-place passes instead of three per
    step. ``x`` is overwritten.
    """
    top = 2.0**code.steps
    levels = x.add_(code.start).mul_(top).floor_().clamp_(0, top - 1)
    return levels.nan_to_num_(nan=0.0)  # a NaN potential never reaches a threshold: no spike


class FSNeuron(SpikingLayer):
    """FS neurons for one activation site: input ``[B, ...]`` integrated currents, output the decoded code.

    ``codes`` maps the number of steps K to a fitted code (None: the binary code with ``rounding``); the
    network's clock says which K runs. ``scale``
    (scalar or per channel, broadcastable) divides the input before coding and multiplies the output:
    the calibrated range of a homogeneous activation; 1 otherwise. Events are spikes, counted per step
    and per neuron while the clock records.
    """

    def __init__(
        self,
        activation: str,
        scale: Tensor,
        codes: dict[int, FSCode] | None = None,
        rounding: str = "nearest",
    ):
        super().__init__()
        self.activation = activation
        # None: the binary code, built on demand for any K up to MAX_BINARY_STEPS with this rounding.
        self.codes = None if codes is None else dict(codes)
        self.rounding = rounding
        self.register_buffer("scale", scale.detach().clone())

    @property
    def analytic(self) -> bool:
        return self.codes is None

    @property
    def signed(self) -> bool:
        """Spikes of either sign: the binary code of the magnitude, each spike carrying the sign."""
        return self.activation == "signed"

    def extra_repr(self) -> str:
        shown = level_repr(self.scale)
        steps = f"1..{MAX_BINARY_STEPS}" if self.analytic else ",".join(map(str, sorted(self.codes)))
        return f"activation={self.activation}, scale={shown}, steps={steps}"

    def supported_steps(self) -> list[int]:
        return list(range(1, MAX_BINARY_STEPS + 1)) if self.analytic else sorted(self.codes)

    def code(self, steps: int) -> FSCode:
        if self.analytic:
            return binary_code(steps, self.rounding)
        if steps not in self.codes:
            raise ValueError(
                f"no FS code for {self.activation} with K={steps} steps; this network has K = "
                f"{', '.join(map(str, sorted(self.codes)))} (fit more with `spikeport fit-fs {self.activation} "
                f"--steps {steps}` and convert again)"
            )
        return self.codes[steps]

    def forward(self, x: Tensor) -> Tensor:
        clock = self.running_clock()
        scale = self.scale.to(x.dtype)
        code = self.code(clock.steps)
        if self.analytic:  # the binary code's closed form: the same numbers, fewer passes
            sign = torch.sign(x) if self.signed else None
            levels = binary_levels(x.abs() / scale if self.signed else x / scale, code)
            if clock.recording:
                digits = binary_digits(levels.long(), clock.steps)  # the spikes, most significant first
                self.record(digits.reshape(clock.steps, x.shape[0], -1).sum(dim=1))
            levels.mul_(scale * 2.0**-clock.steps)  # both factors exact: one rounding, as before
            return levels if sign is None else levels.mul_(sign)
        spikes, decoded = fs_scan(x / scale, code)
        if clock.recording:
            self.record(spikes.reshape(clock.steps, x.shape[0], -1).sum(dim=1).double())
        return decoded * scale


def binary_digits(levels: Tensor, steps: int) -> Tensor:
    """The K binary digits, most significant first, of integer ``levels`` in [0, 2^K): [K, ...] floats."""
    shifts = torch.arange(steps - 1, -1, -1, device=levels.device).reshape(-1, *([1] * levels.dim()))
    return ((levels.unsqueeze(0) >> shifts) & 1).to(torch.float64)


class FSMaxPool(SpikingLayer):
    """Max-pooling of binary FS codes, sent on as the code of the winner.

    Binary codes arrive most significant digit first and each digit outweighs all later ones together, so
    a pool can pick its winner online (a candidate drops out at the first digit where another spikes and
    it does not) and forward the winner's spikes as they come: the output is the code of the maximum, one
    step behind at most. Signed codes (sign first, then the magnitude's digits) pick their winner online the
    same way, the smallest magnitude winning among negatives. Simulated on the decoded values (the same
    result), counting the winner's spikes. ``scale`` is the coding scale of the neurons before the pool.
    """

    is_neuron = False

    def __init__(self, pool: torch.nn.Module, scale: Tensor):
        super().__init__()
        self.pool = pool
        self.register_buffer("scale", scale.detach().clone())

    def forward(self, x: Tensor) -> Tensor:
        out = self.pool(x)
        clock = self.running_clock()
        if clock.recording:
            steps = clock.steps
            levels = (out.double().abs() / self.scale.double() * 2.0**steps).round_().long()
            digits = binary_digits(levels, steps)  # [K, B, ...]
            self.record(digits.reshape(steps, x.shape[0], -1).sum(dim=1))
        return out
