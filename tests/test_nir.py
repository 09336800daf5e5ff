"""NIR export and import: exact round trips, parameters as NIR expects them, clear refusals."""

import nir
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import spikeport as sp
from spikeport.models import mnist_cnn


class ResidualCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.conv3 = nn.Conv2d(4, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 4 * 4, 5)

    def forward(self, x):
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv3(F.relu(self.conv2(x))) + x)
        return self.fc(F.avg_pool2d(x, 2).flatten(1))


@pytest.mark.parametrize("method", ["max", "ecc", "rmp[channelwise=true]", "max[initial_potential=0.5]"])
def test_export_then_import_reproduces_the_network_exactly(tmp_path, method):
    torch.manual_seed(0)
    model = ResidualCNN().eval()
    x = torch.rand(24, 1, 8, 8)
    snn = sp.convert(model, x, method)
    path = tmp_path / "net.nir"
    sp.export_nir(snn, path, scales="nodes")
    back = sp.import_nir(path)
    assert torch.equal(back(x, timesteps=25), snn(x, timesteps=25))
    sp.export_nir(snn, path)  # the spikes' values folded through the pool: equal to float rounding
    torch.testing.assert_close(sp.import_nir(path)(x, timesteps=25), snn(x, timesteps=25))
    assert back.info["method"] == "nir"
    ev = sp.evaluate(back, x, [5, 25], ann=model, progress=False)
    assert ev.spikes_per_image == sp.evaluate(snn, x, [5, 25], progress=False).spikes_per_image


def test_residual_add_becomes_two_edges_into_the_neurons():
    torch.manual_seed(1)
    snn = sp.convert(ResidualCNN().eval(), torch.rand(8, 1, 8, 8), "max")
    graph = sp.export_nir(snn)
    into = [src for src, dst in graph.edges if dst == "relu_2"]
    assert sorted(into) == ["conv3", "relu_scale"]  # the conv's current and the shortcut's scaled spikes
    scale = graph.nodes["relu_scale"].scale
    assert np.all(scale == snn.neurons()["relu"].threshold.item())


def test_demo_cnn_file_validates_and_its_parameters_match(tmp_path):
    torch.manual_seed(2)
    model = mnist_cnn().eval()
    snn = sp.convert(model, torch.rand(16, 1, 28, 28), "ecc", channelwise=True)
    path = tmp_path / "demo.nir"
    sp.export_nir(snn, path, scales="nodes")
    graph = nir.read(str(path))  # the nir package's own reader, with its type check
    assert {type(n).__name__ for n in graph.nodes.values()} == {
        "Input",
        "Conv2d",
        "IF",
        "AvgPool2d",
        "Scale",
        "Flatten",
        "Affine",
        "Output",
    }
    neurons = snn.neurons()
    for name, neuron in neurons.items():
        node = graph.nodes[name]
        threshold = neuron.threshold.expand(node.v_threshold.shape).numpy()
        np.testing.assert_array_equal(node.v_threshold, threshold)
        np.testing.assert_array_equal(node.r, 1)
        np.testing.assert_array_equal(node.v_reset, 0)
        assert node.metadata["spikeport.reset"] == "subtract"
        assert node.metadata["spikeport.initial_potential"] == 0.5
        # spikes meet an average pool: their values travel as a Scale node between neuron and pool
        np.testing.assert_array_equal(graph.nodes[f"{name}_scale"].scale, threshold)
        assert (name, f"{name}_scale") in graph.edges
    conv = graph.nodes["0"]
    np.testing.assert_array_equal(conv.weight, model[0].weight.detach().numpy())  # analog input: unscaled
    assert tuple(conv.padding) == (2, 2) and tuple(conv.stride) == (1, 1)
    np.testing.assert_array_equal(
        graph.nodes["8"].weight, snn.graph_module.get_submodule("8").weight.detach()
    )


def test_spikes_read_directly_by_a_layer_are_folded_into_its_weights():
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3)).eval()
    snn = sp.convert(model, torch.rand(20, 6), "max", channelwise=True)
    graph = sp.export_nir(snn)
    threshold = snn.neurons()["1"].threshold.reshape(1, -1)
    np.testing.assert_array_equal(graph.nodes["2"].weight, (model[2].weight * threshold).detach().numpy())
    assert not any(type(n).__name__ == "Scale" for n in graph.nodes.values())


