"""How the analog input enters the spiking network, one chunk of time steps at a time."""

from __future__ import annotations

import torch
from torch import Tensor

from spikeport.choices import Choice


class Encoding(Choice):
    """How the analog input enters the network."""

    ANALOG = "analog"  # the input is injected as a current at every step (the common choice for conversion)
    POISSON = "poisson"  # Bernoulli spikes with probability |x| / scale, carrying sign(x) * scale


def encode_chunk(
    x: Tensor, steps: int, encoding: Encoding, generator: torch.Generator | None = None, scale: float = 1.0
) -> Tensor:
    """``[steps * B, ...]`` time-major input for the next ``steps`` steps.

    Poisson samples are drawn one step at a time from ``generator``, so the spike train does not depend
    on how the run is cut into chunks: a prefix of a long run equals a short run with the same seed.
    """
    if encoding is Encoding.ANALOG:
        return x.unsqueeze(0).expand(steps, *x.shape).reshape(steps * x.shape[0], *x.shape[1:])
    probability = x.abs() / scale
    if (probability > 1).any():
        raise ValueError(
            f"Poisson encoding needs |input| <= scale ({scale}); the input reaches {x.abs().max().item():.4g}: "
            "pass a larger encoding_scale"
        )
    sign_scale = torch.sign(x) * scale
    frames = [
        (torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype) < probability) * sign_scale
        for _ in range(steps)
    ]
    return torch.cat(frames)
