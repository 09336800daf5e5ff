"""torch.export programs (.pt2) come back as fx-traceable models made of standard modules."""

import operator
import zipfile

import pytest
import torch
import torch.nn.functional as F
from torch import fx, nn

import spikeport as sp
from spikeport.errors import ConversionError
from spikeport.frontends import load_exported
from spikeport.frontends.keras_layers import KERAS_LAYERS
from spikeport.frontends.onnx import ONNX_OPS
from spikeport.frontends.registry import module_name
from spikeport.frontends.torch_export import ATEN_OPS

# torch's own run_decompositions/export.load still use a pytree API that torch deprecated.
pytestmark = pytest.mark.filterwarnings("ignore:.*LeafSpec.*:FutureWarning")

ALLOWED_MODULES = {
    nn.Conv1d,
    nn.Conv2d,
    nn.Linear,
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.ReLU,
    nn.AvgPool2d,
    nn.AdaptiveAvgPool2d,
    nn.MaxPool2d,
}
ALLOWED_FUNCTIONS = {torch.reshape, torch.flatten, operator.add, torch.cat}


def with_running_stats(model: nn.Module) -> nn.Module:
    """Non-trivial batch-norm statistics, so a dropped or misread batch norm shows in the outputs."""
    generator = torch.Generator().manual_seed(1)
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.running_mean.copy_(torch.randn(module.num_features, generator=generator) * 0.2)
            module.running_var.copy_(torch.rand(module.num_features, generator=generator) + 0.5)
            module.weight.data.uniform_(0.5, 1.5, generator=generator)
            module.bias.data.uniform_(-0.2, 0.2, generator=generator)
    return model.eval()


def sequential_cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.AvgPool2d(2),
        nn.Conv2d(4, 6, 3),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(2),
        nn.Flatten(),
        nn.Linear(24, 5),
        nn.Dropout(0.5),
    )


class Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(4)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1, bias=False)
        self.conv3 = nn.Conv2d(4, 4, 1)
        self.fc = nn.Linear(8 * 4 * 4, 5)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        y = self.conv3(F.relu(self.conv2(x)))
        x = F.avg_pool2d(F.relu(x + y), 2)
        x = torch.cat([x, F.relu(x)], dim=1)
        return self.fc(x.view(x.size(0), -1))


class Conv1dNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(2, 3, 3, stride=2)
        self.bn = nn.BatchNorm1d(3)
        self.fc = nn.Linear(3 * 4, 4)

    def forward(self, x):
        return self.fc(torch.flatten(F.relu(self.bn(self.conv(x))), 1))


# factory, input shape without the batch, modules the rebuilt model gains for functional calls
MODELS = {
    "sequential": (sequential_cnn, (1, 8, 8), set()),
    "residual": (Residual, (1, 8, 8), {nn.ReLU, nn.AvgPool2d}),
    "conv1d": (Conv1dNet, (2, 9), {nn.ReLU}),
}


def export(model: nn.Module, shape: tuple, dynamic: bool = False, decompose: bool = False, batch: int = 2):
    dynamic_shapes = ({0: torch.export.Dim("batch")},) if dynamic else None
    program = torch.export.export(model, (torch.rand(batch, *shape),), dynamic_shapes=dynamic_shapes)
    return program.run_decompositions() if decompose else program


def traced_ops(module: nn.Module) -> tuple[set, set, set]:
    """Module types, function targets and other node kinds that torch.fx.symbolic_trace sees."""
    traced = fx.symbolic_trace(module)
    modules = dict(traced.named_modules())
    nodes = list(traced.graph.nodes)
    return (
        {type(modules[n.target]) for n in nodes if n.op == "call_module"},
        {n.target for n in nodes if n.op == "call_function"},
        {n.op for n in nodes} - {"placeholder", "output", "call_module", "call_function"},
    )


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("dynamic", [False, True], ids=["static-batch", "dynamic-batch"])
@pytest.mark.parametrize("decompose", [False, True], ids=["export-ir", "core-aten"])
def test_round_trip_through_a_pt2_file(tmp_path, name, dynamic, decompose):
    factory, shape, functional = MODELS[name]
    model = with_running_stats(factory())
    program = export(model, shape, dynamic, decompose)
    path = tmp_path / "model.pt2"
    torch.export.save(program, path)

    rebuilt = load_exported(path)

    example = torch.rand(2, *shape)
    torch.testing.assert_close(rebuilt(example), program.module()(example), atol=1e-5, rtol=0)
    other_batch = torch.rand(5, *shape)
    torch.testing.assert_close(rebuilt(other_batch), model(other_batch), atol=1e-5, rtol=0)
    modules, functions, others = traced_ops(rebuilt)
    assert modules == {type(m) for m in model.modules() if type(m) in ALLOWED_MODULES} | functional
    assert functions <= ALLOWED_FUNCTIONS
    assert not others
    # Weights keep the original names; batch norms carry their statistics and run in eval mode.
    assert rebuilt.state_dict().keys() == model.state_dict().keys()
    for key, value in model.state_dict().items():
        torch.testing.assert_close(rebuilt.state_dict()[key], value, atol=0, rtol=0)
    assert not any(m.training for m in rebuilt.modules())


