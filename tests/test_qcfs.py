"""QCFS: the activation, the training helper, and conversion with the learned clip values."""

import pytest
import torch
from helpers import Residual
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import spikeport as sp
from spikeport.cli import main
from spikeport.qcfs import QCFS


def test_qcfs_quantises_clips_and_shifts_and_trains_its_threshold():
    act = QCFS(levels=4, threshold=2.0)
    x = torch.tensor([-1.0, 0.0, 0.24, 0.26, 0.9, 1.9, 5.0], requires_grad=True)
    y = act(x)
    # levels of 0.5: round(x / 0.5), clipped to [0, 4]
    assert y.tolist() == [0.0, 0.0, 0.0, 0.5, 1.0, 2.0, 2.0]
    y.sum().backward()
    assert act.threshold.grad is not None and x.grad is not None  # straight-through gradients


def test_prepare_swaps_every_relu_spelling():
    model = sp.qcfs.prepare(Residual(), levels=8)
    activations = [m for m in model.modules() if isinstance(m, QCFS)]
    assert len(activations) == 3 and all(a.levels == 8 for a in activations)
    assert not any(type(m) is nn.ReLU for m in model.modules())
    assert set(sp.qcfs.thresholds(model).values()) == {8.0}


@settings(max_examples=25, deadline=None)
@given(levels=st.integers(1, 8), threshold=st.floats(0.3, 3.0), seed=st.integers(0, 1000))
def test_one_hidden_layer_converts_exactly_at_t_equal_l(levels, threshold, seed):
    """A soft-reset IF neuron with threshold lambda, starting at lambda/2, spikes floor(L I / lambda + 1/2)
    times in L steps of a constant current I (clipped to [0, L]): the QCFS level, exactly."""
    torch.manual_seed(seed)
    model = sp.qcfs.prepare(
        nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 3)), levels, threshold
    ).eval()
    x = torch.randn(32, 5)
    snn = sp.convert(model, x, "qcfs")
    with torch.no_grad():
        torch.testing.assert_close(snn(x, timesteps=levels)[-1], model(x), rtol=1e-4, atol=1e-4)


def test_qcfs_method_needs_qcfs_activations():
    with pytest.raises(
        sp.ConversionError, match="found none; for a plain ReLU model use method='calibrated'"
    ):
        sp.convert(nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 2)), torch.rand(4, 2), "qcfs")


def test_train_and_convert_commands_with_qcfs(tmp_path, capsys):
    import numpy as np

    g = np.random.default_rng(0)
    data = tmp_path / "d.npz"
    np.savez(data, x=g.random((64, 1, 8, 8), dtype=np.float32), y=g.integers(0, 5, 64))
    weights = tmp_path / "w.pt"
    common = ["tests.helpers:Residual", "--data", f"npz:{data}"]
    assert main(["train", *common, "--epochs", "1", "--qcfs", "4", "-o", str(weights), "--quiet"]) == 0
    net = tmp_path / "net.spk"
    assert (
        main(
            ["convert", *common, "--weights", str(weights), "--qcfs", "4", "--method", "qcfs", "-o", str(net)]
        )
        == 0
    )
    snn = sp.load(net)
    assert all(n.initial_potential == 0.5 for n in snn.neurons().values())
    capsys.readouterr()
