"""The ONNX model zoo's classic CNNs, as small random-weight versions with the same ops and idioms: AlexNet and
ZFNet (LRN), VGG-19, SqueezeNet (fire modules, ceil-mode pools), ResNet-50 (bottlenecks), DenseNet-121 (dense
concatenation), Inception v1 (LRN, four-branch modules) and v2 (BN), ShuffleNet (grouped convs, channel shuffle).
Exported as the zoo's files were (the TorchScript exporter, old and new opsets), each loads, matches onnxruntime
to 1e-4 and converts; saved with torch.export, each without LRN loads and matches the original to 1e-5."""

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import spikeport as sp

onnxruntime = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

SIZE = 32


class _LRNFunction(torch.autograd.Function):
    """Local response normalisation written to ONNX as the LRN op (as Caffe-converted zoo files have it)."""

    @staticmethod
    def forward(ctx, x, size, alpha, beta, k):
        return F.local_response_norm(x, size, alpha, beta, k)

    @staticmethod
    def symbolic(g, x, size, alpha, beta, k):
        return g.op("LRN", x, size_i=size, alpha_f=alpha, beta_f=beta, bias_f=k)


class LRN(nn.LocalResponseNorm):
    def forward(self, x):
        if torch.onnx.is_in_onnx_export():
            return _LRNFunction.apply(x, self.size, self.alpha, self.beta, self.k)
        return super().forward(x)


def alexnet(first_kernel: int = 11, first_stride: int = 4) -> nn.Module:
    """AlexNet (11x11 / 4) or ZFNet (7x7 / 2): conv-ReLU-LRN-max-pool twice, three convs, a dropout MLP head."""
    return nn.Sequential(
        nn.Conv2d(3, 8, first_kernel, first_stride, padding=2),
        nn.ReLU(),
        LRN(5, 1e-4, 0.75, 2.0),
        nn.MaxPool2d(3, 2),
        nn.Conv2d(8, 12, 5, padding=2),
        nn.ReLU(),
        LRN(5, 1e-4, 0.75, 2.0),
        nn.MaxPool2d(3, 2, ceil_mode=True),
        nn.Conv2d(12, 16, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 16, 3, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Dropout(),
        nn.LazyLinear(24),
        nn.ReLU(),
        nn.Linear(24, 10),
    )


def vgg19() -> nn.Module:
    layers, channels = [], 3
    for width, count in [(8, 2), (12, 2), (16, 4), (16, 4)]:
        for _ in range(count):
            layers += [nn.Conv2d(channels, width, 3, padding=1), nn.ReLU()]
            channels = width
        layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(16 * 2 * 2, 24), nn.ReLU(), nn.Linear(24, 10))


class Fire(nn.Module):
    def __init__(self, channels: int, squeeze: int, expand: int):
        super().__init__()
        self.squeeze = nn.Conv2d(channels, squeeze, 1)
        self.expand1, self.expand3 = nn.Conv2d(squeeze, expand, 1), nn.Conv2d(squeeze, expand, 3, padding=1)

    def forward(self, x):
        x = F.relu(self.squeeze(x))
        return torch.cat([F.relu(self.expand1(x)), F.relu(self.expand3(x))], 1)


def squeezenet() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, 2),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(3, 2, ceil_mode=True),
        Fire(8, 4, 8),
        Fire(16, 4, 8),
        nn.MaxPool2d(3, 2, ceil_mode=True),
        Fire(16, 6, 12),
        nn.Dropout(0.5),
        nn.Conv2d(24, 10, 1),
        nn.ReLU(inplace=True),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
    )


