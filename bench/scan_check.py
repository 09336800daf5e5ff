"""Is the compiled CPU scan used on this machine, bit for bit the eager one, and how fast per step?

Prints the compiler, PyTorch's parallel backend, whether ``neurons/cpu_scan.py`` built and loaded (with one
OpenMP runtime in the process), equality with the eager scan (float32/float64, per-channel and scalar
thresholds, 5 steps), and both scans' time per step for [100, 16, 32, 32] (synthetic currents, median of 5).
Run: python bench/scan_check.py
"""

from __future__ import annotations

import shutil

import torch
from benchlib import interleaved_medians

from spikeport.neurons import Reset, cpu_scan, if_scan


def scan(v, currents, threshold, compiled: bool, out=None):
    cpu_scan.enabled = compiled
    try:
        return if_scan(v, currents, threshold, Reset.SOFT, update_state=True, out=out)
    finally:
        cpu_scan.enabled = True


def bit_for_bit() -> bool:
    g = torch.Generator().manual_seed(0)
    cases = [
        ((100, 16, 32, 32), torch.rand(16, 1, 1, generator=g) + 0.2),
        ((7, 300), torch.rand((), generator=g) + 0.2),
    ]
    equal = True
    for dtype in (torch.float32, torch.float64):
        for shape, threshold in cases:
            v = torch.rand(shape, generator=g).to(dtype)
            currents = torch.randn(5, *shape, generator=g).to(dtype)
            fast = scan(v.clone(), currents.clone(), threshold.to(dtype), compiled=True)
            eager = scan(v.clone(), currents.clone(), threshold.to(dtype), compiled=False)
            equal &= torch.equal(fast[0], eager[0]) and torch.equal(fast[1], eager[1])
    return equal


def main() -> None:
    backend = [line for line in torch.__config__.parallel_info().splitlines() if "backend" in line]
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {backend[0].strip() if backend else '?'}"
    )
    print(f"C compiler: {shutil.which('cc') or shutil.which('gcc')}")
    print(
        f"compiled scan available: {cpu_scan._functions() is not None}; OpenMP runtimes: {cpu_scan._openmp_runtimes()}"
    )
    print(f"bit for bit the eager scan: {bit_for_bit()}")
    v = torch.rand(100, 16, 32, 32)
    currents = torch.randn(1, 100, 16, 32, 32) * 0.3
    threshold = torch.rand(16, 1, 1) + 0.5
    steps = 200
    medians = interleaved_medians(
        {
            name: (
                lambda compiled=compiled: [
                    scan(v, currents, threshold, compiled, currents) for _ in range(steps)
                ]
            )
            for name, compiled in (("eager", False), ("compiled", True))
        },
        5,
    )
    for name, seconds in medians.items():
        print(f"{name}: {1e3 * seconds / steps:.3f} ms per step, [100, 16, 32, 32]")


if __name__ == "__main__":
    main()
