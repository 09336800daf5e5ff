"""Calibrated conversion: channel-wise robust thresholds, half start, bias correction at a target T."""

import pytest
import torch
from helpers import Residual, observing_whole_graph, randomize_batchnorms
from torch import nn

import spikeport as sp
from spikeport.graph.canonical import max_pools_before_activations
from spikeport.graph.prepare import prepare
from spikeport.qcfs import QCFS


def first_layer_rates(snn, model, x, steps):
    """The first neurons' output rates at ``steps`` and the ANN's activation there, [B, C, H, W] each."""
    neuron = snn.graph_module.get_submodule("1")
    seen = []
    hook = neuron.register_forward_hook(lambda _m, _i, out: seen.append(out))
    snn.simulate(x, steps, chunk=steps)
    hook.remove()
    with torch.no_grad():
        target = model[0](x).clamp_min(0)
    return seen[0].reshape(steps, *target.shape).mean(0), target


def first_layer_error(snn, model, x, steps):
    """Mean over channels of |mean ANN activation (clipped at the threshold) - mean SNN output rate|."""
    rate, target = first_layer_rates(snn, model, x, steps)
    threshold = snn.graph_module.get_submodule("1").threshold
    error = torch.minimum(target, threshold) - rate
    return error.mean(dim=(0, 2, 3)).abs().mean()


def small_cnn():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 6, 3), nn.ReLU(), nn.Flatten(), nn.Linear(6 * 6 * 6, 4)).eval()


def test_bias_correction_shrinks_the_rate_error_at_the_target_steps():
    model = small_cnn()
    x = torch.rand(64, 1, 8, 8)
    plain = sp.convert(model, x, "calibrated", correction=False, search=False, weights=False, timesteps=3)
    corrected = sp.convert(model, x, "calibrated", search=False, weights=False, timesteps=3)
    assert corrected.graph_module.get_submodule("1").bias.shape == (6, 1, 1)
    assert first_layer_error(corrected, model, x, 3) < 0.5 * first_layer_error(plain, model, x, 3)
    assert any("calibrated for T=3" in note for note in corrected.info["notes"])


def test_a_second_pass_corrects_what_the_first_bias_left(monkeypatch):
    """With weights on, each depth is fitted twice; the second pass sees currents that already carry the first
    pass's bias, so its correction adds to that bias. With the weight fit a no-op, the first pass's bias
    must survive (not be replaced by the second pass's small remainder)."""
    import spikeport.methods.calibrated as calibrated

    model = small_cnn()
    x = torch.rand(64, 1, 8, 8)
    once = sp.convert(model, x, "calibrated", search=False, weights=False, timesteps=3)
    monkeypatch.setattr(calibrated.Calibrated, "fit_layer_weights", lambda *args: None)
    monkeypatch.setattr(calibrated.Calibrated, "fit_readout_weights", lambda *args: None)
    twice = sp.convert(model, x, "calibrated", search=False, timesteps=3)
    first = once.graph_module.get_submodule("1").bias
    second = twice.graph_module.get_submodule("1").bias
    assert first.norm() > 0
    assert (second - first).norm() < 0.5 * first.norm()
    assert first_layer_error(twice, model, x, 3) <= first_layer_error(once, model, x, 3) + 1e-3


def test_calibrated_networks_save_and_export_with_their_biases(tmp_path):
    torch.manual_seed(1)
    model = randomize_batchnorms(Residual()).eval()
    x = torch.rand(32, 1, 8, 8)
    snn = sp.convert(model, x, "calibrated", timesteps=4)
    loaded = sp.load(sp.save(snn, tmp_path / "c.spk"))
    assert torch.equal(loaded(x, timesteps=6), snn(x, timesteps=6))
    chain = nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 6 * 6, 2)).eval()
    snn = sp.convert(chain, x, "calibrated", timesteps=4)
    back = sp.import_nir(sp.export_nir(snn))  # the bias joins the conv's bias in NIR
    torch.testing.assert_close(back(x, timesteps=8), snn(x, timesteps=8), rtol=0, atol=1e-4)


@pytest.mark.parametrize(("steps", "reset"), [(1, "soft"), (3, "soft"), (3, "hard")])
def test_threshold_search_lowers_the_squared_error_at_the_target_steps(steps, reset):
    model = small_cnn()
    x = torch.rand(64, 1, 8, 8)
    errors = {}
    for search in (False, True):
        snn = sp.convert(
            model, x, "calibrated", correction=False, search=search, timesteps=steps, reset=reset
        )
        rate, target = first_layer_rates(snn, model, x, steps)
        errors[search] = (rate - target).square().mean()
    assert errors[True] < 0.9 * errors[False]