class Bottleneck(nn.Module):
    def __init__(self, channels: int, width: int, out: int, stride: int):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(channels, width, 1, bias=False), nn.BatchNorm2d(width)
        self.conv2, self.bn2 = nn.Conv2d(width, width, 3, stride, 1, bias=False), nn.BatchNorm2d(width)
        self.conv3, self.bn3 = nn.Conv2d(width, out, 1, bias=False), nn.BatchNorm2d(out)
        self.downsample = nn.Sequential(nn.Conv2d(channels, out, 1, stride, bias=False), nn.BatchNorm2d(out))

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = F.relu(self.bn2(self.conv2(y)))
        return F.relu(self.bn3(self.conv3(y)) + self.downsample(x))


class ResNet50(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 7, 2, 3, bias=False), nn.BatchNorm2d(8), nn.ReLU())
        self.pool = nn.MaxPool2d(3, 2, 1)
        self.layers = nn.Sequential(Bottleneck(8, 4, 16, 1), Bottleneck(16, 8, 24, 2))
        self.fc = nn.Linear(24, 10)

    def forward(self, x):
        x = self.layers(self.pool(self.stem(x)))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class DenseLayer(nn.Module):
    def __init__(self, channels: int, growth: int):
        super().__init__()
        self.norm1, self.conv1 = nn.BatchNorm2d(channels), nn.Conv2d(channels, 2 * growth, 1, bias=False)
        self.norm2, self.conv2 = (
            nn.BatchNorm2d(2 * growth),
            nn.Conv2d(2 * growth, growth, 3, padding=1, bias=False),
        )

    def forward(self, x):
        y = self.conv1(F.relu(self.norm1(x)))
        return torch.cat([x, self.conv2(F.relu(self.norm2(y)))], 1)


def densenet121() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, bias=False),
        DenseLayer(8, 4),
        DenseLayer(12, 4),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.Conv2d(16, 8, 1, bias=False),
        nn.AvgPool2d(2),
        DenseLayer(8, 4),
        nn.BatchNorm2d(12),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(12, 10),
    )


class Inception(nn.Module):
    """v1: 1x1, 1x1-3x3, 1x1-5x5 and max-pool-1x1 branches; v2: BN everywhere, 5x5 as two 3x3, an average pool."""

    def __init__(self, channels: int, width: int, batch_norm: bool):
        super().__init__()

        def conv(inputs, kernel):
            layers = [nn.Conv2d(inputs, width, kernel, padding=kernel // 2, bias=not batch_norm)]
            return layers + [nn.BatchNorm2d(width), nn.ReLU()] if batch_norm else layers + [nn.ReLU()]

        wide = [*conv(width, 3), *conv(width, 3)] if batch_norm else conv(width, 5)
        pool = nn.AvgPool2d(3, 1, 1) if batch_norm else nn.MaxPool2d(3, 1, 1)
        self.branches = nn.ModuleList(
            [
                nn.Sequential(*conv(channels, 1)),
                nn.Sequential(*conv(channels, 1), *conv(width, 3)),
                nn.Sequential(*conv(channels, 1), *wide),
                nn.Sequential(pool, *conv(channels, 1)),
            ]
        )

    def forward(self, x):
        return torch.cat([branch(x) for branch in self.branches], 1)


def inception(version: int) -> nn.Module:
    v2 = version == 2
    stem = [nn.Conv2d(3, 8, 7, 2, 3), nn.ReLU(), nn.MaxPool2d(3, 2, ceil_mode=True)]
    stem += [nn.BatchNorm2d(8)] if v2 else [LRN(5, 1e-4, 0.75, 1.0)]
    return nn.Sequential(
        *stem,
        Inception(8, 4, v2),
        Inception(16, 6, v2),
        nn.MaxPool2d(3, 2, ceil_mode=True),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Dropout(0.4),
        nn.Linear(24, 10),
    )


class ShuffleUnit(nn.Module):
    """ShuffleNet v1's unit: grouped 1x1, channel shuffle, depthwise 3x3, grouped 1x1; stride 2 concatenates
    an average-pooled shortcut, stride 1 adds it."""

    def __init__(self, channels: int, out: int, groups: int, stride: int):
        super().__init__()
        self.groups, self.stride = groups, stride
        branch = out - channels if stride == 2 else out
        self.reduce = nn.Sequential(nn.Conv2d(channels, 8, 1, groups=groups, bias=False), nn.BatchNorm2d(8))
        self.depthwise = nn.Sequential(nn.Conv2d(8, 8, 3, stride, 1, groups=8, bias=False), nn.BatchNorm2d(8))
        self.expand = nn.Sequential(
            nn.Conv2d(8, branch, 1, groups=groups, bias=False), nn.BatchNorm2d(branch)
        )

    def forward(self, x):
        y = F.relu(self.reduce(x))
        b, c, h, w = y.shape
        y = y.view(b, self.groups, c // self.groups, h, w).transpose(1, 2).reshape(b, c, h, w)
        y = self.expand(self.depthwise(y))
        if self.stride == 2:
            return F.relu(torch.cat([F.avg_pool2d(x, 3, 2, 1), y], 1))
        return F.relu(x + y)


def shufflenet() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, 2, 1),
        nn.ReLU(),
        nn.MaxPool2d(3, 2, 1),
        ShuffleUnit(8, 16, 2, 2),
        ShuffleUnit(16, 16, 2, 1),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, 10),
    )