def test_static_reshapes_drop_the_example_batch_size():
    model = with_running_stats(Residual())
    rebuilt = load_exported(export(model, (1, 8, 8), batch=1))
    reshapes = [n for n in rebuilt.graph.nodes if n.target is torch.reshape]
    assert [n.args[1] for n in reshapes] == [(-1, 128)]
    x = torch.rand(3, 1, 8, 8)
    torch.testing.assert_close(rebuilt(x), model(x), atol=1e-5, rtol=0)


def test_linear_on_3d_input_in_core_aten_form():
    """Decomposed nn.Linear on (batch, seq, features) reshapes to (batch * seq, features) and back: the rebuilt
    linear reads the 3-d value, so the batch stays at dim 0 (as conversion needs), and the way back is a no-op."""
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU()).eval()
    rebuilt = load_exported(export(model, (7, 4), decompose=True))
    x = torch.rand(5, 7, 4)
    torch.testing.assert_close(rebuilt(x), model(x), atol=1e-5, rtol=0)
    assert [n.args[1] for n in rebuilt.graph.nodes if n.target is torch.reshape] == [(-1, 7, 3)]
    linear = next(n for n in rebuilt.graph.nodes if n.op == "call_module")
    assert linear.args[0].op == "placeholder"


@pytest.mark.parametrize("decompose", [False, True], ids=["export-ir", "core-aten"])
def test_max_pool_and_spatial_mean(decompose):
    class Pools(nn.Module):
        def __init__(self):
            super().__init__()
            self.pool = nn.MaxPool2d(3, 2, padding=1, ceil_mode=True)

        def forward(self, x):
            x = self.pool(x)
            return x.mean((2, 3), keepdim=True).flatten(1) + x.mean((-1, -2))

    model = Pools().eval()
    rebuilt = load_exported(export(model, (3, 9, 9), decompose=decompose))
    x = torch.rand(4, 3, 9, 9)
    torch.testing.assert_close(rebuilt(x), model(x), atol=1e-5, rtol=0)
    modules, functions, _ = traced_ops(rebuilt)
    assert modules == {nn.MaxPool2d, nn.AdaptiveAvgPool2d}
    assert functions <= ALLOWED_FUNCTIONS
    assert rebuilt.pool.ceil_mode and rebuilt.pool.padding == (1, 1)


def test_nested_and_shared_modules_keep_their_names():
    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.act = nn.Conv2d(2, 2, 3, padding=1), nn.ReLU()

        def forward(self, x):
            return self.act(self.conv(x))

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.blocks = nn.Sequential(Block(), Block())
            self.shared = nn.Conv2d(2, 2, 1)

        def forward(self, x):
            return self.shared(self.shared(self.blocks(x)))

    model = Net().eval()
    rebuilt = load_exported(export(model, (2, 5, 5), dynamic=True))
    assert rebuilt.state_dict().keys() == model.state_dict().keys()
    called = [n.target for n in rebuilt.graph.nodes if n.op == "call_module"]
    assert called == ["blocks.0.conv", "blocks.0.act", "blocks.1.conv", "blocks.1.act", "shared", "shared"]


@pytest.mark.parametrize("decompose", [False, True], ids=["export-ir", "core-aten"])
@pytest.mark.parametrize(
    ("forward", "node", "op"),
    [
        (torch.exp, "exp", "aten.exp.default"),
        (torch.log, "log", "aten.log.default"),
    ],
    ids=["exp", "log"],
)
def test_unsupported_op_is_named(decompose, forward, node, op):
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x):
            return forward(self.fc(x))

    program = export(Net().eval(), (4,), decompose=decompose)
    with pytest.raises(ConversionError) as raised:
        load_exported(program)
    message = str(raised.value)
    assert message.startswith(f"node '{node}' ({op}) has no spikeport equivalent; supported aten ops: ")
    assert "\n" not in message


@pytest.mark.parametrize(
    ("registry", "known", "kind"),
    [
        (ATEN_OPS, "conv2d", "aten ops"),
        (ONNX_OPS, "Conv", "ONNX ops"),
        (KERAS_LAYERS, "Conv2D", "Keras layers"),
    ],
    ids=["torch.export", "onnx", "keras"],
)
def test_every_frontend_lists_what_it_converts(registry, known, kind):
    supported = registry.supported()
    assert known in supported and list(supported) == sorted(supported)
    with pytest.raises(ConversionError) as raised:
        registry.lookup("Erf", "node 'weird' (Erf)")
    listing = ", ".join(supported)
    assert str(raised.value) == f"node 'weird' (Erf) has no spikeport equivalent; supported {kind}: {listing}"


