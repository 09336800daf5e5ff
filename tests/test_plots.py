"""The evaluation figure: plain step numbers, a y range that holds the data, the ANN as reference in accuracy
and cost, a title that names model, data and image count; energy in named units."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pytest
import torch
from torch import nn

import spikeport as sp
from spikeport.demo import default_output
from spikeport.plots import evaluation_figure


@pytest.fixture(scope="module")
def comparison():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 12), nn.ReLU(), nn.Linear(12, 3))
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(200, 1, 4, 4, generator=g), torch.randint(0, 3, (200,), generator=g)
    return sp.compare(model, (x, y), (x, y), ["ecc", "rmp"], [1, 2, 4, 8, 16], limit=100, progress=False)


def labels(axis) -> list[str]:
    return [tick.get_text() for tick in axis.get_majorticklabels() if tick.get_text()]


def test_figure_reads_in_a_paper(comparison):
    fig = evaluation_figure(comparison.evaluations, cost="energy")
    fig.canvas.draw()
    by_steps, by_cost, loss, rates = fig.axes
    assert fig._suptitle.get_text() == "Sequential on (x, y) tensors, 100 images"
    assert {"1", "2", "4", "8", "16"} <= set(labels(by_steps.xaxis))  # never "4 x 10^0"
    assert not any("times" in text or "^" in text for axes in fig.axes for text in labels(axes.xaxis))
    low, high = by_steps.get_ylim()
    plotted = [100 * v for ev in comparison.evaluations.values() for v in ev.curves["accuracy"]]
    ann = 100 * comparison["ecc"].ann_accuracy
    assert low <= min(plotted) and high >= max([*plotted, ann])
    legend = [text.get_text() for text in by_cost.get_legend().get_texts()]
    assert legend == ["ecc", "rmp", "ANN", "ANN energy"]
    ann_energy = [line for line in by_cost.get_lines() if line.get_label() == "ANN energy"][0]
    assert ann_energy.get_xdata()[0] == pytest.approx(comparison["ecc"].ann_energy_per_image_uj)
    assert loss.get_yscale() == "log" and rates.get_ylabel() == "spikes per neuron per time step"
    plt.close(fig)


def test_energy_has_named_units(comparison):
    ev = comparison["ecc"]
    assert ev.energy_per_image_uj == {t: 1e6 * j for t, j in ev.energy_per_image.items()}
    assert ev.ann_energy_per_image_uj == pytest.approx(1e6 * ev.ann_energy_per_image)


def test_evaluations_name_what_was_evaluated(comparison, tmp_path):
    ev = comparison["rmp"]
    assert ev.model == "Sequential" and ev.data == "(x, y) tensors"
    path = ev.plot(tmp_path / "ev.png", cost="energy")
    assert path.stat().st_size > 0
    assert sp.Evaluation.from_json(ev.to_json(tmp_path / "ev.json")).model == "Sequential"


def test_the_demo_writes_outside_the_working_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("SPIKEPORT_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    assert default_output() == tmp_path / "cache" / "demo"