CLASSICS = {
    "alexnet": alexnet,
    "zfnet": lambda: alexnet(7, 2),
    "vgg19": vgg19,
    "squeezenet": squeezenet,
    "resnet50": ResNet50,
    "densenet121": densenet121,
    "inception_v1": lambda: inception(1),
    "inception_v2": lambda: inception(2),
    "shufflenet": shufflenet,
}


def built(name: str) -> nn.Module:
    torch.manual_seed(0)
    model = CLASSICS[name]()
    model(torch.rand(1, 3, SIZE, SIZE))  # sizes the lazy layers
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 1.5)
    return model.eval()


@pytest.mark.parametrize("opset", [9, 17])
@pytest.mark.parametrize("name", CLASSICS)
def test_classic_cnns_load_match_onnxruntime_and_convert(tmp_path, name, opset):
    model = built(name)
    path = tmp_path / f"{name}.onnx"
    x = torch.rand(2, 3, SIZE, SIZE)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (x[:1],),  # the zoo's files fix a batch of one
            str(path),
            dynamo=False,
            opset_version=opset,
            input_names=["data"],
            dynamic_axes=None if opset == 9 else {"data": {0: "batch"}},
        )
    loaded = sp.load_model(path)
    runtime = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        for sample in x.split(1):
            expected = runtime.run(None, {"data": sample.numpy()})[0]
            np.testing.assert_allclose(loaded(sample).numpy(), expected, atol=1e-4, rtol=1e-4)
        np.testing.assert_allclose(loaded(x).numpy(), model(x).numpy(), atol=1e-4, rtol=1e-4)
    if opset == 17:  # converting once per architecture is enough
        snn = sp.convert(loaded, torch.rand(8, 3, SIZE, SIZE), progress=False)
        readout = snn(x, timesteps=4)
        assert readout.shape == (4, 2, 10) and torch.isfinite(readout).all()


@pytest.mark.filterwarnings("ignore:.*LeafSpec.*:FutureWarning")
@pytest.mark.parametrize("name", [n for n in CLASSICS if n not in ("alexnet", "zfnet", "inception_v1")])
def test_classic_cnns_load_from_pt2_and_match_the_original(tmp_path, name):
    """(torch.export writes LRN as padding, pooling and powers: the LRN nets come from ONNX.)"""
    model = built(name)
    x = torch.rand(2, 3, SIZE, SIZE)
    torch.export.save(torch.export.export(model, (x,)), str(tmp_path / "model.pt2"))
    loaded = sp.load_model(tmp_path / "model.pt2")
    with torch.no_grad():
        torch.testing.assert_close(
            loaded(x.repeat(2, 1, 1, 1)), model(x.repeat(2, 1, 1, 1)), atol=1e-5, rtol=1e-5
        )
