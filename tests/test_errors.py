"""Bad input gets one clear line that names the problem, never a deep traceback or a wrong network."""

import pytest
import torch
from torch import nn

import spikeport as sp
from tests.helpers import Residual


class DividedBySignal(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        return self.fc(x) / torch.relu(x)


class DataDependent(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        if x.sum() > 0:
            return self.fc(x)
        return -self.fc(x)


class MaskedAttention(nn.Module):
    def __init__(self):
        super().__init__()
        self.q = nn.Linear(4, 4)
        self.register_buffer("mask", torch.ones(3, 3, dtype=torch.bool).tril())

    def forward(self, x):
        q = self.q(x)
        return torch.nn.functional.scaled_dot_product_attention(q, q, q, attn_mask=self.mask).flatten(1)


class FixedBatch(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(16, 2)

    def forward(self, x):
        return self.fc(x.reshape(8, 16))


class ConstantPad(nn.Module):
    """Padding with a non-zero constant: a current no neuron sends."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)

    def forward(self, x):
        return self.conv(torch.nn.functional.pad(torch.relu(x), (1, 1, 1, 1), value=0.5)).flatten(1)


def one_line(error: BaseException) -> str:
    message = str(error)
    assert "\n" not in message
    return message


@pytest.mark.parametrize(
    ("model", "x", "words"),
    [
        (MaskedAttention(), (8, 3, 4), ["node 'scaled_dot_product_attention'", "attention mask"]),
        (nn.Sequential(nn.Conv1d(1, 2, 3), nn.ReLU(), nn.LPPool1d(2, 2)), (8, 1, 9), ["LPPool1d module '2'"]),
        (
            nn.Sequential(nn.Conv1d(1, 2, 3), nn.ReLU(), nn.MaxPool1d(2, return_indices=True)),
            (8, 1, 9),
            ["MaxPool1d module '2'", "return_indices=True"],
        ),
        (DividedBySignal(), (8, 4), ["node 'truediv'", "divides by a signal"]),
        (ConstantPad(), (8, 1, 6, 6), ["value=0.5", "a non-zero constant does not"]),
    ],
)
def test_unsupported_ops_are_named(model, x, words):
    x = torch.rand(*x)
    with pytest.raises(sp.ConversionError) as info:
        sp.convert(model, x, "max")
    message = one_line(info.value)
    for word in words:
        assert word in message


def test_untraceable_model():
    with pytest.raises(sp.ConversionError, match="torch.fx cannot trace DataDependent"):
        sp.convert(DataDependent(), torch.rand(4, 4))


def test_fixed_batch_size_is_refused():
    with pytest.raises(sp.ConversionError, match="does not keep dim 0 as the batch"):
        sp.convert(FixedBatch(), torch.rand(8, 4, 4), "max")


def test_empty_calibration_data():
    with pytest.raises(sp.CalibrationError, match="empty"):
        sp.convert(Residual(), torch.rand(0, 1, 8, 8))


def test_nan_weights():
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))
    with torch.no_grad():
        model[2].weight[0, 0] = float("nan")
    with pytest.raises(sp.ConversionError, match=r"parameter '2.weight' contains NaN or inf"):
        sp.convert(model, torch.rand(8, 4))


def test_wrong_calibration_shape():
    with pytest.raises(sp.InputShapeError, match=r"fails on input of shape \[4, 3, 8, 8\]"):
        sp.convert(Residual(), torch.rand(4, 3, 8, 8))


def test_wrong_input_shape_at_simulation():
    snn = sp.convert(Residual(), torch.rand(4, 1, 8, 8), "max")
    with pytest.raises(sp.InputShapeError, match=r"expected input of shape \[B, 1, 8, 8\], got \[2, 8, 8\]"):
        snn(torch.rand(2, 8, 8), timesteps=4)


def test_unknown_method_and_option():
    with pytest.raises(
        ValueError, match="unknown method 'foo'; available: calibrated, ecc, fs, max, percentile, qcfs, rmp"
    ):
        sp.convert(Residual(), torch.rand(4, 1, 8, 8), "foo")
    with pytest.raises(ValueError, match="has no option"):
        sp.convert(Residual(), torch.rand(4, 1, 8, 8), "max", alpha=0.5)


def test_corrupt_and_foreign_saved_files(tmp_path):
    snn = sp.convert(Residual(), torch.rand(4, 1, 8, 8), "max")
    path = sp.save(snn, tmp_path / "net.spk")
    truncated = tmp_path / "truncated.spk"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(sp.SaveFormatError, match="corrupt or truncated"):
        sp.load(truncated)
    foreign = tmp_path / "weights.pt"
    torch.save({"weight": torch.zeros(2)}, foreign)
    with pytest.raises(sp.SaveFormatError, match="not a spikeport network file"):
        sp.load(foreign)
    with pytest.raises(sp.SaveFormatError, match="no such file"):
        sp.load(tmp_path / "missing.spk")
