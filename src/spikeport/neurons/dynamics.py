"""Integrate-and-fire dynamics as small pure functions over explicit state.

Currents are in the ANN's units: a neuron with threshold ``theta`` that spikes emits ``theta`` (not 1),
so the spike train's running mean approximates ``clip(x, 0, theta)`` directly. This is the same network as
the textbook one with binary spikes and weights rescaled by ``theta_prev / theta`` (Diehl 2015), but it keeps
biases, residual additions and concatenations in one consistent scale without touching any weight.
"""

from __future__ import annotations

import torch
from torch import Tensor

from spikeport.choices import Choice
from spikeport.neurons import cpu_scan, fused_scan
from spikeport.neurons.layout import outputs_like

BINARY = 1  # spike levels of a binary neuron: one spike of one threshold per step at most


class Reset(Choice):
    """What happens to the membrane after a spike."""

    SOFT = "soft"  # reset by subtraction, V <- V - Vth (RMP): the residual charge is kept
    HARD = "hard"  # reset to zero, V <- 0 (Diehl 2015): the residual charge is lost


def if_step(v: Tensor, current: Tensor, threshold: Tensor, reset: Reset) -> tuple[Tensor, Tensor]:
    """One step of an integrate-and-fire neuron: returns (new membrane, spikes in {0, 1})."""
    v = v + current
    spikes = (v >= threshold).to(v.dtype)
    v = v - spikes * threshold if reset is Reset.SOFT else v * (1.0 - spikes)
    return v, spikes


def if_scan(
    v: Tensor,
    currents: Tensor,
    threshold: Tensor,
    reset: Reset,
    *,
    update_state: bool = False,
    out: Tensor | None = None,
    levels: int = BINARY,
) -> tuple[Tensor, Tensor]:
    """Run ``if_step`` over the leading time axis of ``currents`` ([t, B, ...]).

    Returns the final membrane and the output ``spikes * threshold`` for every step. Works in place with
    cheap same-dtype kernels (measured: a comparison written as floats is 2.5x faster than a bool
    mask converted afterwards, and ``where``/``masked_fill`` are slower still): on a private copy of ``v``,
    or, with ``update_state``, on ``v`` itself, which saves the owner of the state two passes per call.
    ``out`` may be ``currents`` itself (each step's current is read before its spikes overwrite it), which
    spares a fresh output tensor per call. On a GPU with Triton the same arithmetic runs as one fused
    kernel per chunk (``fused_scan``), on a CPU with a C compiler as one compiled loop (``cpu_scan``).
    ``levels`` > 1: graded spikes (``graded_if_scan``).
    """
    if not update_state:
        v = v.clone()
    threshold = threshold.to(v.dtype)
    if levels != BINARY:  # graded spikes: ``graded_if_scan``
        return v, graded_if_scan(v, currents, threshold, levels, reset, out)
    if fused_scan.available(v, currents, threshold, out):  # one GPU kernel for the whole chunk
        return v, fused_scan.scan(v, currents, threshold, reset is Reset.SOFT, out)
    if cpu_scan.available(v, currents, threshold, out, reset is Reset.SOFT):  # one compiled CPU pass
        return v, cpu_scan.scan(v, currents, threshold, out)
    out = outputs_like(v, currents.shape[0]) if out is None else out
    for t in range(currents.shape[0]):
        v.add_(currents[t])
        spikes = torch.ge(v, threshold, out=out[t])  # 0/1, written straight as floats: no bool mask
        if reset is Reset.HARD:
            v.addcmul_(v, spikes, value=-1.0)  # v <- v * (1 - s)
        spikes.mul_(threshold)
        if reset is Reset.SOFT:
            v.sub_(spikes)
    return v, out


def signed_if_scan(v: Tensor, currents: Tensor, threshold: Tensor) -> Tensor:
    """Signed integrate-and-fire over the leading time axis of ``currents`` ([t, B, ...]), ``v`` updated in place.

    A neuron sends ``+threshold`` when its membrane reaches half a threshold and ``-threshold`` when it falls
    to minus half, and subtracts what it sent (soft reset). The membrane then stays within half a threshold
    of zero while the input per step stays within one threshold, so the spikes sum to the input summed so far,
    rounded to the nearest multiple of the threshold: signed values carried by ternary spikes.
    """
    out = torch.empty_like(currents)
    threshold = threshold.to(v.dtype)
    half = threshold / 2
    for t in range(currents.shape[0]):
        v.add_(currents[t])
        spikes = torch.ge(v, half, out=out[t])
        spikes.sub_((v <= -half).to(v.dtype)).mul_(threshold)
        v.sub_(spikes)
    return out


def checked_levels(levels: object) -> int:
    """``levels`` if it is a spike level count (an integer >= 1), else a ValueError naming it."""
    if not isinstance(levels, int) or levels < 1:
        raise ValueError(f"levels must be an integer >= 1, got {levels!r}")
    return levels


def spike_bits(levels: int) -> int:
    """Bits a spike of ``levels`` magnitudes carries (its sign not counted): 1 for a binary spike, 4 for 15."""
    return int(levels).bit_length()


def graded_if_scan(
    v: Tensor, currents: Tensor, threshold: Tensor, levels: int, reset: Reset, out: Tensor | None = None
) -> Tensor:
    """Integrate-and-fire with graded spikes over the leading time axis of ``currents``; ``v`` updated in place.

    A step's spike carries ``n * threshold / levels`` for the n in 0..levels that the membrane holds whole
    units of (a burst of up to ``levels`` spikes of a unit each, sent as one event of ``bits(levels)`` bits):
    the most a step sends is still the threshold, but a run of T steps resolves ``T * levels`` levels, as
    ``T * levels`` binary steps would. Soft reset subtracts what was sent; hard reset empties the membrane.
    With one level this is ``if_scan``'s binary neuron.
    """
    out = outputs_like(v, currents.shape[0]) if out is None else out
    unit = threshold / levels
    for t in range(currents.shape[0]):
        v.add_(currents[t])
        sent = torch.div(v, unit, out=out[t]).floor_().clamp_(0, levels).mul_(unit)
        if reset is Reset.SOFT:
            v.sub_(sent)
        else:
            v.mul_(sent == 0)
    return out


def signed_graded_scan(v: Tensor, currents: Tensor, threshold: Tensor, levels: int) -> Tensor:
    """``signed_if_scan`` with graded spikes: each step sends the membrane rounded to the nearest multiple of
    ``threshold / levels``, at most ``levels`` of them, of either sign, and subtracts it (soft reset)."""
    out = torch.empty_like(currents)
    threshold = threshold.to(v.dtype)
    unit = threshold / levels
    for t in range(currents.shape[0]):
        v.add_(currents[t])
        units = torch.div(v, unit, out=out[t])
        sign = torch.sign(units)
        units.abs_().add_(0.5).floor_().clamp_(max=levels).mul_(sign).mul_(unit)
        v.sub_(units)
    return out
