"""Real exports: PyTorch models written with the idioms people use, exported by both torch ONNX exporters and
at old opsets, load and match onnxruntime (and the original) to 1e-5, and convert."""

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import spikeport as sp

onnxruntime = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")


class ViewFlatten(nn.Module):
    """The most common flatten: ``x.view(x.size(0), -1)``."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 4 * 4, 5)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv(x)), 2)
        return self.fc(x.view(x.size(0), -1))


class ReshapeMinusOne(nn.Module):
    """``reshape(-1, n)`` and a reshape to 3-d and back."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 4 * 4, 5)

    def forward(self, x):
        x = F.avg_pool2d(F.relu(self.conv(x)), 2)
        x = x.reshape(x.shape[0], 4, -1).reshape(-1, 64)
        return self.fc(x)


class ChannelShuffle(nn.Module):
    """ShuffleNet's unit: a grouped 1x1 conv, the channel shuffle (reshape, transpose, reshape), a depthwise conv."""

    def __init__(self, groups: int = 2):
        super().__init__()
        self.groups = groups
        self.stem = nn.Conv2d(1, 8, 3, padding=1)
        self.grouped = nn.Conv2d(8, 8, 1, groups=groups)
        self.depthwise = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.fc = nn.Linear(8, 5)

    def forward(self, x):
        x = F.relu(self.stem(x))
        x = F.relu(self.grouped(x))
        b, c, h, w = x.shape
        x = x.view(b, self.groups, c // self.groups, h, w).transpose(1, 2).contiguous().view(b, c, h, w)
        x = F.relu(self.depthwise(x)) + x
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class Branches(nn.Module):
    """Inception-style branches concatenated on channels, one of them a max-pool, then a channel split."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(1, 3, 1)
        self.b = nn.Conv2d(1, 3, 3, padding=1)
        self.fc = nn.Linear(4 * 8 * 8, 5)

    def forward(self, x):
        x = torch.cat([F.relu(self.a(x)), F.relu(self.b(x)), F.max_pool2d(x, 3, 1, 1)], dim=1)
        left, right = torch.split(x, [3, 4], dim=1)
        x = right + left[:, :1]  # a slice of channels, broadcast
        return self.fc(torch.flatten(x, 1))


class BorderPadding(nn.Module):
    """Padding by copies of the border: a reflection pad, a conv padded by reflection, a replicate F.pad."""

    def __init__(self):
        super().__init__()
        self.pad = nn.ReflectionPad2d(1)
        self.conv1 = nn.Conv2d(1, 4, 3)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1, padding_mode="reflect")
        self.conv3 = nn.Conv2d(4, 4, 3)
        self.fc = nn.Linear(4 * 8 * 8, 5)

    def forward(self, x):
        x = F.relu(self.conv1(self.pad(x)))
        x = F.relu(self.conv2(x))
        x = F.relu(self.conv3(F.pad(x, (1, 1, 1, 1), mode="replicate")))
        return self.fc(torch.flatten(x, 1))


IDIOMS = [ViewFlatten, ReshapeMinusOne, ChannelShuffle, Branches, BorderPadding]


def export(model: nn.Module, path, exporter: str) -> None:
    x = torch.rand(2, 1, 8, 8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if exporter == "dynamo":
            torch.onnx.export(model, (x,), str(path), dynamo=True, verbose=False)
        else:  # the TorchScript exporter at an old opset (attribute forms) or its default one
            opset = 9 if exporter == "torchscript-opset9" else None
            torch.onnx.export(
                model,
                (x,),
                str(path),
                dynamo=False,
                opset_version=opset,
                dynamic_axes={"x": {0: "batch"}},
                input_names=["x"],
            )


def runtime_output(path, x: torch.Tensor) -> np.ndarray:
    runtime = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return runtime.run(None, {runtime.get_inputs()[0].name: x.numpy()})[0]


@pytest.mark.parametrize("exporter", ["torchscript", "torchscript-opset9", "dynamo"])
@pytest.mark.parametrize("idiom", IDIOMS, ids=lambda cls: cls.__name__)
def test_idioms_load_from_onnx_and_match_onnxruntime(tmp_path, idiom, exporter):
    torch.manual_seed(0)
    model = idiom().eval()
    path = tmp_path / "model.onnx"
    export(model, path, exporter)
    loaded = sp.load_model(path)
    x = torch.rand(2, 1, 8, 8)
    with torch.no_grad():
        np.testing.assert_allclose(loaded(x).numpy(), runtime_output(path, x), atol=1e-5)
        np.testing.assert_allclose(loaded(x).numpy(), model(x).numpy(), atol=1e-5)
        # any batch, also where the file fixed one
        np.testing.assert_allclose(
            loaded(x.repeat(3, 1, 1, 1)).numpy(), model(x).repeat(3, 1).numpy(), atol=1e-5
        )


@pytest.mark.parametrize("idiom", IDIOMS, ids=lambda cls: cls.__name__)
def test_idioms_convert_from_onnx_and_from_pytorch(tmp_path, idiom):
    torch.manual_seed(0)
    model = idiom().eval()
    path = tmp_path / "model.onnx"
    export(model, path, "torchscript")
    calibration = torch.rand(32, 1, 8, 8)
    x = torch.rand(4, 1, 8, 8)
    for source in (sp.load_model(path), model):
        snn = sp.convert(source, calibration, progress=False)
        ev = sp.evaluate(snn, x, [64], ann=model, progress=False)
        assert ev.agreement[64] >= 0.75


def _graph_file(tmp_path, nodes, initializers, opset: int, shape=(1, 2, 4, 4), out_rank=2):
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [f"d{i}" for i in range(out_rank)])],
        initializer=initializers,
    )
    path = tmp_path / "graph.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)]), str(path))
    return path


def test_sum_lrn_and_a_fixed_batch_of_one_from_an_old_opset(tmp_path):
    """What Caffe-converted zoo files hold: Sum for residual additions, LRN, a batch fixed at 1, opset 8."""
    from onnx import helper, numpy_helper

    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.normal(size=(2, 2, 3, 3)).astype(np.float32), "w")
    fc = numpy_helper.from_array(rng.normal(size=(32, 3)).astype(np.float32), "fc")
    shape = numpy_helper.from_array(np.array([1, -1], dtype=np.int64), "flat")
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("Sum", ["r", "x", "r"], ["s"]),
        helper.make_node("LRN", ["s"], ["n"], size=3, alpha=1e-3, beta=0.75, bias=2.0),
        helper.make_node("Reshape", ["n", "flat"], ["f"]),
        helper.make_node("MatMul", ["f", "fc"], ["y"]),
    ]
    path = _graph_file(tmp_path, nodes, [weight, fc, shape], opset=8)
    loaded = sp.load_model(path)
    x = torch.rand(1, 2, 4, 4)
    with torch.no_grad():
        np.testing.assert_allclose(loaded(x).numpy(), runtime_output(path, x), atol=1e-5, rtol=1e-5)
    assert any(isinstance(m, nn.LocalResponseNorm) for m in loaded.modules())


def test_ops_that_would_mix_samples_are_refused_by_name(tmp_path):
    from onnx import helper, numpy_helper

    shape = numpy_helper.from_array(np.array([-1, 16], dtype=np.int64), "s")
    path = _graph_file(tmp_path, [helper.make_node("Reshape", ["x", "s"], ["y"], name="mix")], [shape], 13)
    with pytest.raises(sp.ConversionError, match=r"'mix' \(Reshape\).*mixing the batch axis"):
        sp.load_model(path)
    split = helper.make_node("Split", ["x"], ["y", "z"], name="halves", axis=0)
    with pytest.raises(sp.ConversionError, match=r"'halves' \(Split\).*acts on the batch axis"):
        sp.load_model(_graph_file(tmp_path, [split], [], 13, out_rank=4, shape=(2, 2, 4, 4)))
    clip = helper.make_node("Clip", ["x"], ["y"], name="tanh-like", min=-1.0, max=1.0)
    with pytest.raises(sp.ConversionError, match=r"'tanh-like' \(Clip\).*\[-1.0, 1.0\] does not convert"):
        sp.load_model(_graph_file(tmp_path, [clip], [], 9, out_rank=4))
    dims = _graph_file(
        tmp_path, [helper.make_node("Relu", ["x"], ["y"])], [], 13, shape=("n", 2, "h", 4), out_rank=4
    )
    with pytest.raises(sp.ConversionError, match=r"shape \[\?, 2, \?, 4\]: every size but the batch's"):
        sp.load_model(dims)


# torch.export (.pt2): the same idioms, static and dynamic batch, default and core-aten IR; a ViT; the classics.
pytestmark_pt2 = pytest.mark.filterwarnings("ignore:.*LeafSpec.*:FutureWarning")


def _saved_program(model: nn.Module, x: torch.Tensor, path, dynamic: bool, core_aten: bool):
    shapes = ({0: torch.export.Dim("batch", min=2)},) if dynamic else None
    program = torch.export.export(model, (x,), dynamic_shapes=shapes)
    if core_aten:
        program = program.run_decompositions()
    torch.export.save(program, str(path))
    return sp.load_model(path)


@pytestmark_pt2
@pytest.mark.parametrize("core_aten", [False, True], ids=["default-ir", "core-aten"])
@pytest.mark.parametrize("dynamic", [False, True], ids=["static", "dynamic"])
@pytest.mark.parametrize("idiom", IDIOMS, ids=lambda cls: cls.__name__)
def test_idioms_load_from_pt2_and_match_the_original(tmp_path, idiom, dynamic, core_aten):
    torch.manual_seed(0)
    model = idiom().eval()
    x = torch.rand(2, 1, 8, 8)
    if idiom is BorderPadding and core_aten:  # core ATen writes border copies as index arithmetic
        with pytest.raises(sp.ConversionError, match="computes indices.*before run_decompositions"):
            _saved_program(model, x, tmp_path / "model.pt2", dynamic, core_aten)
        return
    loaded = _saved_program(model, x, tmp_path / "model.pt2", dynamic, core_aten)
    with torch.no_grad():
        for batch in (x, x.repeat(3, 1, 1, 1)):
            torch.testing.assert_close(loaded(batch), model(batch), atol=1e-5, rtol=1e-5)


@pytestmark_pt2
@pytest.mark.parametrize("core_aten", [False, True], ids=["default-ir", "core-aten"])
def test_a_vit_from_pt2_matches_and_converts(tmp_path, core_aten):
    torch.manual_seed(0)
    model = sp.models.vit(num_classes=4, image_size=8, patch_size=4, width=16, depth=1, heads=2).eval()
    x = torch.rand(2, 1, 8, 8)
    loaded = _saved_program(model, x, tmp_path / "vit.pt2", dynamic=False, core_aten=core_aten)
    with torch.no_grad():
        torch.testing.assert_close(
            loaded(x.repeat(2, 1, 1, 1)), model(x.repeat(2, 1, 1, 1)), atol=1e-5, rtol=1e-5
        )
    snn = sp.convert(loaded, torch.rand(16, 1, 8, 8), "fs", progress=False)
    assert snn.analog_layers()  # LayerNorm, softmax and the attention products stay analog ops


@pytestmark_pt2
def test_lrn_from_pt2_is_named_with_the_way_out(tmp_path):
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.LocalResponseNorm(3), nn.Flatten()).eval()
    x = torch.rand(2, 1, 6, 6)
    with pytest.raises(sp.ConversionError, match="part of a LocalResponseNorm.*ONNX export"):
        _saved_program(model, x, tmp_path / "lrn.pt2", dynamic=False, core_aten=False)


def test_a_network_that_flattens_with_x_size_0_exports_to_nir():
    pytest.importorskip("nir")

    class SizeFlatten(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.fc = nn.Conv2d(1, 4, 3, padding=1), nn.Linear(64, 5)

        def forward(self, x):
            x = F.avg_pool2d(F.relu(self.conv(x)), 2)
            return self.fc(x.view(x.size(0), -1))

    torch.manual_seed(0)
    x = torch.rand(16, 1, 8, 8)
    snn = sp.convert(SizeFlatten().eval(), x, "rmp", progress=False)
    back = sp.import_nir(sp.export_nir(snn))
    torch.testing.assert_close(back(x, 32), snn(x, 32))


class ReLU6Net(nn.Module):
    """MobileNet's activation: ReLU6 as a module and as F.relu6, and a Hardtanh from 0."""

    def __init__(self):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(1, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1, groups=4)
        self.act = nn.ReLU6()
        self.fc = nn.Linear(4 * 8 * 8, 5)

    def forward(self, x):
        x = self.act(self.conv1(x) * 8)  # scaled so that the ceiling is reached
        x = F.hardtanh(F.relu6(self.conv2(x)), 0.0, 3.0)
        return self.fc(x.flatten(1))


@pytestmark_pt2
@pytest.mark.parametrize("source", ["pytorch", "onnx", "pt2", "pt2-core-aten"])
def test_relu6_converts_with_thresholds_capped_at_its_ceiling(tmp_path, source):
    torch.manual_seed(0)
    model = ReLU6Net().eval()
    x = torch.rand(2, 1, 8, 8)
    if source == "onnx":
        export(model, tmp_path / "relu6.onnx", "torchscript")
        loaded = sp.load_model(tmp_path / "relu6.onnx")
    elif source.startswith("pt2"):
        loaded = _saved_program(model, x, tmp_path / "relu6.pt2", False, source == "pt2-core-aten")
    else:
        loaded = model
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), atol=1e-5, rtol=1e-5)
    calibration = torch.rand(32, 1, 8, 8)
    for method in ("rmp", "ecc"):  # rmp's thresholds come from currents: above 6 unless capped
        snn = sp.convert(loaded, calibration, method, progress=False)
        thresholds = [float(n.threshold.max()) for n in snn.neurons().values()]
        assert thresholds[0] <= 6.0 and thresholds[1] <= 6.0 and thresholds[2] <= 3.0
        assert sp.evaluate(snn, calibration, [256], ann=model, progress=False).agreement[256] >= 0.9
    with pytest.raises(sp.ConversionError, match=r"Hardtanh\(min_val=-1.0, max_val=1.0\) does not convert"):
        sp.convert(nn.Sequential(nn.Linear(4, 4), nn.Hardtanh(), nn.Linear(4, 2)), torch.rand(8, 4))