def pooled_net(activation: nn.Module) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        activation,
        nn.MaxPool2d(3, 2, padding=1),
        nn.Conv2d(4, 4, 3),
        nn.ReLU(),
        nn.MaxPool2d(2, ceil_mode=True),
        nn.Flatten(),
        nn.LazyLinear(3),
    ).eval()


@pytest.mark.parametrize("activation", [nn.ReLU(), QCFS(levels=4, threshold=1.0)])
def test_pools_move_before_the_activations_without_changing_the_ann(activation):
    model = pooled_net(activation)
    x = torch.randn(16, 1, 11, 11)
    model(x)
    prepared = prepare(model, x)
    before = prepared.graph_module(x)
    assert max_pools_before_activations(prepared.graph_module) == 2
    order = [type(m).__name__ for m in prepared.graph_module.children()]
    assert torch.equal(prepared.graph_module(x), before), order
    shapes = [n.meta["sample_shape"] for n in prepared.activation_nodes()]
    assert shapes == [(4, 6, 6), (4, 2, 2)]  # the neurons sit after the pools: fewer of them


def test_an_activation_read_elsewhere_keeps_its_pool_after_it():
    class TwoReaders(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.relu, self.pool = nn.Conv2d(1, 2, 3), nn.ReLU(), nn.MaxPool2d(2)

        def forward(self, x):
            a = self.relu(self.conv(x))
            return self.pool(a).flatten(1).sum(1, keepdim=True) + a.flatten(1).mean(1, keepdim=True)

    prepared = prepare(TwoReaders().eval(), torch.rand(2, 1, 6, 6))
    assert max_pools_before_activations(prepared.graph_module) == 0


def test_calibrated_pools_currents_and_stays_close_to_the_ann():
    model = pooled_net(nn.ReLU())
    x = torch.rand(128, 1, 11, 11)
    model(x)
    snn = sp.convert(model, x, "calibrated", timesteps=8)
    assert any("pooled the input currents of 2 layer(s)" in n for n in snn.info["notes"])
    assert len(list(snn.neuron_nodes())) == 2
    with torch.no_grad():
        ann = model(x)
    error = (snn(x, timesteps=64) - ann).abs().mean() / ann.abs().mean()
    assert error < 0.1


def test_options_are_checked():
    with pytest.raises(ValueError, match="timesteps must be >= 1"):
        sp.convert(nn.Sequential(nn.Linear(2, 2), nn.ReLU()), torch.rand(4, 2), "calibrated", timesteps=0)


class TwoBranches(nn.Module):
    """Two neuron layers at the same depth (parallel branches), then one after their sum."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Conv2d(1, 3, 3, padding=1), nn.Conv2d(1, 3, 5, padding=2)
        self.mix = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 8 * 8, 5)

    def forward(self, x):
        x = torch.relu(self.a(x)) + torch.relu(self.b(x))
        return self.fc(torch.relu(self.mix(x)).flatten(1))


def test_fitting_stops_at_the_depth_it_fits_and_gets_the_same_network(monkeypatch):
    """The ANN copy ends at the observers and the SNN ends at the observed layers (SpikingNetwork.observing);
    running both to the end gives the very same thresholds and biases."""
    import spikeport.methods.calibrated as calibrated
    from spikeport.methods.statistics import observed_ann

    torch.manual_seed(2)
    model = TwoBranches().eval()
    x = torch.rand(48, 1, 8, 8)
    prepared = prepare(model, x)
    first = prepared.activation_nodes()[0].name
    truncated, _ = observed_ann(prepared, lambda _: [], {first}, truncate=True)
    full, _ = observed_ann(prepared, lambda _: [], {first})
    assert len(truncated.graph.nodes) < len(full.graph.nodes)
    assert all(node.op != "call_module" or "fc" not in str(node.target) for node in truncated.graph.nodes)

    fitted = sp.convert(model, x, "calibrated", timesteps=3).state_dict()

    monkeypatch.setattr(sp.SpikingNetwork, "observing", observing_whole_graph)
    real_observed_ann = calibrated.observed_ann
    monkeypatch.setattr(
        calibrated, "observed_ann", lambda *args, truncate=False, **kw: real_observed_ann(*args, **kw)
    )
    unstopped = sp.convert(model, x, "calibrated", timesteps=3).state_dict()
    assert fitted.keys() == unstopped.keys()
    assert all(torch.equal(fitted[k], unstopped[k]) for k in fitted)


@pytest.mark.parametrize("net", ["pooled", "residual"])
def test_the_weight_fit_sees_what_the_snn_does(monkeypatch, net):
    """Before fitting, what the weight fit's rate model is fed is exactly the mean current the SNN's neurons
    receive (the bias current of the depth's first pass included), and its simulated rates are exactly the
    neurons' rates at T: also behind max-pools of currents (gated: they pass on the growth of the max of the
    sums) and residual adds."""
    import spikeport.methods.calibrated as calibrated

    if net == "pooled":
        model, x = pooled_net(nn.ReLU()), torch.rand(64, 1, 11, 11)
        model(x)
    else:
        torch.manual_seed(1)
        model, x = randomize_batchnorms(Residual()).eval(), torch.rand(64, 1, 8, 8)
    steps = 8
    fed: list[tuple[torch.Tensor, torch.Tensor]] = []

    def no_fit(layer, groups, inputs, target, output, exact=None, stage=""):
        if exact is not None:  # a hidden layer's fit, not the read-out's
            with torch.no_grad():
                fed.append((layer(*inputs), exact(torch.arange(len(target)))))
        return 0.0, 0.0

    def observed(method, fit, names):
        """Per layer of ``names``: the mean current into its neurons (bias included) and their rate at T."""
        seen = {}

        def per_step(values):  # [T * B, ...] -> mean over T; a static input arrives as [B, ...]
            return (
                values if len(values) == len(x) else values.reshape(steps, len(x), *values.shape[1:]).mean(0)
            )

        def record(name):
            def hook(neuron, args, out):
                seen[name] = (per_step(args[0]) + neuron.bias, per_step(out))

            return hook

        snn = method.fitted_snn(fit)
        for node, neuron in snn.neuron_nodes():
            if node.name in names:
                neuron.register_forward_hook(record(node.name))
        with torch.no_grad():
            snn.simulate(x, steps, chunk=steps)
        return [seen[name] for name in sorted(names)]

    checked = []
    real_fit_layer_weights = calibrated.Calibrated.fit_layer_weights

    def fit_layer_weights(self, fit, targets, recorded, trains):
        fed.clear()
        real_fit_layer_weights(self, fit, targets, recorded, trains)
        assert all(fit.biases[name].abs().max() > 1e-4 for name in targets)  # the check would see a bias
        for (modelled, simulated), (current, rate) in zip(
            fed, observed(self, fit, set(targets)), strict=True
        ):
            torch.testing.assert_close(modelled, current, rtol=1e-4, atol=1e-5)
            torch.testing.assert_close(simulated, rate, rtol=1e-4, atol=1e-5)
            checked.append(rate.abs().sum())

    monkeypatch.setattr(calibrated, "fit_parameters", no_fit)
    monkeypatch.setattr(calibrated.Calibrated, "fit_layer_weights", fit_layer_weights)
    sp.convert(model, x, "calibrated", timesteps=steps)
    assert len(checked) == (2 if net == "pooled" else 3) and all(c > 0 for c in checked)


def simulated_layers(monkeypatch, **options) -> tuple[list[bool], sp.SpikingNetwork]:
    """Convert ``pooled_net`` with ``calibrated`` at T = 3: per weight fit, in order, whether it got simulated
    rates; and the network."""
    import spikeport.methods.calibrated as calibrated

    model = pooled_net(nn.ReLU())
    x = torch.rand(32, 1, 11, 11)
    model(x)
    given = []
    real_fit_parameters = calibrated.fit_parameters

    def recording(*args, exact=None, **kwargs):
        given.append(exact is not None)
        return real_fit_parameters(*args, exact=exact, **kwargs)

    monkeypatch.setattr(calibrated, "fit_parameters", recording)
    snn = sp.convert(model, x, "calibrated", timesteps=3, **options)
    return given, snn


@pytest.mark.parametrize("simulated", [True, False])
def test_simulated_fit_is_what_the_option_says(monkeypatch, simulated):
    """Every hidden layer's fit gets the simulated rates with the option on (also the first layer, on the
    analog input), none with it off; the read-out's never (its mean current is its value: exact already)."""
    given, _ = simulated_layers(monkeypatch, simulated_fit=simulated)
    assert given == [simulated, simulated, False]


def test_spike_trains_too_large_for_memory_fall_back_to_the_rate_model(monkeypatch):
    """Over the budget, a layer reading spikes is fitted on the rate model alone, and a note says so; the first
    layer reads the analog input, which is recorded anyway: it stays simulated."""
    import spikeport.methods.calibrated as calibrated

    monkeypatch.setattr(calibrated, "SPIKE_TRAINS_BUDGET", 0)
    given, snn = simulated_layers(monkeypatch)
    assert any("weights fitted on the rate model alone" in note for note in snn.info["notes"])
    assert given == [True, False, False]  # the first layer, the second (spikes), the read-out
