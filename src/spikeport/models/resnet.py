"""ResNets (He et al. 2016): ResNet-20 in the CIFAR layout, ResNet-18/34 with a CIFAR or ImageNet stem."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from spikeport.models.vgg import conv_unit, pooling

# Basic blocks per stage; each stage after the first halves the resolution and doubles the channels.
STAGES: dict[int, tuple[int, ...]] = {20: (3, 3, 3), 18: (2, 2, 2, 2), 34: (3, 4, 6, 3)}
DEFAULT_WIDTH = {20: 16, 18: 64, 34: 64}  # channels of the first stage


class BasicBlock(nn.Module):
    """Two 3x3 convs and a shortcut: the identity, or a 1x1 conv (with BN) where the shape changes."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, *, batchnorm: bool, bias: bool):
        super().__init__()
        self.conv1, self.bn1 = conv_unit(
            in_channels, out_channels, stride=stride, batchnorm=batchnorm, bias=bias
        )
        self.conv2, self.bn2 = conv_unit(out_channels, out_channels, batchnorm=batchnorm, bias=bias)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=bias),
                nn.BatchNorm2d(out_channels) if batchnorm else nn.Identity(),
            )

    def forward(self, x: Tensor) -> Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    def __init__(
        self, stem: nn.Sequential, stages: nn.Sequential, channels: int, num_classes: int, bias: bool
    ):
        super().__init__()
        self.stem, self.stages = stem, stages
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(torch.flatten(self.pool(self.stages(self.stem(x))), 1))


def resnet(
    depth: int = 20,
    *,
    num_classes: int = 10,
    in_channels: int = 3,
    width: int | None = None,
    stem: str = "cifar",
    batchnorm: bool = True,
    bias: bool = True,
    pool: str = "max",
) -> ResNet:
    """ResNet-``depth`` (20, 18 or 34) for any input size.

    ``stem="cifar"``: one 3x3 conv at full resolution (small images); ``stem="imagenet"``: a 7x7 conv with
    stride 2 and a 3x3 ``pool`` (max or avg) with stride 2. ``width``: channels of the first stage
    (default 16 for ResNet-20, 64 for 18/34). RMP-SNN's conversion-friendly variant: ``batchnorm=False,
    bias=False, pool="avg"``.
    """
    if depth not in STAGES:
        raise ValueError(f"ResNet depth is one of {sorted(STAGES)}, got {depth}")
    width = width or DEFAULT_WIDTH[depth]
    if stem == "cifar":
        layers = [*conv_unit(in_channels, width, batchnorm=batchnorm, bias=bias), nn.ReLU()]
    elif stem == "imagenet":
        layers = [
            nn.Conv2d(in_channels, width, 7, 2, padding=3, bias=bias),
            nn.BatchNorm2d(width) if batchnorm else nn.Identity(),
            nn.ReLU(),
            pooling(pool, 3, 2, padding=1),
        ]
    else:
        raise ValueError(f"stem is 'cifar' or 'imagenet', got {stem!r}")
    blocks: list[nn.Module] = []
    channels = width
    for stage, count in enumerate(STAGES[depth]):
        out = width * 2**stage
        for index in range(count):
            stride = 2 if stage > 0 and index == 0 else 1
            blocks.append(BasicBlock(channels, out, stride, batchnorm=batchnorm, bias=bias))
            channels = out
    return ResNet(nn.Sequential(*layers), nn.Sequential(*blocks), channels, num_classes, bias)


def resnet20(**options) -> ResNet:
    return resnet(20, **options)


def resnet18(**options) -> ResNet:
    return resnet(18, **options)


def resnet34(**options) -> ResNet:
    return resnet(34, **options)
