"""Graded (multi-bit) spikes: the dynamics, the methods' ``spike_bits`` option, and honest accounting."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import spikeport as sp
from spikeport.errors import OptionError
from spikeport.export.nir import NIRExportError
from spikeport.methods.base import make_method
from spikeport.methods.weight_fit import SpikingInputs, rate_model
from spikeport.metrics import EnergyModel
from spikeport.neurons.dynamics import Reset, graded_if_scan, if_scan, signed_graded_scan, signed_if_scan

steps_and_levels = dict(steps=st.integers(1, 12), levels=st.integers(1, 31), seed=st.integers(0, 10_000))


def per_step_currents(seed: int, steps: int, threshold: float, signed: bool = False) -> torch.Tensor:
    """Currents of at most one threshold per step: what a calibrated threshold keeps a neuron within."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(steps, 64, generator=g, dtype=torch.float64) * threshold
    return x * torch.where(torch.rand(steps, 64, generator=g) < 0.5, -1.0, 1.0) if signed else x


@settings(max_examples=40, deadline=None)
@given(**steps_and_levels, start=st.sampled_from([0.0, 0.5]))
def test_graded_spikes_send_the_input_summed_so_far_in_whole_levels(steps, levels, seed, start):
    """A soft-reset neuron of L levels keeps less than one level (threshold / L) in its membrane, so its
    output summed to any step is the input summed so far (plus the start) floored to whole levels."""
    threshold = 1.7
    unit = threshold / levels
    currents = per_step_currents(seed, steps, threshold)
    v = torch.full((64,), start * unit, dtype=torch.float64)
    out = graded_if_scan(
        v, currents.clone(), torch.tensor(threshold, dtype=torch.float64), levels, Reset.SOFT
    )
    sent, received = out.cumsum(0), currents.cumsum(0) + start * unit
    expected = torch.floor(received / unit + 1e-9) * unit
    torch.testing.assert_close(sent, expected, rtol=0, atol=1e-9)
    assert bool((out <= threshold + 1e-12).all()) and bool((out >= 0).all())  # at most the threshold a step
    assert bool(((out / unit) - (out / unit).round()).abs().max() < 1e-9)  # whole levels


@settings(max_examples=30, deadline=None)
@given(steps=st.integers(1, 12), seed=st.integers(0, 10_000), reset=st.sampled_from(list(Reset)))
def test_one_level_is_the_binary_neuron(steps, seed, reset):
    currents = per_step_currents(seed, steps, 2.0) * 1.3  # some steps above the threshold too
    threshold = torch.tensor(1.0, dtype=torch.float64)
    _, binary = if_scan(torch.zeros(64, dtype=torch.float64), currents, threshold, reset)
    graded = graded_if_scan(torch.zeros(64, dtype=torch.float64), currents.clone(), threshold, 1, reset)
    torch.testing.assert_close(graded, binary, rtol=0, atol=0)


@settings(max_examples=40, deadline=None)
@given(**steps_and_levels)
def test_signed_graded_spikes_round_the_input_summed_so_far(steps, levels, seed):
    threshold = 0.9
    unit = threshold / levels
    currents = per_step_currents(seed, steps, threshold, signed=True)
    v = torch.zeros(64, dtype=torch.float64)
    out = signed_graded_scan(v, currents.clone(), torch.tensor(threshold, dtype=torch.float64), levels)
    remainder = currents.cumsum(0) - out.cumsum(0)
    assert float(remainder.abs().max()) <= unit / 2 + 1e-9  # the nearest whole level, of either sign
    assert float(out.abs().max()) <= threshold + 1e-12


def test_signed_graded_with_one_level_is_the_ternary_neuron():
    currents = per_step_currents(3, 10, 1.0, signed=True)
    threshold = torch.tensor(1.0, dtype=torch.float64)
    ternary = signed_if_scan(torch.zeros(64, dtype=torch.float64), currents.clone(), threshold)
    graded = signed_graded_scan(torch.zeros(64, dtype=torch.float64), currents.clone(), threshold, 1)
    torch.testing.assert_close(graded, ternary, rtol=0, atol=0)


@settings(max_examples=30, deadline=None)
@given(
    current=st.floats(0.0, 1.0), steps=st.integers(1, 8), levels=st.integers(1, 15), start=st.floats(0, 0.99)
)
def test_the_rate_model_of_t_steps_of_l_levels_is_that_of_t_times_l_binary_steps(
    current, steps, levels, start
):
    threshold = torch.tensor(1.0, dtype=torch.float64)
    currents = torch.full((steps, 1), current, dtype=torch.float64)
    v = torch.full((1,), start / levels, dtype=torch.float64)
    rate = graded_if_scan(v, currents, threshold, levels, Reset.SOFT).mean(0)
    model = rate_model(torch.tensor([current], dtype=torch.float64), threshold, steps * levels, start)
    torch.testing.assert_close(rate, model, rtol=0, atol=1e-9)


@pytest.mark.parametrize("bits", [2, 3, 4])
def test_a_qcfs_net_of_2_to_the_b_minus_1_levels_converts_exactly_in_one_step_with_b_bit_spikes(bits):
    """QCFS quantises to L levels with a half-level shift; one step of L-level graded spikes starting half a
    level up sends exactly that level."""
    torch.manual_seed(bits)
    model = sp.qcfs.prepare(
        nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3)),
        levels=2**bits - 1,
        threshold=1.5,
    ).eval()
    x = torch.randn(64, 5)
    snn = sp.convert(model, x, "qcfs", spike_bits=bits)
    with torch.no_grad():
        torch.testing.assert_close(snn(x, timesteps=1)[-1], model(x), rtol=1e-4, atol=1e-4)
    binary = sp.convert(model, x, "qcfs")
    with torch.no_grad():
        assert not torch.allclose(binary(x, timesteps=1)[-1], model(x), atol=1e-2)  # binary needs L steps


