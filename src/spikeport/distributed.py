"""Scale out with torch.distributed: each process takes every N-th batch, then results are reduced.

Under ``torchrun`` (or any initialised process group: gloo on CPU, NCCL on GPU), ``sp.convert`` and
``sp.evaluate`` shard their data by batch: process r of N handles batches r, r+N, r+2N... Calibration
statistics are maxima and histogram counts, evaluation tallies are counts and integer-valued sums, so the
reduction (max, sum) gives exactly what one process computes on all the data, in any order.

    torchrun --nproc-per-node 4 -m spikeport.cli evaluate net.spk --data mnist:test   # one result, printed once

Several nodes: the same command with ``--nnodes``, ``--node-rank`` and ``--master-addr`` (see torchrun).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import TypeVar

import torch
import torch.distributed as dist
from torch import Tensor

Item = TypeVar("Item")
_started = False  # whether init_from_environment started the group (and finish should end it)


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if active() else 0


def is_main() -> bool:
    """Whether this process reports (prints, writes files): the only one, or rank 0."""
    return rank() == 0


def shard(items: Iterable[Item]) -> Iterator[Item]:
    """This process's share: every world-size-th item, starting at its rank (everything when alone)."""
    if not active():
        yield from items
        return
    size, me = dist.get_world_size(), dist.get_rank()
    for index, item in enumerate(items):
        if index % size == me:
            yield item


def _reduce(tensor: Tensor, op) -> Tensor:
    if not active():
        return tensor
    backend = dist.get_backend()
    device = torch.device("cuda", torch.cuda.current_device()) if backend == "nccl" else torch.device("cpu")
    moved = tensor.detach().to(device).clone()
    dist.all_reduce(moved, op=op)
    return moved.to(tensor.device)


def all_sum(tensor: Tensor) -> Tensor:
    return _reduce(tensor, dist.ReduceOp.SUM)


def all_max(tensor: Tensor) -> Tensor:
    return _reduce(tensor, dist.ReduceOp.MAX)


def all_gather_objects(item: Item) -> list[Item]:
    """Every process's ``item``, by rank (picklable objects, e.g. CPU tensors); ``[item]`` when alone."""
    if not active():
        return [item]
    gathered: list = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, item)
    return gathered


def init_from_environment() -> bool:
    """Start the process group when launched by torchrun (RANK and WORLD_SIZE set); True when distributed."""
    if dist.is_initialized() or int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return active()
    global _started
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend)
    _started = True
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    return True


def default_device() -> str:
    """The GPU when there is one (under torchrun the process's own, chosen at start), else the CPU."""
    return f"cuda:{torch.cuda.current_device()}" if torch.cuda.is_available() else "cpu"


def finish() -> None:
    """Leave the process group this module started (a no-op otherwise)."""
    if _started and dist.is_initialized():
        dist.destroy_process_group()
