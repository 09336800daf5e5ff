"""The fused (Triton) integrate-and-fire scan agrees bit for bit with the eager scan.

Runs on CPU under Triton's interpreter, so it needs Triton installed (optional: skipped without it); on a GPU
machine the same kernel runs compiled (``bench/gpu.py`` checks that).
"""

import importlib

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from spikeport.neurons import Reset, fused_scan, if_scan
from tests.helpers import channels_last_per_step, kernel_off

pytest.importorskip("triton")


def test_cpu_tensors_take_the_eager_scan_unless_a_test_asks():
    """A user's TRITON_INTERPRET=1 (set to debug their own kernels) must not route simulations through it."""
    assert not fused_scan.on_cpu
    assert not fused_scan.available(torch.zeros(2, 3), torch.zeros(4, 2, 3), torch.ones(()), None)


@pytest.fixture(scope="module")
def interpreted():
    """The kernel module re-imported under Triton's interpreter (CPU tensors), restored afterwards."""
    mp = pytest.MonkeyPatch()
    mp.setenv("TRITON_INTERPRET", "1")
    importlib.reload(fused_scan)
    fused_scan.on_cpu = True
    yield fused_scan
    mp.undo()
    importlib.reload(fused_scan)


def eager(*args, **kwargs):
    with kernel_off(fused_scan):
        return if_scan(*args, **kwargs)


@settings(max_examples=25, deadline=None)
@given(
    steps=st.integers(1, 6),
    shape=st.sampled_from([(3, 5), (2, 4, 3, 3), (1, 7)]),
    per_channel=st.booleans(),
    reset=st.sampled_from([Reset.SOFT, Reset.HARD]),
    dtype=st.sampled_from([torch.float32, torch.float64]),
    constant=st.booleans(),
    in_place=st.booleans(),
    on_grid=st.booleans(),
    channels_last=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_fused_scan_equals_eager(
    interpreted, steps, shape, per_channel, reset, dtype, constant, in_place, on_grid, channels_last, seed
):
    g = torch.Generator().manual_seed(seed)

    def draw(*size, low=-1.0):  # on_grid: multiples of 1/4, so membranes land exactly on thresholds
        if on_grid:
            return torch.randint(int(4 * low), 8, size, generator=g).to(dtype) / 4
        return low + (2 - low) * torch.rand(size, generator=g, dtype=dtype)

    # constant: an analog input's current, the same tensor at every step (time stride 0)
    currents = draw(*shape).unsqueeze(0).expand(steps, *shape) if constant else draw(steps, *shape)
    threshold_shape = (shape[1],) + (1,) * (len(shape) - 2) if per_channel else ()
    threshold = draw(*threshold_shape, low=0.0).clamp(min=0.25)
    v0 = draw(*shape, low=0.0) * threshold
    if channels_last and len(shape) == 4:  # states and currents stored channels-last, every step alike
        v0 = channels_last_per_step(v0)
        currents = (
            channels_last_per_step(currents[0]).unsqueeze(0).expand(currents.shape)
            if constant
            else channels_last_per_step(currents)
        )
    assert fused_scan.available(v0, currents, threshold, None)

    v_eager, out_eager = eager(v0, currents, threshold, reset)
    state = v0.clone()
    target = currents.clone() if in_place and not constant else None  # clone keeps the memory order
    v_fused, out_fused = if_scan(
        state, currents if target is None else target, threshold, reset, update_state=True, out=target
    )
    assert v_fused is state
    assert torch.equal(v_fused, v_eager) and torch.equal(out_fused, out_eager)
    if target is not None:
        assert out_fused is target


def test_unsupported_layouts_fall_back(interpreted):
    v = torch.zeros(2, 3)
    batch_threshold = torch.ones(2, 3)  # one per batch element: not a per-sample threshold
    assert not fused_scan.available(v, torch.zeros(4, 2, 3), batch_threshold, None)
    assert not fused_scan.available(v, torch.zeros(4, 3, 2).transpose(1, 2), torch.ones(()), None)
    assert not fused_scan.available(v, torch.zeros(4, 2, 3, dtype=torch.float16), torch.ones(()), None)