def small_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 6, 3),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(6, 8, 3),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(8 * 4 * 4, 10),
    ).eval()


@pytest.mark.parametrize("method", ["ecc", "percentile", "rmp", "max"])
def test_more_bits_per_spike_come_closer_to_the_ann_in_few_steps(method):
    model, x = small_cnn(), torch.rand(64, 1, 14, 14)
    errors = []
    for bits in (1, 4):
        snn = sp.convert(model, x, method, spike_bits=bits)
        with torch.no_grad():
            errors.append(float((snn(x, timesteps=2)[-1] - model(x)).abs().mean()))
    assert errors[1] < errors[0] / 2


def test_reports_count_the_bits_and_price_graded_synaptic_ops():
    model, x = small_cnn(), torch.rand(32, 1, 14, 14)
    energy = EnergyModel()
    binary = sp.evaluate(sp.convert(model, x, "ecc"), x, timesteps=[4], ann=model, energy=energy)
    graded = sp.evaluate(
        sp.convert(model, x, "ecc[spike_bits=3]"), x, timesteps=[4], ann=model, energy=energy
    )
    assert binary.spike_bits_per_image[4] == pytest.approx(binary.spikes_per_image[4])
    assert {layer.spike_bits for layer in graded.layers} == {3}  # the neurons and the max-pool they feed
    assert graded.spike_bits_per_image[4] == pytest.approx(3 * graded.spikes_per_image[4])
    expected = (
        3 * graded.sops_per_image[4] * energy.joules_per_sop
        + graded.macs_per_image[4] * energy.joules_per_mac
    )
    assert graded.energy_per_image[4] == pytest.approx(expected)
    table = graded.to_markdown()
    assert "ecc (3-bit spikes)" in table and "spike bits/img" in table and "Graded spikes" in table
    assert "spike bits/img" not in binary.to_markdown()
    assert sp.Evaluation.from_dict(graded.to_dict()).spike_bits_per_image == graded.spike_bits_per_image


def test_a_graded_synaptic_op_never_costs_more_than_a_mac():
    energy = EnergyModel()
    assert energy.sop_weight(1) == 1 and energy.sop_weight(2) == 2
    assert energy.sop_weight(8) == pytest.approx(energy.joules_per_mac / energy.joules_per_sop)


def test_graded_networks_save_load_and_nir_refuses_them(tmp_path):
    model, x = small_cnn(), torch.rand(16, 1, 14, 14)
    snn = sp.convert(model, x, "ecc[spike_bits=4]")
    loaded = sp.load(sp.save(snn, tmp_path / "graded.spk"))
    with torch.no_grad():
        torch.testing.assert_close(loaded(x, timesteps=3), snn(x, timesteps=3), rtol=0, atol=0)
    with pytest.raises(NIRExportError, match="graded spikes .4 bits.*spike_bits=1"):
        sp.export_nir(snn)


def test_graded_spike_trains_give_the_weight_fit_the_outputs_it_saw():
    model, x = small_cnn(), torch.rand(8, 1, 14, 14)
    snn = sp.convert(model, x, "ecc[spike_bits=3]")
    names = {node.name for node, _ in snn.neuron_nodes()}
    inputs = SpikingInputs(snn, names, trains=True)
    inputs.start(x)
    with torch.no_grad():
        snn.simulate(x, 5, chunk=5)
    averages = inputs.close()
    for name, train in inputs.spike_trains().items():
        if name in names:
            means = train.running_means(torch.arange(8), 5)
            torch.testing.assert_close(means[-1], averages[name], rtol=1e-5, atol=1e-6)


def test_calibrated_fits_graded_spikes():
    model, x = small_cnn(), torch.rand(64, 1, 14, 14)
    snn = sp.convert(model, x, "calibrated[spike_bits=3, timesteps=2]")
    assert all(neuron.levels == 7 for _, neuron in snn.neuron_nodes())
    with torch.no_grad():
        agree = (snn(x, timesteps=2)[-1].argmax(1) == model(x).argmax(1)).float().mean()
    assert agree >= 0.9


@pytest.mark.parametrize("bits", [0, 9, 2.5])
def test_spike_bits_out_of_range_are_refused_by_name(bits):
    with pytest.raises(OptionError, match="spike_bits"):
        make_method("ecc", spike_bits=bits)


def test_spike_bits_set_levels():
    assert make_method("ecc", spike_bits=4).levels == 15 and math.log2(make_method("ecc").levels + 1) == 1


def test_a_comparison_with_graded_spikes_counts_their_bits():
    model, x = small_cnn(), torch.rand(16, 1, 14, 14)
    table = sp.compare(model, x, x, ["ecc", "ecc[spike_bits=2]"], timesteps=[2], progress=False).to_markdown()
    header = next(line for line in table.splitlines() if line.startswith("| T or K"))
    assert "spike bits/img" in header
    rows = [line for line in table.splitlines() if line.startswith("| 2 |")]
    assert len(rows) == 2 and all(row.count("|") == header.count("|") for row in rows)
