"""The compiled CPU scan: bit for bit the eager scan, for every threshold shape, dtype and input layout."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import spikeport as sp
from spikeport.models import mnist_cnn
from spikeport.neurons import Reset, cpu_scan, if_scan
from tests.helpers import channels_last_per_step, kernel_off

pytestmark = pytest.mark.skipif(shutil.which("cc") is None, reason="needs a C compiler")


def eager(*args, **kwargs):
    with kernel_off(cpu_scan):
        return if_scan(*args, **kwargs)


def test_it_builds_and_is_used_here():
    assert cpu_scan._functions() is not None  # Linux, a compiler, PyTorch on GNU OpenMP: this machine and CI
    v, currents = torch.zeros(2, 3), torch.zeros(4, 2, 3)
    assert cpu_scan.available(v, currents, torch.ones(()), None, soft=True)
    assert not cpu_scan.available(v, currents, torch.ones(()), None, soft=False)  # hard reset stays eager
    assert not cpu_scan.available(v, currents.half(), torch.ones(()), None, soft=True)


def test_another_librarys_openmp_runtime_does_not_turn_it_off(tmp_path):
    # scikit-learn ships GNU OpenMP under its own name, and Keras imports it: a copy of PyTorch's runtime loaded
    # first stands for it. The kernel binds to PyTorch's, so it stays on.
    torch_lib = str(Path(torch.__file__).parent / "lib")
    torch_runtime = next(p for p in cpu_scan._openmp_runtimes() if p.startswith(torch_lib))
    vendored = tmp_path / "libgomp-vendored.so.1"
    shutil.copy(torch_runtime, vendored)
    code = (
        "import ctypes; from spikeport.neurons import cpu_scan; "
        f"ctypes.CDLL({str(vendored)!r}); "
        "print(len(cpu_scan._openmp_runtimes()), cpu_scan._functions() is not None)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["2", "True"]


@settings(max_examples=60, deadline=None)
@given(
    st.integers(0, 10_000),
    st.integers(1, 9),
    st.sampled_from(["scalar", "channel", "neuron"]),
    st.sampled_from([torch.float32, torch.float64]),
    st.sampled_from(["fresh", "in place", "constant"]),
    st.booleans(),
)
def test_equals_the_eager_scan_bit_for_bit(seed, steps, threshold_kind, dtype, layout, channels_last):
    g = torch.Generator().manual_seed(seed)
    shape = (3, 4, 5, 6)
    threshold = {
        "scalar": torch.rand((), generator=g) + 0.1,
        "channel": torch.rand(4, 1, 1, generator=g) + 0.1,
        "neuron": torch.rand(4, 5, 6, generator=g) + 0.1,
    }[threshold_kind].to(dtype)
    v = (torch.rand(shape, generator=g) * threshold).to(dtype)
    if layout == "constant":  # an analog input's current, the same at every step (stride 0 in time)
        currents = torch.randn(shape, generator=g, dtype=dtype).unsqueeze(0).expand(steps, *shape)
    else:
        currents = torch.randn(steps, *shape, generator=g, dtype=dtype)
    if (
        channels_last
    ):  # a channels-last network's states and currents: the kernel indexes them in memory order
        v = channels_last_per_step(v)
        currents = (
            channels_last_per_step(currents[0]).unsqueeze(0).expand(currents.shape)
            if layout == "constant"
            else channels_last_per_step(currents)
        )
    currents_eager = (
        currents.clone(memory_format=torch.contiguous_format) if layout != "constant" else currents
    )
    out = currents if layout == "in place" else None
    assert cpu_scan.available(v, currents, threshold, out, soft=True)
    out_eager = currents_eager if layout == "in place" else None
    v_fast, spikes_fast = if_scan(v.clone(), currents, threshold, Reset.SOFT, update_state=True, out=out)
    v_eager, spikes_eager = eager(
        v.clone(memory_format=torch.contiguous_format),
        currents_eager,
        threshold,
        Reset.SOFT,
        update_state=True,
        out=out_eager,
    )
    assert torch.equal(v_fast, v_eager)
    assert torch.equal(spikes_fast, spikes_eager)


def test_a_converted_network_gives_the_same_readout_either_way():
    torch.manual_seed(0)
    model = mnist_cnn().eval()
    x = torch.rand(20, 1, 28, 28)
    snn = sp.convert(model, x, "calibrated")
    compiled = snn.simulate(x, 16, record=True)
    with kernel_off(cpu_scan):
        plain = snn.simulate(x, 16, record=True)
    assert torch.equal(compiled.readout, plain.readout)
    assert all(torch.equal(compiled.spikes[k], plain.spikes[k]) for k in plain.spikes)
