"""Keep freed memory in the process, so a long simulation stops paying page faults for its temporaries.

A simulation allocates and frees the same large tensors at every step (a VGG-16 step at batch 100:
convolution outputs of 26 MB). glibc's malloc serves blocks that large with fresh pages and gives them back
to the system when they are freed (mmap threshold, heap trimming), so the next step faults every 4 KiB in
again (``bench/simulate.py``, VGG-16 at T = 64: 171,000 minor page faults per run, against 1,560 for the
ANN's 64 forward passes; 714 with this). Raising both thresholds keeps freed blocks in the heap for the next step; the
price is that the process holds on to its peak memory. The ``spikeport`` command and the benchmarks do this
for their whole process (the ANN they compare with gets the same allocator); library users opt in.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "LD_PRELOAD")


def keep_freed_memory(threshold: int = 1 << 30) -> bool:
    """Ask glibc to keep freed blocks up to ``threshold`` bytes for reuse instead of returning them.

    Returns whether it applied: not on other C libraries, and not when the user already chose (glibc's
    ``MALLOC_*`` variables, or another allocator through ``LD_PRELOAD``).
    """
    if any(os.environ.get(name) for name in _USER_SETTINGS):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version  # noqa: B018 - glibc only (musl and others lack it)
    except (OSError, AttributeError):
        return False
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, threshold)) and bool(
        libc.mallopt(_M_TRIM_THRESHOLD, threshold)
    )
