"""Saving round-trips bit-exactly; an evaluation is internally consistent and renders."""

import json

import torch

import spikeport as sp
from spikeport.report import comparison_markdown
from tests.helpers import Residual, randomize_batchnorms


def converted(method: str = "rmp", **options) -> tuple[torch.nn.Module, sp.SpikingNetwork, torch.Tensor]:
    model = randomize_batchnorms(Residual())
    x = torch.rand(32, 1, 8, 8)
    return model, sp.convert(model, x, method, **options), x


def test_save_and_load_are_bit_exact(tmp_path):
    _, snn, x = converted(encoding="poisson", channelwise=True)
    loaded = sp.load(sp.save(snn, tmp_path / "net.spk"))
    assert torch.equal(snn(x, timesteps=17), loaded(x, timesteps=17))
    assert loaded.info == snn.info
    assert loaded.ann_macs_per_image == snn.ann_macs_per_image
    for name, neuron in snn.neurons().items():
        assert torch.equal(neuron.fanout, loaded.neurons()[name].fanout)


def test_evaluation_is_consistent(tmp_path):
    model, snn, x = converted()
    y = model(x).argmax(1)
    ev = sp.evaluate(snn, (x, y), timesteps=[4, 1, 16], progress=False)
    assert ev.timesteps == [1, 4, 16]
    assert ev.ann_accuracy == 1.0  # labels are the ANN's own predictions
    assert ev.accuracy == ev.agreement  # ... so accuracy and agreement coincide
    assert len(ev.curves["accuracy"]) == 16 and ev.curves["accuracy"][3] == ev.accuracy[4]
    assert ev.spikes_per_image[16] >= ev.spikes_per_image[4] >= ev.spikes_per_image[1]
    assert ev.spikes_per_image[16] == sum(layer.spikes_per_image[16] for layer in ev.layers)
    assert ev.ann_macs_per_image > 0 and ev.macs_per_image[1] == snn.input_fanout.sum().item()
    assert ev.energy_per_image[16] == ev.sops_per_image[16] * 0.9e-12 + ev.macs_per_image[16] * 4.6e-12
    reloaded = sp.Evaluation.from_json(ev.to_json(tmp_path / "ev.json"))
    assert reloaded == ev
    assert json.loads((tmp_path / "ev.json").read_text())["method"]["method"] == "rmp"
    table = ev.to_markdown()
    assert "| 16 |" in table and "agreement" in table
    png = ev.plot(tmp_path / "ev.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_unlabelled_data_reports_agreement_only():
    _, snn, x = converted("max")
    ev = sp.evaluate(snn, x, timesteps=[8], progress=False)
    assert ev.accuracy[8] is None and ev.ann_accuracy is None
    assert 0.0 <= ev.agreement[8] <= 1.0


def test_latency_is_the_first_step_that_stays_above_target():
    _, snn, x = converted("max")
    ev = sp.evaluate(snn, x, timesteps=[64], progress=False)
    ev.curves["agreement"] = [0.5, 0.995, 0.9, 0.991, 0.999] + [1.0] * 59
    assert ev.latency(0.99) == 4
    assert ev.latency(0.9999) == 6


def test_comparison_table_reports_latency_and_its_cost():
    _, snn, x = converted("max")
    ev = sp.evaluate(snn, x, timesteps=[8], progress=False)
    ev.curves["agreement"] = [0.5, 0.992, 0.995, 0.995, 0.995, 0.9995, 0.9995, 0.9995]
    ev.curves["sops_per_image"] = [1000.0 * step for step in range(1, 9)]
    table = comparison_markdown({"a": ev})
    energy = ev.curves["energy_per_image"]
    cost = f"{energy[1] / ev.ann_energy_per_image:.2f}×", f"{energy[5] / ev.ann_energy_per_image:.2f}×"
    assert f"| a | 2 | 2.00k | {cost[0]} | 6 | 6.00k | {cost[1]} |" in table  # 99% then 99.9% agreement
    ev.curves["agreement"][-1] = 0.9
    assert "| a | not within 8 | – | – | not within 8 | – | – |" in comparison_markdown({"a": ev})


def test_moving_a_network_moves_its_reference_ann_and_evaluation_follows(tmp_path):
    """.to() reaches the ANN kept outside the module tree; evaluate feeds batches in the network's dtype and
    device, and load() puts a network where it is asked to (GPUs: bench/gpu.py checks the same on CUDA)."""
    model, snn, x = converted()
    single = sp.evaluate(snn, x, timesteps=[8], progress=False)
    assert snn.device == torch.device("cpu")
    assert snn.to(torch.float64) is snn and snn.dtype == torch.float64
    assert all(p.dtype == torch.float64 for p in snn.ann.parameters())
    double = sp.evaluate(snn, x, timesteps=[8], progress=False)  # float32 batches, run in float64
    assert abs(double.agreement[8] - single.agreement[8]) <= 2 / x.shape[0]  # rounding may flip a spike
    loaded = sp.load(sp.save(snn, tmp_path / "net.spk"), device="cpu")
    assert loaded.device == torch.device("cpu") and loaded.dtype == torch.float64
