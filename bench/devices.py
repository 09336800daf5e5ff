"""What the bench scripts that run on a GPU share: the device in words, float32 without TF32, and waiting for
the device's queue before a clock is read."""

from __future__ import annotations

import torch


def describe(device: str) -> str:
    """The device in words, with the torch build: results from different devices are not compared."""
    if torch.device(device).type == "cuda":
        return f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}"
    return f"CPU ({torch.get_num_threads()} threads), torch {torch.__version__}"


def exact_float32(device: str) -> None:
    """On a GPU, float32 convolutions and products without TF32: figures comparable to the CPU's."""
    if torch.device(device).type == "cuda":
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False


def synchronize(device: str) -> None:
    """Wait for the device's queued work (a no-op on the CPU), so that a clock read after it means something."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)
