""".pt2 files from torch.export come back as ordinary modules that convert like any other model."""

import pytest
import torch
import torch.nn.functional as F
from torch import fx, nn

import spikeport as sp
from spikeport.frontends import load_exported, load_model
from tests.helpers import Residual, randomize_batchnorms

ALLOWED_MODULES = {
    nn.Conv1d,
    nn.Conv2d,
    nn.Linear,
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.ReLU,
    nn.AvgPool2d,
    nn.AdaptiveAvgPool2d,
}


def sequential_cnn() -> nn.Module:
    return randomize_batchnorms(
        nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1),
            nn.BatchNorm2d(4),
            nn.ReLU(),
            nn.AvgPool2d(2),
            nn.Conv2d(4, 6, 3),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(2),
            nn.Flatten(),
            nn.Dropout(),
            nn.Linear(24, 5),
        )
    )


class Conv1dNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv, self.fc = nn.Conv1d(2, 3, 3, stride=2), nn.Linear(3 * 4, 4)

    def forward(self, x):
        return self.fc(torch.flatten(F.relu(self.conv(x)), 1))


CASES = [
    (sequential_cnn, (1, 8, 8)),
    (lambda: randomize_batchnorms(Residual()), (1, 8, 8)),
    (lambda: Conv1dNet().eval(), (2, 9)),
]


@pytest.mark.parametrize(("factory", "shape"), CASES, ids=["sequential", "residual", "conv1d"])
@pytest.mark.parametrize("dynamic", [False, True], ids=["static-batch", "dynamic-batch"])
@pytest.mark.parametrize("decompose", [False, True], ids=["export-ir", "core-aten"])
def test_round_trip_through_a_pt2_file(tmp_path, factory, shape, dynamic, decompose):
    torch.manual_seed(0)
    model = factory()
    dynamic_shapes = ({0: torch.export.Dim("batch", min=1)},) if dynamic else None
    program = torch.export.export(model, (torch.rand(2, *shape),), dynamic_shapes=dynamic_shapes)
    if decompose:
        program = program.run_decompositions()
    path = tmp_path / "model.pt2"
    torch.export.save(program, path)
    rebuilt = load_model(path)
    x = torch.rand(5, *shape)  # another batch size than the export's
    assert torch.allclose(rebuilt(x), model(x), atol=1e-5)
    traced = fx.symbolic_trace(rebuilt)
    modules = dict(traced.named_modules())
    assert {type(modules[n.target]) for n in traced.graph.nodes if n.op == "call_module"} <= ALLOWED_MODULES
    snn = sp.convert(rebuilt, x, "max")
    assert len(snn.neurons()) >= 1


def test_unsupported_aten_op_is_named():
    model = nn.Sequential(nn.Linear(4, 4), nn.Sigmoid())
    program = torch.export.export(model, (torch.rand(2, 4),))
    with pytest.raises(
        sp.ConversionError, match=r"node 'sigmoid' \(aten.sigmoid.default\) has no spikeport equivalent"
    ):
        load_exported(program)


def test_not_a_pt2_file(tmp_path):
    bad = tmp_path / "bad.pt2"
    bad.write_bytes(b"definitely not a zip")
    with pytest.raises(sp.ConversionError, match="not a readable torch.export"):
        load_model(bad)
    with pytest.raises(sp.ConversionError, match="cannot load a model"):
        load_model(tmp_path / "model.onnx")
