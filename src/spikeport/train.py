"""Just enough training to produce the ANNs conversion needs (not a training framework).

AdamW or SGD with a one-cycle cosine schedule on in-memory tensors, the usual augmentation for small
images written with torch ops, a checkpoint after every epoch (and resuming from it), a progress bar.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from spikeport.errors import SaveFormatError
from spikeport.progress import note, reporting, steps

AUGMENTATIONS = ("none", "crop", "crop-flip")


def default_augmentation(x: Tensor) -> str:
    """Random crops and flips for colour images of 32x32 and more (CIFAR-style), nothing otherwise."""
    return "crop-flip" if x.dim() == 4 and x.shape[1] == 3 and min(x.shape[-2:]) >= 32 else "none"


def augment(x: Tensor, kind: str, generator: torch.Generator, padding: int = 4) -> Tensor:
    """A random crop of each image zero-padded by ``padding`` (and, for ``crop-flip``, a random mirror)."""
    if kind == "none":
        return x
    batch, height, width = x.shape[0], x.shape[-2], x.shape[-1]
    padded = F.pad(x, (padding,) * 4)
    top = torch.randint(0, 2 * padding + 1, (batch,), generator=generator)
    left = torch.randint(0, 2 * padding + 1, (batch,), generator=generator)
    rows = (top[:, None] + torch.arange(height)[None, :]).to(x.device)  # [B, H]
    cols = (left[:, None] + torch.arange(width)[None, :]).to(x.device)  # [B, W]
    index = torch.arange(batch, device=x.device)[:, None, None]
    cropped = padded.permute(0, 2, 3, 1)[index, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)
    if kind == "crop-flip":
        flip = (torch.rand(batch, generator=generator) < 0.5).to(x.device)
        cropped = torch.where(flip[:, None, None, None], cropped.flip(-1), cropped)
    return cropped.contiguous()


def train_classifier(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    epochs: int = 3,
    batch_size: int = 128,
    lr: float = 2e-3,
    weight_decay: float = 1e-4,
    optimizer: str = "adamw",
    augmentation: str = "none",
    device: str | torch.device = "cpu",
    checkpoint: str | Path | None = None,
    seed: int = 0,
    progress: bool = True,
) -> nn.Module:
    """Train ``model`` on ``(x, y)``; returns it in eval mode.

    ``optimizer``: ``adamw`` or ``sgd`` (momentum 0.9, Nesterov). ``augmentation``: one of
    ``AUGMENTATIONS``. With ``checkpoint``, the state is saved after every epoch and a run whose
    checkpoint exists goes on from there.
    """
    if augmentation not in AUGMENTATIONS:
        raise ValueError(f"augmentation is one of {AUGMENTATIONS}, got {augmentation!r}")
    if epochs < 1 or batch_size < 1:
        raise ValueError(f"epochs and batch_size must be positive, got {epochs} and {batch_size}")
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model.to(device)
    optim = _optimizer(optimizer, model, lr, weight_decay)
    steps_per_epoch = math.ceil(x.shape[0] / batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optim, max_lr=lr, total_steps=epochs * steps_per_epoch, pct_start=0.15, anneal_strategy="cos"
    )
    first_epoch = _resume(checkpoint, model, optim, schedule, generator)
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    with reporting("training", progress):
        for epoch in range(first_epoch, epochs):
            order = torch.randperm(x.shape[0], generator=generator)
            stage = f"epoch {epoch + 1}/{epochs}"
            total = torch.zeros((), device=device)
            for step in steps(steps_per_epoch, stage, "batch"):
                index = order[step * batch_size : (step + 1) * batch_size]
                inputs = augment(x[index].to(device), augmentation, generator)
                optim.zero_grad(set_to_none=True)
                loss = loss_fn(model(inputs), y[index].to(device))
                loss.backward()
                optim.step()
                schedule.step()
                total += loss.detach()
            note(f"{stage}: mean loss {float(total) / steps_per_epoch:.4f}")
            if checkpoint is not None:
                state = {"epoch": epoch + 1, "model": model.state_dict(), "optimizer": optim.state_dict()}
                state |= {"schedule": schedule.state_dict(), "generator": generator.get_state()}
                state["torch_rng"] = torch.get_rng_state()  # dropout draws from the global generator
                torch.save(state, checkpoint)
    return model.eval()


def _optimizer(name: str, model: nn.Module, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    if name == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(
            model.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=weight_decay
        )
    raise ValueError(f"optimizer is 'adamw' or 'sgd', got {name!r}")


def read_checkpoint(path: str | Path | None, model: nn.Module) -> dict | None:
    """The state in a checkpoint ``train_classifier`` wrote, with ``model`` loaded from it; None when there is
    none yet. A file that cannot be resumed is a SaveFormatError naming it (torch's errors name no file)."""
    if path is None or not Path(path).is_file():
        return None
    fix = "delete it to train from scratch, or give another checkpoint"
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # torch's messages on garbage are paragraphs about weights_only
        raise SaveFormatError(f"checkpoint {path} is not a training checkpoint (unreadable); {fix}") from None
    keys = {"epoch", "model", "optimizer", "schedule", "generator", "torch_rng"}
    if not isinstance(state, dict) or not keys <= set(state):
        raise SaveFormatError(f"checkpoint {path} is not a checkpoint of `spikeport train`; {fix}")
    try:
        model.load_state_dict(state["model"])
    except (RuntimeError, TypeError) as error:
        lines = str(error).strip().splitlines()  # torch: a title, then one line per mismatch
        reason = (lines[1:] or lines)[0].strip()[:160]
        raise SaveFormatError(f"checkpoint {path} is of another model ({reason}); {fix}") from None
    return state


def _resume(checkpoint, model, optim, schedule, generator) -> int:
    """Load a checkpoint written by ``train_classifier`` if there is one; returns the epoch to start at."""
    state = read_checkpoint(checkpoint, model)
    if state is None:
        return 0
    optim.load_state_dict(state["optimizer"])
    schedule.load_state_dict(state["schedule"])
    generator.set_state(state["generator"])
    torch.set_rng_state(state["torch_rng"])
    return int(state["epoch"])


@torch.no_grad()
def accuracy(model: nn.Module, x: Tensor, y: Tensor, batch_size: int = 1000) -> float:
    model.eval()
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    correct = sum(
        int((model(x[i : i + batch_size].to(device)).argmax(1).cpu() == y[i : i + batch_size]).sum())
        for i in range(0, len(x), batch_size)
    )
    return correct / len(x)
