"""Just enough training to produce the ANNs conversion needs (not a training framework)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm


def train_classifier(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    epochs: int = 3,
    batch_size: int = 128,
    lr: float = 2e-3,
    weight_decay: float = 1e-4,
    seed: int = 0,
    progress: bool = True,
) -> nn.Module:
    """AdamW with a cosine learning-rate schedule on in-memory tensors; returns the model in eval mode."""
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    steps_per_epoch = math.ceil(x.shape[0] / batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=lr, total_steps=epochs * steps_per_epoch, pct_start=0.15, anneal_strategy="cos"
    )
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    for epoch in range(epochs):
        order = torch.randperm(x.shape[0], generator=generator)
        bar = tqdm(
            range(steps_per_epoch),
            desc=f"training epoch {epoch + 1}/{epochs}",
            disable=not progress,
            leave=False,
        )
        for step in bar:
            index = order[step * batch_size : (step + 1) * batch_size]
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(x[index]), y[index])
            loss.backward()
            optimizer.step()
            schedule.step()
            if step % 50 == 0:
                bar.set_postfix(loss=f"{loss.item():.4f}")
    return model.eval()


@torch.no_grad()
def accuracy(model: nn.Module, x: Tensor, y: Tensor, batch_size: int = 1000) -> float:
    model.eval()
    correct = sum(
        int((model(x[i : i + batch_size]).argmax(1) == y[i : i + batch_size]).sum())
        for i in range(0, len(x), batch_size)
    )
    return correct / len(x)