def test_one_naming_rule_for_rebuilt_modules():
    taken = {"conv1_Conv", "fc"}.__contains__
    assert module_name("/conv1/Conv", taken) == "conv1_Conv_1"
    assert [module_name(text) for text in ("forward", "class", "0a", "", "a.b")] == [
        "forward_",
        "class_",
        "_0a",
        "layer",
        "a_b",
    ]
    assert module_name("blocks.0.graph", path=True) == "blocks.0.graph_"
    assert module_name("fc", taken, path=True) == "fc_1"


class Lambda(nn.Module):
    def __init__(self, function):
        super().__init__()
        self.function = function

    def forward(self, *inputs):
        return self.function(*inputs)


@pytest.mark.parametrize(
    ("model", "inputs", "match"),
    [
        (
            Lambda(lambda x: torch.add(x, x, alpha=2)),
            1,
            r"node 'add' \(aten\.add\.Tensor\) adds with alpha=2",
        ),
        (Lambda(lambda x, y: x + y), 2, "must take exactly one input tensor, it takes 2"),
        (Lambda(lambda x: (x.relu(), x)), 1, "returns a tuple of 2 output"),
        (Lambda(lambda x: (x.relu(),)), 1, "returns a tuple of 1 output"),
        (nn.BatchNorm1d(4).train(), 1, "training mode"),
    ],
    ids=["alpha", "two-inputs", "two-outputs", "tuple-output", "training-batch-norm"],
)
@pytest.mark.parametrize("decompose", [False, True], ids=["export-ir", "core-aten"])
def test_programs_spikeport_cannot_take(model, inputs, match, decompose):
    program = torch.export.export(model, tuple(torch.rand(2, 4) for _ in range(inputs)))
    if decompose:
        program = program.run_decompositions()
    with pytest.raises(ConversionError, match=match):
        load_exported(program)


def test_unreadable_files_give_one_line(tmp_path, capfd):
    junk = tmp_path / "junk.pt2"
    junk.write_bytes(b"definitely not a zip archive")
    state_dict = tmp_path / "weights.pt2"
    torch.save(nn.Linear(2, 2).state_dict(), state_dict)
    good = tmp_path / "good.pt2"
    torch.export.save(export(nn.Linear(4, 2), (4,)), good)
    truncated = tmp_path / "truncated.pt2"
    truncated.write_bytes(good.read_bytes()[:200])
    corrupt = tmp_path / "corrupt.pt2"
    with zipfile.ZipFile(good) as source, zipfile.ZipFile(corrupt, "w") as target:
        for item in source.infolist():
            data = source.read(item)
            target.writestr(item, b"{not json" if item.filename.endswith("model.json") else data)

    cases = {
        junk: "not a torch.export archive",
        state_dict: "not a torch.export archive",
        truncated: "not a torch.export archive",
        corrupt: "cannot read .* as a torch.export program",
        tmp_path / "missing.pt2": "no such file",
    }
    for path, match in cases.items():
        with pytest.raises(ConversionError, match=match) as raised:
            load_exported(path)
        assert "\n" not in str(raised.value)
    assert "Traceback" not in capfd.readouterr().err
    with pytest.raises(ConversionError, match="expected a .pt2 path"):
        load_exported(42)


class GatedSiLU(nn.Module):
    """SiLU features times a sigmoid gate (squeeze-and-excitation shape): FS material."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.fc = nn.Linear(4, 4)
        self.out = nn.Linear(4 * 6 * 6, 3)

    def forward(self, x):
        h = F.silu(self.conv(x))
        gate = torch.sigmoid(self.fc(h.mean((2, 3)))).view(-1, 4, 1, 1)
        return self.out((h * gate * 0.5).flatten(1))


def test_smooth_activations_and_gates_from_a_pt2_file_convert_with_fs(tmp_path):
    torch.manual_seed(0)
    model = GatedSiLU().eval()
    x = torch.rand(4, 1, 8, 8)
    torch.export.save(torch.export.export(model, (x,)), tmp_path / "gated.pt2")
    loaded = sp.load_model(tmp_path / "gated.pt2")
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    snn = sp.convert(loaded, x, "fs", steps=16)
    assert isinstance(snn.coding, sp.TemporalCoding)
    assert sp.convert(loaded, x, "ecc").coding.name == "rate"  # gates and SiLU on accumulated inputs
