"""The soft-reset integrate-and-fire scan as one compiled CPU loop: one read and one write per neuron and step.

The eager scan makes four passes over the membranes per step (add, compare, scale, subtract); on a CPU each is
a trip through memory. This C loop does the same arithmetic in one pass, vectorised for the machine it runs on
(``-march=native``) and split over the threads of the OpenMP runtime PyTorch itself uses
(``python bench/breakdown.py --scans eager,compiled``: VGG-16's neurons 1.10 -> 0.73 s per 64 steps).

It is compiled once per machine, at first use, with the system's C compiler, and cached next to the datasets
(``data.cache``). Used only when everything holds: a C compiler, Linux with PyTorch on GNU OpenMP, and the
loaded kernel bound to an OpenMP runtime already in the process (PyTorch's), not a second one of its own
that would fight PyTorch's over the cores; otherwise, and for hard reset, the eager scan runs. Runtimes that
other libraries bring under their own names (scikit-learn's, which Keras imports) are theirs and do not
matter. The result is the eager scan's bit for bit (test). ``enabled = False`` or
``SPIKEPORT_CPU_KERNEL=0`` turns it off.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

import torch
from torch import Tensor

from spikeport.data.cache import cache_dir
from spikeport.neurons.layout import flat_layout, outputs_like, per_neuron

enabled = os.environ.get("SPIKEPORT_CPU_KERNEL", "1") != "0"

SOURCE = r"""
/* Threads take blocks of up to 4096 neurons of one sample and run every step of the chunk on them, so a
   membrane is read and written once per chunk, not once per step. */
#define SCAN(NAME, REAL)                                                                              \
void NAME(REAL *v, const REAL *currents, REAL *out, const REAL *threshold, long steps,           \
          long current_step_stride, long batch, long sample) {                                   \
    const long block = 4096, blocks_per_sample = (sample + block - 1) / block;                   \
    _Pragma("omp parallel for schedule(static)")                                                 \
    for (long j = 0; j < batch * blocks_per_sample; j++) {                                       \
        const long first = (j % blocks_per_sample) * block;                                      \
        const long last = first + block < sample ? first + block : sample;                       \
        REAL *vb = v + (j / blocks_per_sample) * sample;                                         \
        for (long t = 0; t < steps; t++) {                                                       \
            const REAL *cur = currents + t * current_step_stride + (j / blocks_per_sample) * sample; \
            REAL *o = out + (t * batch + j / blocks_per_sample) * sample;                        \
            for (long i = first; i < last; i++) {                                                \
                REAL x = vb[i] + cur[i];                         /* v.add_(current) */            \
                REAL s = threshold[i] * (REAL)(x >= threshold[i]); /* ge, then mul_(threshold) */  \
                o[i] = s;                                                                        \
                vb[i] = x - s;                                   /* v.sub_(spikes) */             \
            }                                                                                    \
        }                                                                                        \
    }                                                                                            \
}
SCAN(if_scan_soft_f32, float)
SCAN(if_scan_soft_f64, double)
"""
FLAGS = ["-O3", "-march=native", "-fopenmp", "-shared", "-fPIC"]  # never -ffast-math: bit for bit


def available(v: Tensor, currents: Tensor, threshold: Tensor, out: Tensor | None, soft: bool) -> bool:
    """Whether ``scan`` can run these tensors here."""
    if not (enabled and soft and currents.device.type == "cpu"):
        return False
    return flat_layout(v, currents, threshold, out) and _functions() is not None


def scan(v: Tensor, currents: Tensor, threshold: Tensor, out: Tensor | None) -> Tensor:
    """The soft-reset scan over ``currents`` ([t, B, ...]) with ``v`` updated in place; returns the spikes."""
    out = outputs_like(v, currents.shape[0]) if out is None else out
    sample = v[0].numel()
    thresholds = per_neuron(threshold, v)
    step_stride = currents.stride(0) if currents.shape[0] > 1 else v.numel()
    function = _functions()[v.dtype]
    function(
        v.data_ptr(),
        currents.data_ptr(),
        out.data_ptr(),
        thresholds.data_ptr(),
        currents.shape[0],
        step_stride,
        v.shape[0],
        sample,
    )
    return out


@functools.cache
def _functions() -> dict[torch.dtype, ctypes._CFuncPtr] | None:
    """The compiled scans by dtype, or None where they cannot be built or loaded safely."""
    if platform.system() != "Linux" or "OpenMP" not in torch.__config__.parallel_info():
        return None
    before = _openmp_runtimes()
    try:
        library = ctypes.CDLL(str(_compiled()))
    except (OSError, subprocess.SubprocessError):
        return None
    if not before or _openmp_runtimes() != before:  # the kernel brought its own OpenMP next to PyTorch's
        return None
    functions = {}
    for dtype, name in ((torch.float32, "if_scan_soft_f32"), (torch.float64, "if_scan_soft_f64")):
        function = getattr(library, name)
        function.argtypes = [ctypes.c_void_p] * 4 + [ctypes.c_long] * 4
        function.restype = None
        functions[dtype] = function
    return functions


def _compiled() -> Path:
    """The shared library for this machine, compiled on first use (atomically: parallel processes may race)."""
    compiler = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")
    if compiler is None:
        raise OSError("no C compiler")
    key = hashlib.sha256("\n".join([SOURCE, *FLAGS, compiler, _cpu_signature()]).encode()).hexdigest()[:16]
    target = cache_dir() / "kernels" / f"if_scan-{key}.so"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=target.parent) as build:
            source = Path(build) / "if_scan.c"
            source.write_text(SOURCE)
            built = Path(build) / target.name
            subprocess.run(
                [compiler, *FLAGS, str(source), "-o", str(built)],
                check=True,
                capture_output=True,
                timeout=120,
            )
            os.replace(built, target)
    return target


def _cpu_signature() -> str:
    """What ``-march=native`` compiles for: the CPU's model and feature flags."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor()
    return "\n".join(sorted({line for line in lines if line.startswith(("model name", "flags"))}))


def _openmp_runtimes() -> set[str]:
    """The OpenMP runtime libraries loaded in this process, by file."""
    names = ("libgomp", "libiomp", "libomp")
    paths = {line.split()[-1] for line in Path("/proc/self/maps").read_text().splitlines() if line.split()}
    return {path for path in paths if any(name in path for name in names)}
