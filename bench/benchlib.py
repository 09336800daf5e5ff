"""What the bench scripts share: timing functions in turns, and writing their JSON.

(Not named ``timing`` or ``profile``: a bench script's own folder comes first on ``sys.path``, so a name the
standard library uses would shadow it.)
"""

from __future__ import annotations

import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import spikeport as sp

# Benchmarks run as the ``spikeport`` command does: freed memory kept for reuse (``sp.keep_freed_memory``),
# for the ANN they compare with as much as for the SNN. BENCH_DEFAULT_ALLOCATOR=1 measures glibc's default.
KEEPS_FREED_MEMORY = not os.environ.get("BENCH_DEFAULT_ALLOCATOR") and sp.keep_freed_memory()


def interleaved_medians(
    functions: dict[str, Callable[[], object]],
    repeats: int,
    *,
    warmup: bool = True,
    synchronize: Callable[[], None] = lambda: None,
) -> dict[str, float]:
    """Median wall time of each function, run in turns so that all see the same machine conditions.

    ``warmup`` runs each once first (allocator, kernels, first-call paths); ``synchronize`` waits for a
    device's queued work before each clock reading (a GPU's kernels run asynchronously).
    """
    if warmup:
        for fn in functions.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in functions}
    for _ in range(repeats):
        for name, fn in functions.items():
            synchronize()
            start = time.perf_counter()
            fn()
            synchronize()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def save_json(path: str | Path, data) -> Path:
    """Write a bench's results as indented JSON (folders created) and say where."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2))
    print(f"\nJSON: {path}")
    return path