def test_hard_reset_option_is_stated_and_imports_as_hard(tmp_path):
    snn = sp.convert(ResidualCNN().eval(), torch.rand(8, 1, 8, 8), "rmp")
    graph = sp.export_nir(snn, tmp_path / "hard.nir", soft_reset="hard")
    assert graph.nodes["relu"].metadata["spikeport.reset"] == "exported-as-hard"
    back = sp.import_nir(tmp_path / "hard.nir")
    assert all(n.reset_mode.value == "hard" for n in back.neurons().values())


def test_what_nir_cannot_express_is_refused_clearly():
    x = torch.rand(8, 1, 8, 8)
    pooled = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(18, 2))
    with pytest.raises(
        sp.ConversionError, match="SpikingMaxPool module '2'.*no NIR counterpart.*max_to_avg=True"
    ):
        sp.export_nir(sp.convert(pooled, x, "max"))
    with pytest.warns(UserWarning, match="max_to_avg"):
        sp.export_nir(sp.convert(pooled, x, "max", max_to_avg=True))  # the way round it
    with pytest.raises(sp.ConversionError, match="NIR has no FS neuron"):
        sp.export_nir(sp.convert(ResidualCNN(), x, "fs"))
    grouped = nn.Sequential(
        nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Conv2d(2, 2, 3, groups=2), nn.Flatten(), nn.Linear(32, 2)
    )
    with pytest.raises(sp.ConversionError, match="grouped conv"):
        sp.export_nir(sp.convert(grouped, x, "max"))


@pytest.mark.parametrize("threshold", [0.0, -1.0, float("nan")])
def test_import_refuses_thresholds_that_are_not_positive(threshold):
    graph = sp.export_nir(sp.convert(ResidualCNN().eval(), torch.rand(8, 1, 8, 8), "max"))
    graph.nodes["relu"].v_threshold = np.full_like(graph.nodes["relu"].v_threshold, threshold)
    with pytest.raises(sp.ConversionError, match="IF node 'relu': thresholds must be finite and > 0"):
        sp.import_nir(graph)


def test_import_refuses_non_finite_weights():
    graph = sp.export_nir(sp.convert(ResidualCNN().eval(), torch.rand(8, 1, 8, 8), "max"))
    graph.nodes["fc"].weight[0, 0] = np.nan
    with pytest.raises(sp.ConversionError, match="NIR graph does not import: .*non-finite"):
        sp.import_nir(graph)


def test_files_read_in_older_nir_readers_and_files_with_a_batch_axis_import(tmp_path):
    import h5py

    torch.manual_seed(0)
    nested = nn.Sequential(nn.Sequential(nn.Flatten(), nn.Linear(16, 8)), nn.ReLU(), nn.Linear(8, 3)).eval()
    x = torch.rand(8, 1, 4, 4)
    snn = sp.convert(nested, x, "max")
    path = tmp_path / "nested.nir"
    graph = sp.export_nir(snn, path)
    assert all("." not in name for name in graph.nodes)  # readers make node names module names
    assert list(graph.nodes)[0] == "input" and list(graph.nodes)[-1] == "output"
    with h5py.File(path) as file:  # nir < 1.0.5 (sinabs pins 1.0.4) has no IF.v_reset
        ifs = [g for g in file["node"]["nodes"].values() if g["type"][()] in (b"IF", "IF")]
        assert ifs and all("v_reset" not in g for g in ifs)
    torch.testing.assert_close(sp.import_nir(path)(x, 8), snn(x, 8))
    # Norse and Rockpool write the batch into the input's shape: read as the shape of one sample
    batched = nir.NIRGraph(
        nodes={
            "input": nir.Input(input_type={"input": np.array([4, 6])}),
            "fc": nir.Affine(weight=np.ones((3, 6), dtype=np.float32), bias=np.zeros(3, dtype=np.float32)),
            "if": nir.IF(r=np.ones(3, dtype=np.float32), v_threshold=np.ones(3, dtype=np.float32)),
            "output": nir.Output(output_type={"output": np.array([3])}),
        },
        edges=[("input", "fc"), ("fc", "if"), ("if", "output")],
        type_check=False,
    )
    nir.write(str(tmp_path / "batched.nir"), batched)
    assert sp.import_nir(tmp_path / "batched.nir").input_shape == (6,)
