"""The integrate-and-fire dynamics, checked against their defining properties."""

import math

import torch
from hypothesis import given
from hypothesis import strategies as st

from spikeport.neurons import Reset, if_scan, if_step

currents = st.floats(min_value=-2.0, max_value=3.0, allow_nan=False)
thresholds = st.floats(min_value=0.05, max_value=4.0)
steps = st.integers(min_value=1, max_value=300)


def run_constant(x: float, theta: float, T: int, reset: Reset, v0: float = 0.0) -> float:
    v = torch.full((1,), v0 * theta, dtype=torch.float64)
    current = torch.full((T, 1), x, dtype=torch.float64)
    _, out = if_scan(v, current, torch.tensor(theta, dtype=torch.float64), reset)
    return out.sum().item() / theta / T  # firing rate in spikes per step


@given(currents, thresholds, steps)
def test_soft_reset_rate_converges_to_clipped_input(x, theta, T):
    rate = run_constant(x, theta, T, Reset.SOFT)
    assert abs(rate - min(max(x / theta, 0.0), 1.0)) <= 1.0 / T + 1e-9


@given(currents, thresholds, steps)
def test_half_threshold_start_rounds_instead_of_flooring(x, theta, T):
    rate = run_constant(x, theta, T, Reset.SOFT, v0=0.5)
    assert abs(rate - min(max(x / theta, 0.0), 1.0)) <= 0.5 / T + 1e-9


@given(st.floats(min_value=0.01, max_value=1.0), thresholds, st.integers(min_value=50, max_value=300))
def test_hard_reset_loses_the_residual(fraction, theta, T):
    """Hard reset fires once every ceil(theta/x) steps (one more when rounding leaves v just short)."""
    x = fraction * theta
    rate = run_constant(x, theta, T, Reset.HARD)
    period = math.ceil(theta / x - 1e-9)
    assert (T // (period + 1)) / T - 1e-9 <= rate <= (T // period) / T + 1e-9
    assert rate <= run_constant(x, theta, T, Reset.SOFT) + 1e-9


@given(st.integers(min_value=1, max_value=20), st.sampled_from([Reset.SOFT, Reset.HARD]))
def test_scan_equals_repeated_steps(T, reset):
    g = torch.Generator().manual_seed(T)
    current = torch.randn(T, 3, 4, generator=g)
    theta = torch.rand(4, generator=g) + 0.1
    v = torch.zeros(3, 4)
    v_scan, out = if_scan(v, current, theta, reset)
    assert torch.equal(v, torch.zeros(3, 4))  # pure by default
    state = v.clone()
    v_owned, out_owned = if_scan(state, current, theta, reset, update_state=True)
    assert v_owned is state and torch.equal(state, v_scan) and torch.equal(out_owned, out)
    for t in range(T):
        v, spikes = if_step(v, current[t], theta, reset)
        assert torch.equal(out[t], spikes * theta)
    assert torch.allclose(v, v_scan)
