"""Fit FS codes to an activation function (Stöckl & Maass 2021 train them by gradient descent).

The K thresholds and resets are trained so that the decoded output of ``fs_scan`` matches the activation
on a dense grid of its input range. The spike is a step function; its gradient is replaced by that of a
steep sigmoid (a surrogate) whose steepness grows during training. Given the spikes, the output weights
and offset are a linear least-squares problem, solved exactly at every iteration (only thresholds and
resets follow the gradient).

Gradient descent alone finds poor codes for functions that grow like a ReLU (SiLU, GELU, hardswish,
measured: RMS error 0.046 for SiLU at K=16). Those start instead from a constructed code: S steps that
never reset (each adds a step to a staircase that follows ``f(x) - relu(x)``, the bounded bump) followed
by the binary ReLU code on the rest (0.022 at K=16). Increasing functions (sigmoid, tanh) also start
from the binary code of their output (sigmoid at K=16: 0.004 instead of 0.012). Every start is tried and
the three best are refined; the best code is kept.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
from torch import Tensor

from spikeport import progress
from spikeport.errors import OptionError
from spikeport.fs_codes import FSActivation, code_to_dict
from spikeport.neurons.fs import FSCode, fs_scan


@dataclass
class FitResult:
    activation: str
    steps: int
    code: FSCode
    max_error: float  # largest |code(x) - f(x)| on the grid over [low, high]
    rms_error: float
    low: float
    high: float
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return {
            "code": code_to_dict(self.code),
            "max_error": self.max_error,
            "rms_error": self.rms_error,
            "low": self.low,
            "high": self.high,
        }


class _Spike(torch.autograd.Function):
    """Heaviside step forward; the derivative of a sigmoid of width ``width`` backward."""

    @staticmethod
    def forward(ctx, u: Tensor, width: float) -> Tensor:
        ctx.save_for_backward(u)
        ctx.width = width
        return (u >= 0).to(u.dtype)

    @staticmethod
    def backward(ctx, grad: Tensor):
        (u,) = ctx.saved_tensors
        s = torch.sigmoid(u / ctx.width)
        return grad * s * (1 - s) / ctx.width, None


def _decode(x: Tensor, thresholds: Tensor, resets: Tensor, weights: Tensor, offset: Tensor, width: float):
    v = x
    out = torch.zeros_like(x) + offset
    spikes = []
    for t in range(thresholds.shape[0]):
        z = _Spike.apply(v - thresholds[t], width)
        v = v - resets[t] * z
        out = out + weights[t] * z
        spikes.append(z)
    return out, torch.stack(spikes, dim=1)


def _solve_weights(spikes: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    """Least-squares output weights and offset for fixed spikes ([N, K], 0/1)."""
    design = torch.cat([spikes, torch.ones(spikes.shape[0], 1, dtype=spikes.dtype)], dim=1)
    solution = torch.linalg.lstsq(design, target.unsqueeze(1), driver="gelsd").solution.squeeze(1)
    return solution[:-1], solution[-1]


def _binary_start(activation: FSActivation, steps: int) -> tuple[Tensor, Tensor]:
    """The binary code of ``x - low`` over the whole range."""
    span = activation.high - activation.low
    levels = torch.tensor([span * 2.0**-t for t in range(1, steps + 1)], dtype=torch.float64)
    return activation.low + levels, levels.clone()


def _staircase_breakpoints(x: Tensor, r: Tensor, pieces: int, grid: int = 256) -> Tensor:
    """Breakpoints of the least-squares piecewise-constant fit of ``r`` with ``pieces`` pieces (dynamic
    programming over a coarse grid)."""
    index = torch.linspace(0, len(x) - 1, grid).long()
    xs, rs = x[index], r[index]
    s1 = torch.cat([rs.new_zeros(1), rs.cumsum(0)])
    s2 = torch.cat([rs.new_zeros(1), (rs**2).cumsum(0)])
    i = torch.arange(grid + 1).unsqueeze(1)
    j = torch.arange(grid + 1).unsqueeze(0)
    length = (j - i).clamp_min(1).double()
    cost = s2[j] - s2[i] - (s1[j] - s1[i]) ** 2 / length  # [i, j]: squared error of segment [i, j)
    cost = torch.where(j > i, cost, torch.full_like(cost, math.inf))
    best = torch.full((grid + 1,), math.inf, dtype=torch.float64)
    best[0] = 0.0
    choices = []
    for _ in range(pieces):
        candidates = best.unsqueeze(1) + cost  # end previous pieces at i, next piece [i, j)
        best, arg = candidates.min(dim=0)
        choices.append(arg)
    cuts, end = [], grid
    for arg in reversed(choices):
        end = int(arg[end])
        cuts.append(end)
    cuts = sorted(c for c in cuts if c > 0)
    return torch.tensor([float((xs[c - 1] + xs[c]) / 2) for c in cuts], dtype=torch.float64)


def _relu_staircase_start(activation: FSActivation, steps: int, stairs: int) -> tuple[Tensor, Tensor]:
    """``stairs`` non-resetting steps for ``f - relu``, then the binary code of ``relu`` up to ``high``."""
    x = torch.linspace(activation.low, activation.high, 4096, dtype=torch.float64)
    bump = activation(x) - torch.relu(x)
    breakpoints = _staircase_breakpoints(x, bump, stairs + 1)
    levels = torch.tensor(
        [activation.high * 2.0**-t for t in range(1, steps - len(breakpoints) + 1)], dtype=torch.float64
    )
    resets = torch.cat([torch.zeros(len(breakpoints), dtype=torch.float64), levels])
    return torch.cat([breakpoints, levels]), resets


def _output_binary_start(activation: FSActivation, steps: int) -> tuple[Tensor, Tensor]:
    """For an increasing function: spikes that approximate the binary digits of its *output*.

    Digit t of ``(f(x) - f_min) / range`` is 1 when x passes ``g(p + 2^-t)``, g the inverse of f and p the
    value of the earlier digits. The neuron compares ``x - sum_s h_s z_s`` with ``T_t``, so ``T_t`` and the
    newest reset are chosen by least squares over all 2^(t-1) earlier digit patterns (exact for a linear f).
    """
    x = torch.linspace(activation.low, activation.high, 20001, dtype=torch.float64)
    y = torch.cummax(activation(x), dim=0).values  # increasing, for the inverse
    low, high = float(y[0]), float(y[-1])

    def inverse(p: Tensor) -> Tensor:
        index = torch.searchsorted(y, (low + p * (high - low)).clamp(low, high))
        return x[index.clamp(0, len(x) - 1)]

    thresholds, resets = [], []
    for t in range(1, steps + 1):
        earlier = min(t - 1, 14)  # the most significant digits decide; 2^14 patterns are plenty
        patterns = torch.arange(2**earlier).unsqueeze(1) >> torch.arange(earlier - 1, -1, -1)
        digits = (patterns & 1).double()
        weights = torch.tensor([2.0**-s for s in range(1, earlier + 1)], dtype=torch.float64)
        wanted = inverse(digits @ weights + 2.0**-t)
        if earlier == 0:
            thresholds.append(float(wanted[0]))
            continue
        known = digits[:, : len(resets)] @ torch.tensor(resets, dtype=torch.float64)
        design = torch.stack([torch.ones(len(wanted), dtype=torch.float64), digits[:, earlier - 1]], dim=1)
        solution = torch.linalg.lstsq(design, (wanted - known).unsqueeze(1)).solution.squeeze(1)
        thresholds.append(float(solution[0]))
        resets.append(float(solution[1]))
    resets += [0.0] * (steps - len(resets))
    return torch.tensor(thresholds, dtype=torch.float64), torch.tensor(resets, dtype=torch.float64)


def _starts(activation: FSActivation, steps: int) -> list[tuple[Tensor, Tensor]]:
    starts = [_binary_start(activation, steps)]
    if activation.increasing:
        starts.append(_output_binary_start(activation, steps))
    if activation.relu_like and steps >= 4:
        starts += [_relu_staircase_start(activation, steps, s) for s in range(1, steps - 2)]
    return starts


def _error(x: Tensor, target: Tensor, thresholds: Tensor, resets: Tensor) -> tuple[float, Tensor, Tensor]:
    """RMS error of the code with true steps and least-squares output weights, and those weights."""
    with torch.no_grad():
        _, spikes = _decode(x, thresholds, resets, torch.zeros_like(thresholds), 0.0, 1.0)
        weights, offset = _solve_weights(spikes, target)
        rms = float(torch.sqrt(torch.mean((spikes @ weights + offset - target) ** 2)))
    return rms, weights, offset


def _descend(
    x, target, thresholds, resets, iterations: int, span: float, stage: str
) -> tuple[Tensor, Tensor]:
    """Gradient descent on thresholds and resets (surrogate spikes, exact output weights); the best seen.
    ``stage``: what progress reports call it."""
    thresholds, resets = thresholds.clone().requires_grad_(True), resets.clone().requires_grad_(True)
    optimizer = torch.optim.Adam([thresholds, resets], lr=span * 1e-3)
    best = (math.inf, thresholds.detach().clone(), resets.detach().clone())
    for i in progress.steps(iterations, stage):
        width = span * 1e-2 * math.exp(-i / max(1, iterations - 1) * math.log(100.0))  # smooth to sharp
        rms, weights, offset = _error(x, target, thresholds, resets)
        if rms < best[0]:
            best = (rms, thresholds.detach().clone(), resets.detach().clone())
        out, _ = _decode(x, thresholds, resets, weights, offset, width)
        loss = torch.mean((out - target) ** 2)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return best[1], best[2]


def fit_code(
    activation: FSActivation,
    steps: int,
    *,
    iterations: int = 600,
    grid: int = 4096,
    samples: Tensor | None = None,
) -> FitResult:
    """Fit a K-step FS code to ``activation`` over its range: the best of the starts, each refined.

    With ``samples`` (inputs the activation sees, e.g. from calibration), three quarters of the fitting
    points are their quantiles, so the fit is weighted as the data are, and the RMS error is the data's.
    """
    if steps < 1 or iterations < 1:  # zero iterations would return a start, unfitted, as a fitted code
        raise OptionError(f"fit_code needs steps >= 1 and iterations >= 1, got {steps} and {iterations}")
    begin = time.perf_counter()
    x = torch.linspace(activation.low, activation.high, grid, dtype=torch.float64)
    if samples is not None:
        levels = torch.linspace(0, 1, 3 * grid // 4, dtype=torch.float64)
        quantiles = torch.quantile(samples.double().flatten()[: 1 << 24], levels)
        x = torch.cat([x[::4], quantiles.clamp(activation.low, activation.high)]).sort().values
    target = activation(x)
    span = activation.high - activation.low
    ranked = sorted(_starts(activation, steps), key=lambda tr: _error(x, target, *tr)[0])
    best: tuple[float, Tensor, Tensor] | None = None
    refined = ranked[:3]  # refine the three best starts
    for number, (thresholds, resets) in enumerate(refined, 1):
        stage = f"fitting the K={steps} code of {activation.name}, start {number}/{len(refined)}"
        thresholds, resets = _descend(x, target, thresholds, resets, iterations, span, stage)
        rms = _error(x, target, thresholds, resets)[0]
        if best is None or rms < best[0]:
            best = (rms, thresholds, resets)
    assert best is not None
    _, weights, offset = _error(x, target, best[1], best[2])
    code = FSCode(
        tuple(best[1].tolist()), tuple(best[2].tolist()), tuple(weights.tolist()), offset=float(offset)
    )
    check = torch.linspace(activation.low, activation.high, 4 * grid + 1, dtype=torch.float32)
    if samples is not None:
        check = x.float()
    _, decoded = fs_scan(check, code)  # measured as the network runs it: float32, true steps
    error = (decoded.double() - activation(check.double())).abs()
    return FitResult(
        activation=activation.name,
        steps=steps,
        code=code,
        max_error=float(error.max()),
        rms_error=float(torch.sqrt(torch.mean(error**2))),
        low=activation.low,
        high=activation.high,
        seconds=time.perf_counter() - begin,
    )
