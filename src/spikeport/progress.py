"""Progress of long work: a bar in a terminal or notebook, a line per stage in a log, nothing when off.

The long loops (calibration passes, the layer-by-layer fits, simulation, training, code fitting) sit deep
inside the methods. Rather than thread a flag through every call, each entry point (``sp.convert``,
``sp.evaluate``, ``sp.compare``, ``fit-fs``) opens a ``reporting`` scope that names the work and says
whether to report; a loop inside wraps its items in ``track``, which reports under the scope's name, or
not at all outside any scope. A scope inside another (convert inside compare) keeps the outer name and
reports only if both are switched on.

    with progress.reporting("ecc"):
        for x in progress.track(batches(), "collecting statistics", total=5000):
            ...
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TypeVar

from tqdm.auto import tqdm

from spikeport import distributed

Item = TypeVar("Item")


@dataclass(frozen=True)
class _Scope:
    label: str  # what the work is, as the user named it: "ecc", "calibrated[timesteps=4]"
    enabled: bool


_SCOPE: ContextVar[_Scope | None] = ContextVar("spikeport_progress", default=None)


@contextmanager
def reporting(label: str, enabled: bool = True) -> Iterator[None]:
    """Report the ``track``ed loops inside the block under ``label`` (if ``enabled``)."""
    outer = _SCOPE.get()
    scope = _Scope(label, enabled) if outer is None else _Scope(outer.label, outer.enabled and enabled)
    token = _SCOPE.set(scope)
    try:
        yield
    finally:
        _SCOPE.reset(token)


def interactive() -> bool:
    """Whether bars can redraw in place: a terminal, or a Jupyter kernel (whose widgets tqdm.auto picks)."""
    return sys.stderr.isatty() or "ipykernel" in sys.modules


def _samples(item: object) -> int:
    """Samples in a batch: a tensor's first dimension, or the first tensor's of an (x, y) pair."""
    first = item[0] if isinstance(item, tuple | list) else item
    return int(first.shape[0]) if hasattr(first, "shape") and len(first.shape) else 1


def _scope_reporting() -> _Scope | None:
    """The current scope, where it reports: switched on, and in the process that prints (rank 0)."""
    scope = _SCOPE.get()
    return scope if scope is not None and scope.enabled and distributed.is_main() else None


def track(
    items: Iterable[Item],
    stage: str,
    total: int | None = None,
    unit: str = "img",
    size: Callable[[Item], int] = _samples,
) -> Iterator[Item]:
    """``items``, reported as one stage of the current scope's work: a bar with total and ETA in a terminal;
    in a log, a line when the stage starts and one with its count and time when it ends.

    ``size(item)``: how many ``unit`` an item counts for (default: the samples in a batch; ``lambda _: 1``
    for steps or layers).
    """
    scope = _scope_reporting()
    if scope is None:
        yield from items
        return
    description = f"{scope.label}: {stage}"
    if interactive():
        with tqdm(total=total, desc=description, unit=unit, leave=False, dynamic_ncols=True) as bar:
            for item in items:
                yield item
                bar.update(size(item))
        return
    of = f" ({_counted(total, unit)})" if total is not None else ""
    print(f"spikeport: {description}{of} ...", file=sys.stderr, flush=True)
    start, count = time.perf_counter(), 0
    for item in items:
        yield item
        count += size(item)
    print(
        f"spikeport: {description}: {_counted(count, unit)} in {time.perf_counter() - start:.1f} s",
        file=sys.stderr,
        flush=True,
    )


def steps(count: int, stage: str, unit: str = "step") -> Iterator[int]:
    """``range(count)``, reported as a stage of ``count`` ``unit`` (iterations, epochs' batches...)."""
    return track(range(count), stage, count, unit, size=lambda _: 1)


def _counted(count: int, unit: str) -> str:
    """``count`` of ``unit`` in words for a log: "600 images", "1 step"."""
    singular, plural = {"img": ("image", "images"), "batch": ("batch", "batches")}.get(
        unit, (unit, unit + "s")
    )
    return f"{count} {singular if count == 1 else plural}"


def note(message: str) -> None:
    """One line about the current scope's work (a stage without a loop to count), where it reports."""
    scope = _scope_reporting()
    if scope is None:
        return
    text = f"spikeport: {scope.label}: {message}"
    if interactive():
        tqdm.write(text, file=sys.stderr)
    else:
        print(text, file=sys.stderr, flush=True)
