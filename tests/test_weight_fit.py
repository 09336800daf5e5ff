"""Weight calibration in `calibrated`: the rate model, the cut-out synapses, and what the fit changes."""

import copy
import math

import pytest
import torch
from helpers import Residual, randomize_batchnorms
from hypothesis import assume, given
from hypothesis import strategies as st
from torch import fx, nn

import spikeport as sp
from spikeport.graph.prepare import prepare
from spikeport.graph.subgraph import feeding_subgraph
from spikeport.methods import weight_fit
from spikeport.methods.weight_fit import (
    Adam,
    fit_parameters,
    packed_steps,
    rate_model,
    trainable_groups,
    unpacked_steps,
)
from spikeport.neurons.dynamics import Reset, if_scan


@given(
    current=st.floats(-1.0, 2.0),
    threshold=st.floats(0.1, 2.0),
    steps=st.integers(1, 24),
    start=st.sampled_from([0.0, 0.5]),
)
def test_the_rate_model_is_the_soft_reset_neuron_under_a_constant_current(current, threshold, steps, start):
    level = current * steps / threshold + start
    assume(
        abs(level - round(level)) > 1e-3
    )  # the simulation sums where the model multiplies: ties may differ
    currents = torch.full((steps, 1), current, dtype=torch.float64)
    v = torch.full((1,), start * threshold, dtype=torch.float64)
    _, out = if_scan(v, currents, torch.tensor(threshold, dtype=torch.float64), Reset.SOFT)
    simulated = out.mean(dim=0)  # spikes carry the threshold
    model = rate_model(
        torch.tensor([current], dtype=torch.float64),
        torch.tensor(threshold, dtype=torch.float64),
        steps,
        start,
    )
    assert math.isclose(float(model), float(simulated), rel_tol=1e-9, abs_tol=1e-12)


def test_the_rate_model_passes_gradients_inside_its_range_only():
    current = torch.tensor([-0.5, 0.3, 0.7, 3.0], requires_grad=True)
    rate_model(current, torch.tensor(1.0), 4, 0.5).sum().backward()
    assert current.grad.tolist() == [0.0, 1.0, 1.0, 0.0]


def test_the_cut_out_synapses_compute_the_pre_activation_and_share_the_weights():
    torch.manual_seed(0)
    model = randomize_batchnorms(Residual()).eval()
    x = torch.rand(8, 1, 8, 8)
    prepared = prepare(model, x)
    gm = prepared.graph_module
    activations = [n.name for n in prepared.activation_nodes()]
    values = {}
    hooks = [
        gm.get_submodule(n.target).register_forward_hook(
            lambda m, i, o, name=n.name: values.update({name: o})
        )
        for n in prepared.activation_nodes()
    ]
    pre = {}
    hooks += [
        gm.get_submodule(n.target).register_forward_pre_hook(
            lambda m, i, name=n.name: pre.update({name: i[0]})
        )
        for n in prepared.activation_nodes()
    ]
    with torch.no_grad():
        gm(x)
    for hook in hooks:
        hook.remove()
    values["x"] = x
    block = activations[2]  # the residual sum: reads the first activation and the branch's
    layer, reads = feeding_subgraph(gm, block, set(activations))
    assert reads == [activations[0], activations[1]]
    with torch.no_grad():
        torch.testing.assert_close(layer(*(values[r] for r in reads)), pre[block])
    assert {id(p) for p in layer.parameters()} <= {id(p) for p in gm.parameters()}


def test_the_fit_recovers_synapses_that_a_rate_error_came_from():
    """Rates made by known weights, a layer started away from them: the fit finds weights that make those
    rates again (through the straight-through floor), and leaves the zero weights alone."""
    torch.manual_seed(0)
    truth = nn.Linear(20, 6)
    rates = torch.rand(512, 20)
    threshold = torch.full((6,), 0.8)
    with torch.no_grad():
        truth.weight[:, :4] = 0
        target = rate_model(truth(rates), threshold, 4, 0.5)
        layer = fx.symbolic_trace(nn.Sequential(nn.Linear(20, 6)))
        layer.get_submodule("0").weight.copy_(truth.weight * 1.3)
        layer.get_submodule("0").bias.copy_(truth.bias - 0.1)
    groups = trainable_groups(layer, layer)
    assert [len(g["params"]) for g in groups] == [2]
    before, after = fit_parameters(layer, groups, [rates], target, lambda m: rate_model(m, threshold, 4, 0.5))
    assert after < 0.5 * before
    assert (layer.get_submodule("0").weight[:, :4] == 0).all()


def test_the_fit_takes_its_loss_at_the_exact_output_when_given():
    """The straight-through fit: the loss is measured at ``exact`` (here the model's output shifted by a
    constant the model does not know of), gradients flow through the model. Started at weights the model
    finds perfect, the fit corrects for the shift; without ``exact`` it cannot see it."""
    torch.manual_seed(0)
    truth = nn.Linear(8, 3)
    x = torch.rand(256, 8)
    with torch.no_grad():
        target = truth(x)
    shift = 0.05

    def fit(exact_output: bool) -> tuple[float, float]:
        layer = fx.symbolic_trace(nn.Sequential(copy.deepcopy(truth)))

        def exact(pick):
            return layer(x[pick]) + shift

        _, after = fit_parameters(
            layer,
            trainable_groups(layer, layer),
            [x],
            target,
            lambda m: m,
            exact=exact if exact_output else None,
        )
        with torch.no_grad():
            return after, float((layer(x) + shift - target).square().mean())

    after, true_error = fit(True)
    assert after == pytest.approx(true_error, rel=1e-5)  # the error it reports is the exact output's
    _, true_error_without = fit(False)
    assert true_error_without == pytest.approx(shift**2, rel=1e-4)  # nothing to fit in the model's eyes
    assert true_error < 0.1 * true_error_without


