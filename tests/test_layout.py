"""Image batches simulate channels-last on CPU: the same network, its states in that order, the same results
up to the convolutions' rounding, and a way back to PyTorch's default order."""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import spikeport as sp
from spikeport.models import resnet20, vgg6
from spikeport.neurons import IFNeuron
from spikeport.neurons.layout import dense, sum_over_batch
from tests.helpers import channels_last_per_step


class FlattenedByView(nn.Module):
    """A user's ``x.view(x.size(0), -1)`` after the convolutions: must still work on channels-last tensors."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.fc = nn.Linear(6 * 8 * 8, 4)

    def forward(self, x):
        x = F.relu(self.conv(x))
        return self.fc(x.view(x.size(0), -1))


def state_orders(snn, x, steps=3) -> set[str]:
    """How the neuron layers' membranes are laid out during a run."""
    seen = set()

    def look(module, _inputs, _output):
        v = module.v
        seen.add("channels_last" if v.dim() == 4 and not v.is_contiguous() else "contiguous")

    hooks = [m.register_forward_hook(look) for m in snn.graph_module.modules() if isinstance(m, IFNeuron)]
    try:
        snn.simulate(x, steps)
    finally:
        for hook in hooks:
            hook.remove()
    return seen


@pytest.mark.parametrize(
    "factory",
    [
        lambda: (resnet20(num_classes=4, width=4), 8),
        lambda: (vgg6(width=4, num_classes=4, pool="max"), 32),
        lambda: (FlattenedByView(), 8),
    ],
    ids=["resnet20", "vgg6-max", "view"],
)
@pytest.mark.parametrize("method", ["percentile", "max"])  # soft reset (compiled scan) and hard (eager)
def test_channels_last_on_cpu_gives_the_contiguous_results(factory, method):
    torch.manual_seed(0)
    model, size = factory()
    model.eval()
    x = torch.rand(6, 3, size, size)
    snn = sp.convert(model, x, method)
    assert "channels_last" in state_orders(snn, x)  # the default layout is in use, not silently undone
    fast = snn.simulate(x, 24, record=True)

    snn.memory_format = torch.contiguous_format
    assert state_orders(snn, x) == {"contiguous"}
    plain = snn.simulate(x, 24, record=True)
    # The convolutions may round differently in the two orders; everything else is the same arithmetic.
    torch.testing.assert_close(fast.readout, plain.readout, rtol=1e-4, atol=1e-5)
    for name in plain.spikes:
        torch.testing.assert_close(fast.spikes[name], plain.spikes[name], rtol=0.02, atol=2.0)


def test_single_channel_and_flat_inputs_keep_their_order():
    snn = sp.convert(nn.Sequential(nn.Linear(5, 3), nn.ReLU(), nn.Linear(3, 2)), torch.rand(8, 5))
    x = torch.rand(4, 5)
    assert snn.simulation_layout(x) is x
    image = torch.rand(4, 1, 6, 6)
    assert snn.simulation_layout(image).stride() == image.stride()  # one channel: the same memory
    colour = torch.rand(4, 3, 6, 6)
    assert snn.simulation_layout(colour).is_contiguous(memory_format=torch.channels_last)
    snn.memory_format = torch.contiguous_format
    assert snn.simulation_layout(colour) is colour


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(1, 4), min_size=1, max_size=5), st.randoms(use_true_random=False))
def test_dense_means_any_memory_order_without_gaps_or_overlaps(shape, random):
    order = list(range(len(shape)))  # memory order: order[0] outermost
    random.shuffle(order)
    stored = torch.zeros([shape[d] for d in order]).permute(*[order.index(d) for d in range(len(shape))])
    assert stored.shape == torch.Size(shape) and dense(stored)
    every_other = torch.zeros(*shape, 2)[..., 0]  # a gap after every element
    assert dense(every_other) == (every_other.numel() == 1)
    assert not dense(torch.zeros(*shape).unsqueeze(0).expand(2, *shape))  # each element twice


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 3), st.integers(1, 5), st.booleans(), st.integers(0, 2**16))
def test_sum_over_batch_is_the_logical_sum_in_any_order(steps, batch, channels_last, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 3, (steps, batch, 3, 4, 2), generator=g).float()  # counts: sums exact in any order
    stored = channels_last_per_step(x) if channels_last else x
    assert torch.equal(sum_over_batch(stored), x.sum(dim=1))
