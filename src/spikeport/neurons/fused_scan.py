"""The integrate-and-fire scan as one GPU kernel (Triton): one read and one write per neuron and step.

The eager scan (``dynamics.if_scan``) launches four elementwise kernels per step, each a full pass over the
membrane; on a GPU that is memory traffic and launch gaps the synaptic layers do not have. Here each
program keeps a block of membranes in registers for the whole chunk of steps, reads each step's current
once and writes its output once. The arithmetic is the eager scan's, operation for operation (an add, a
comparison, a subtraction or a zeroing), so the two agree bit for bit.

Used automatically for contiguous float32/float64 CUDA tensors when Triton is installed; ``enabled`` turns
it off (benchmarks compare both). With ``on_cpu`` set and the module imported under Triton's interpreter
(``TRITON_INTERPRET=1``) it runs on CPU tensors, which is how the tests check it on machines without a GPU.
"""

from __future__ import annotations

import os

from torch import Tensor

from spikeport.neurons.layout import flat_layout, outputs_like, per_neuron

try:
    import triton
    import triton.language as tl
except ImportError:  # optional: the eager scan is used without it
    triton = None

enabled = True  # set to False to force the eager scan everywhere
on_cpu = False  # tests only: CPU tensors too (needs TRITON_INTERPRET=1 when this module is imported)
BLOCK = 1024


def available(v: Tensor, currents: Tensor, threshold: Tensor, out: Tensor | None) -> bool:
    """Whether ``scan`` can run these tensors (CUDA, or CPU under Triton's interpreter)."""
    if triton is None or not enabled:
        return False
    on_device = currents.is_cuda or (on_cpu and os.environ.get("TRITON_INTERPRET") == "1")
    return on_device and flat_layout(v, currents, threshold, out)


if triton is not None:

    @triton.jit
    def _if_scan_kernel(
        v_ptr,
        currents_ptr,
        out_ptr,
        threshold_ptr,
        numel,
        sample_numel,
        current_step_stride,
        STEPS: tl.constexpr,  # a compile-time constant: chunks come in one or two lengths per run
        SOFT: tl.constexpr,
        BLOCK: tl.constexpr,
    ):
        offsets = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        mask = offsets < numel
        threshold = tl.load(threshold_ptr + offsets % sample_numel, mask=mask, other=1.0)
        v = tl.load(v_ptr + offsets, mask=mask, other=0.0)
        currents = currents_ptr + offsets  # pointers advance step by step: 64-bit, never an int32 overflow
        outputs = out_ptr + offsets
        for _ in range(STEPS):
            v = v + tl.load(currents, mask=mask, other=0.0)
            fired = v >= threshold
            spikes = tl.where(fired, threshold, 0.0)
            v = v - spikes if SOFT else tl.where(fired, 0.0, v)
            tl.store(outputs, spikes, mask=mask)
            currents += current_step_stride
            outputs += numel
        tl.store(v_ptr + offsets, v, mask=mask)


def scan(v: Tensor, currents: Tensor, threshold: Tensor, soft: bool, out: Tensor | None) -> Tensor:
    """Run the scan over ``currents`` ([t, B, ...]; the time stride may be 0 for a constant current),
    updating the state ``v`` ([B, ...], dense) in place; returns the outputs (``out`` if given)."""
    steps = currents.shape[0]
    out = outputs_like(v, steps) if out is None else out
    per_sample = per_neuron(threshold, v)
    numel = v.numel()
    step_stride = 0 if steps > 1 and currents.stride(0) == 0 else numel
    grid = (triton.cdiv(numel, BLOCK),)
    _if_scan_kernel[grid](
        v,
        currents,
        out,
        per_sample,
        numel,
        per_sample.numel(),  # at least 1: a scalar threshold expands to one element per sample
        step_stride,
        STEPS=steps,
        SOFT=soft,
        BLOCK=BLOCK,
    )
    return out