@given(steps=st.integers(1, 40), seed=st.integers(0, 2**16), rate=st.floats(0.0, 1.0))
def test_spike_trains_packed_eight_steps_to_a_byte_unpack_to_themselves(steps, seed, rate):
    generator = torch.Generator().manual_seed(seed)
    spikes = torch.rand(3, steps, 2, 5, generator=generator) < rate
    packed = packed_steps(spikes)
    assert packed.dtype == torch.uint8 and packed.shape == (3, -(-steps // 8), 2, 5)
    assert torch.equal(unpacked_steps(packed, steps), spikes)


def test_the_fit_simulates_once_per_refresh_and_once_for_each_error(monkeypatch):
    """The exact output is costly (a simulation of every sample): the fit takes it on every sample once
    before (the error before and the first corrections), once per refresh and once after."""
    monkeypatch.setattr(weight_fit, "ITERATIONS", 250)
    monkeypatch.setattr(weight_fit, "EXACT_REFRESH", 100)
    torch.manual_seed(0)
    layer = fx.symbolic_trace(nn.Sequential(nn.Linear(4, 2)))
    x = torch.rand(300, 4)
    seen = []

    def exact(pick):
        seen.append(len(pick))
        return layer(x[pick]) + 0.1

    fit_parameters(layer, trainable_groups(layer, layer), [x], torch.zeros(300, 2), lambda m: m, exact=exact)
    assert sum(seen) == 300 * 4  # before, at steps 100 and 200, after


def test_the_fits_adam_is_torchs_bit_for_bit():
    torch.manual_seed(0)
    ours = [nn.Parameter(torch.randn(5, 3)), nn.Parameter(torch.randn(4))]
    theirs = [nn.Parameter(p.detach().clone()) for p in ours]
    mine = Adam([{"params": ours[:1], "lr": 3e-3}, {"params": ours[1:], "lr": 1e-4}])
    torchs = torch.optim.Adam([{"params": theirs[:1], "lr": 3e-3}, {"params": theirs[1:], "lr": 1e-4}])
    for step in range(50):
        for params, optimizer in ((ours, mine), (theirs, torchs)):
            optimizer.zero_grad()
            loss = (params[0].sin() * (step + 1)).sum() + params[1].square().sum()
            loss.backward()
            optimizer.step()
        assert all(torch.equal(a, b) for a, b in zip(ours, theirs, strict=True)), step


def conv_net():
    torch.manual_seed(3)
    return nn.Sequential(
        nn.Conv2d(1, 6, 3, padding=1),
        nn.ReLU(),
        nn.AvgPool2d(2),
        nn.Conv2d(6, 8, 3, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(8 * 4 * 4, 5),
    ).eval()


def readout_error(snn, model, x, steps):
    with torch.no_grad():
        return float((snn(x, timesteps=steps)[-1] - model(x)).square().mean())


def test_weight_calibration_brings_the_readout_at_t_closer_to_the_ann():
    model = conv_net()
    x = torch.rand(256, 1, 8, 8)
    original = {k: v.clone() for k, v in model.state_dict().items()}
    plain = sp.convert(model, x, "calibrated", timesteps=3, weights=False)
    fitted = sp.convert(model, x, "calibrated", timesteps=3)
    assert readout_error(fitted, model, x, 3) < 0.9 * readout_error(plain, model, x, 3)
    notes = [n for n in fitted.info["notes"] if "fitted: squared error" in n]
    assert len(notes) == 3  # two neuron layers and the read-out (the only one this random net improves)
    assert all(torch.equal(v, original[k]) for k, v in model.state_dict().items())  # the user's model
    agreement = sp.evaluate(fitted, (x, model(x).argmax(1)), [3], progress=False).agreement[3]
    assert agreement > 0.9


def test_zero_weights_stay_zero_and_hard_reset_fits_the_readout_only():
    model = conv_net()
    with torch.no_grad():
        model[3].weight[:, :3] = 0  # a pruned network stays pruned
        model[6].weight[:2] = 0
    x = torch.rand(128, 1, 8, 8)
    snn = sp.convert(model, x, "calibrated", timesteps=3)
    linear = snn.graph_module.get_submodule("6")
    assert not torch.equal(linear.weight, model[6].weight)  # fitted...
    assert (linear.weight[:2] == 0).all()  # ...around the zeros
    hard = sp.convert(model, x, "calibrated", timesteps=3, reset="hard")
    notes = [n for n in hard.info["notes"] if "fitted: squared error" in n]
    assert len(notes) == 1 and "read-out" in notes[0]
    assert torch.equal(hard.graph_module.get_submodule("3").weight, model[3].weight)
