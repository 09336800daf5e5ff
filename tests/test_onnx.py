"""ONNX import: models exported from PyTorch load, match onnxruntime to 1e-5, and convert."""

import warnings

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
from helpers import GatedMLP
from torch import nn

import spikeport as sp

onnxruntime = pytest.importorskip("onnxruntime")


class ResidualCNN(nn.Module):
    """Conv-BN-ReLU, max-pool, a residual block with an uneven pad, global pooling, a linear head."""

    def __init__(self, activation=F.relu):
        super().__init__()
        self.activation = activation
        self.conv1 = nn.Conv2d(1, 6, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(6)
        self.conv2 = nn.Conv2d(6, 6, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(6)
        self.conv3 = nn.Conv2d(6, 8, 2)
        self.fc = nn.Linear(8 * 2 * 2, 4)

    def forward(self, x):
        x = F.max_pool2d(self.activation(self.bn1(self.conv1(x))), 2)
        x = self.activation(self.bn2(self.conv2(x)) + x)
        x = self.activation(self.conv3(F.pad(x, (0, 1, 0, 1))))
        x = F.avg_pool2d(x, 2)
        return self.fc(torch.flatten(x, 1))


def export(model: nn.Module, path, dynamo: bool) -> None:
    x = torch.rand(2, 1, 8, 8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dynamo:
            pytest.importorskip("onnxscript")
            torch.onnx.export(model, (x,), str(path), dynamo=True, verbose=False)
        else:
            torch.onnx.export(
                model, (x,), str(path), dynamo=False, dynamic_axes={"x": {0: "batch"}}, input_names=["x"]
            )


def randomized(model: nn.Module) -> nn.Module:
    torch.manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.data.uniform_(0.5, 1.5)
    return model.eval()


@pytest.mark.parametrize("dynamo", [False, True])
def test_exported_model_matches_onnxruntime_and_the_original(tmp_path, dynamo):
    model = randomized(ResidualCNN())
    path = tmp_path / "model.onnx"
    export(model, path, dynamo)
    loaded = sp.load_model(path)
    x = torch.rand(2, 1, 8, 8)  # the batch the dynamo export fixed
    runtime = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (expected,) = runtime.run(None, {runtime.get_inputs()[0].name: x.numpy()})
    with torch.no_grad():
        np.testing.assert_allclose(loaded(x).numpy(), expected, atol=1e-5)
        np.testing.assert_allclose(loaded(x).numpy(), model(x).numpy(), atol=1e-5)
    snn = sp.convert(loaded, torch.rand(16, 1, 8, 8), "ecc")
    ev = sp.evaluate(snn, x, [256], ann=model, progress=False)
    assert ev.agreement[256] == 1.0


def test_smooth_activations_and_products_import_for_fs(tmp_path):
    model = GatedMLP(F.silu, torch.sigmoid, 0.5).eval()
    path = tmp_path / "gated.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.rand(2, 6),), str(path), dynamo=False, input_names=["x"])
    loaded = sp.load_model(path)
    x = torch.rand(5, 6)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), atol=1e-5, rtol=1e-5)
    assert isinstance(sp.convert(loaded, x, "fs", steps=16).coding, sp.TemporalCoding)
    # SiLU arrives as x * sigmoid(x): a product, computed on accumulated inputs by a rate code
    assert sp.convert(loaded, x, "rmp").coding.name == "rate"


def test_unsupported_ops_and_bad_files_are_named(tmp_path):
    from onnx import TensorProto, helper

    node = helper.make_node("Erf", ["x"], ["y"], name="weird")
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
    )
    path = tmp_path / "erf.onnx"
    onnx.save(helper.make_model(graph), str(path))
    with pytest.raises(
        sp.ConversionError,
        match=r"ONNX node 'weird' \(Erf\) has no spikeport equivalent; supported ONNX ops: .*Conv",
    ):
        sp.load_model(path)
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a model")
    with pytest.raises(sp.ConversionError, match="is not a readable ONNX model"):
        sp.load_model(broken)
