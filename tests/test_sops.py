"""Synapse counts equal a brute-force enumeration, borders, strides, padding and groups included."""

import itertools

import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

import spikeport as sp
from spikeport.graph.connectivity import connections, connectivity_twin


def brute_force_fanout(module: nn.Module, shape: tuple[int, ...]) -> torch.Tensor:
    """Count, for every input element, the outputs whose value changes when only that element changes."""
    fanout = torch.zeros(shape)
    with torch.no_grad():
        for index in itertools.product(*(range(s) for s in shape)):
            x = torch.zeros(1, *shape, dtype=torch.float64)
            x[(0, *index)] = 1.0
            y = connectivity_twin(module)(x)
            fanout[index] = float((y != 0).sum())
    return fanout


def jacobian_fanout(module: nn.Module, shape: tuple[int, ...]) -> torch.Tensor:
    """The same count from the module itself (not its twin): nonzero Jacobian entries per input."""
    module = module.double()
    x = torch.rand(1, *shape, dtype=torch.float64)
    jac = torch.autograd.functional.jacobian(lambda v: module(v).flatten(), x)
    return (jac.reshape(-1, *shape) != 0).sum(0).double()


@given(
    st.integers(1, 3),
    st.integers(1, 4),
    st.integers(1, 3),
    st.integers(1, 2),
    st.integers(0, 2),
    st.integers(1, 2),
    st.integers(4, 7),
)
def test_conv_fanout_matches_the_jacobian(cin, cout, kernel, stride, padding, dilation, size):
    groups = 1 if cin % 2 or cout % 2 else 2
    conv = nn.Conv2d(cin, cout, kernel, stride, padding, dilation, groups=groups)
    if (size + 2 * padding - dilation * (kernel - 1) - 1) < 0:
        return
    with torch.no_grad():
        conv.weight[0].zero_()  # a pruned filter is not a synapse
    shape = (cin, size, size)
    twin = connectivity_twin(conv)
    x = torch.zeros(1, *shape, dtype=torch.float64, requires_grad=True)
    twin(x).sum().backward()
    assert torch.equal(x.grad[0], jacobian_fanout(conv, shape))
    assert connections(conv, shape) == int(jacobian_fanout(conv, shape).sum())


@given(st.integers(1, 3), st.integers(1, 3), st.integers(0, 1), st.booleans(), st.integers(3, 7))
def test_avgpool_fanout_counts_windows(kernel, stride, padding, ceil_mode, size):
    if padding * 2 > kernel:
        return
    pool = nn.AvgPool2d(kernel, stride, padding, ceil_mode=ceil_mode)
    shape = (2, size, size)
    x = torch.zeros(1, *shape, dtype=torch.float64, requires_grad=True)
    connectivity_twin(pool)(x).sum().backward()
    assert torch.equal(x.grad[0], jacobian_fanout(pool, shape))


@given(st.integers(1, 9), st.integers(1, 9), st.integers(1, 5), st.integers(1, 5))
def test_adaptive_pool_fanout_counts_windows(h, w, oh, ow):
    pool = nn.AdaptiveAvgPool2d((oh, ow))
    shape = (1, h, w)
    x = torch.zeros(1, *shape, dtype=torch.float64, requires_grad=True)
    connectivity_twin(pool)(x).sum().backward()
    assert torch.equal(x.grad[0], jacobian_fanout(pool, shape))


def test_linear_fanout_skips_zero_weights():
    fc = nn.Linear(5, 4)
    with torch.no_grad():
        fc.weight[:, 2] = 0
        fc.weight[1, 0] = 0
    assert torch.equal(jacobian_fanout(fc, (5,)), torch.tensor([3.0, 4, 0, 4, 4], dtype=torch.float64))
    assert connections(fc, (5,)) == 15


def test_network_sops_equal_spikes_times_brute_force_fanout():
    """Total SOPs of a simulation = every recorded spike x the outputs that spike reaches (counted one by one)."""
    torch.manual_seed(1)
    conv1 = nn.Conv2d(1, 3, 3, stride=2, padding=1)
    conv2 = nn.Conv2d(3, 2, 2)
    model = nn.Sequential(conv1, nn.ReLU(), conv2, nn.ReLU(), nn.Flatten(), nn.Linear(2 * 2 * 2, 3)).eval()
    x = torch.rand(4, 1, 6, 6)
    snn = sp.convert(model, x, "max", reset="soft")
    neuron1 = snn.neurons()["1"]
    expected1 = brute_force_fanout(conv2, (3, 3, 3)).flatten().double()
    assert torch.equal(neuron1.fanout, expected1)

    spikes: list[torch.Tensor] = []
    hook = neuron1.register_forward_hook(lambda m, i, out: spikes.append(out.ne(0).sum(0).flatten().double()))
    sim = snn.simulate(x, 20, record=True, chunk=20)
    hook.remove()
    assert sim.sops["1"].sum().item() == (spikes[0] @ expected1).item()
    assert sim.input_macs.sum().item() == 20 * 4 * connections(conv1, (1, 6, 6))


def test_fanouts_follow_the_weights_a_method_zeroed():
    """Fan-outs are computed once per conversion, after the method's transform (here: 2-bit weights)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 12), nn.ReLU(), nn.Linear(12, 3))
    x = torch.rand(16, 6)
    snn = sp.convert(model, x, "ecc[weight_bits=2]")
    linears = [m for m in snn.modules() if isinstance(m, nn.Linear)]
    neurons = list(snn.neurons().values())
    for layer, following in zip(neurons, linears[1:], strict=True):
        expected = (following.weight != 0).sum(dim=0).double()
        assert torch.equal(layer.fanout, expected)
    assert (neurons[0].fanout < 12).any()  # some 2-bit weights are zero: fewer synapses than the float net


def test_border_copying_pads_count_every_path_of_a_spike():
    """Reflect / replicate / circular padding copies a border spike: each copy's synapses are counted."""
    torch.manual_seed(2)
    for pad, conv in [
        (nn.ReflectionPad2d(1), nn.Conv2d(3, 2, 3)),
        (nn.ReplicationPad2d((1, 2, 0, 1)), nn.Conv2d(3, 2, 2)),
        (nn.Identity(), nn.Conv2d(3, 2, 3, padding=1, padding_mode="circular")),
    ]:
        model = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), pad, conv, nn.ReLU(), nn.Flatten())
        model.append(nn.LazyLinear(2))
        x = torch.rand(4, 1, 5, 5)
        model(x)
        snn = sp.convert(model.eval(), x, "max", progress=False)
        ones = connectivity_twin(conv)
        expected = torch.zeros(3, 5, 5, dtype=torch.float64)
        with torch.no_grad():
            for index in itertools.product(range(3), range(5), range(5)):
                e = torch.zeros(1, 3, 5, 5, dtype=torch.float64)
                e[(0, *index)] = 1.0
                expected[index] = ones(pad.double()(e)).sum()  # paths: a copied spike counts per copy
        assert torch.equal(snn.neurons()["1"].fanout, expected.flatten())
