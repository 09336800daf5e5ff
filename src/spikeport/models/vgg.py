"""VGG-11 and VGG-16 (Simonyan & Zisserman 2015) in the CIFAR layout RMP-SNN converts."""

from __future__ import annotations

from torch import nn

# Output channels of each 3x3 conv at width 64; "M" is a 2x2 pooling.
CONFIGS: dict[int, list[int | str]] = {
    11: [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    16: [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
}


def pooling(kind: str, kernel: int = 2, stride: int | None = None, padding: int = 0) -> nn.Module:
    """A max or average pool; ``kind`` is ``"max"`` or ``"avg"``."""
    if kind == "max":
        return nn.MaxPool2d(kernel, stride, padding)
    if kind == "avg":
        return nn.AvgPool2d(kernel, stride, padding)
    raise ValueError(f"pool is 'max' or 'avg', got {kind!r}")


def conv_unit(
    in_channels: int, out_channels: int, *, stride: int = 1, batchnorm: bool, bias: bool
) -> list[nn.Module]:
    """3x3 conv (padding 1), optional BatchNorm: the building block of both families (without its ReLU)."""
    conv = nn.Conv2d(in_channels, out_channels, 3, stride, padding=1, bias=bias)
    return [conv, nn.BatchNorm2d(out_channels) if batchnorm else nn.Identity()]


def vgg(
    depth: int = 16,
    *,
    num_classes: int = 10,
    in_channels: int = 3,
    width: int = 64,
    batchnorm: bool = True,
    bias: bool = True,
    pool: str = "max",
    hidden: int = 512,
    dropout: float = 0.5,
) -> nn.Sequential:
    """VGG-``depth`` (11 or 16) for inputs of at least 32x32 pixels (five 2x2 poolings).

    ``width`` scales every layer (64 = the paper). The classifier is a global average pool, then
    ``hidden`` -> ``num_classes`` linear layers, so any input size works. RMP-SNN's conversion-friendly
    variant: ``batchnorm=False, bias=False, pool="avg"``.
    """
    if depth not in CONFIGS:
        raise ValueError(f"VGG depth is one of {sorted(CONFIGS)}, got {depth}")
    layers: list[nn.Module] = []
    channels = in_channels
    for item in CONFIGS[depth]:
        if item == "M":
            layers.append(pooling(pool))
            continue
        out = max(1, int(item) * width // 64)
        layers += [*conv_unit(channels, out, batchnorm=batchnorm, bias=bias), nn.ReLU()]
        channels = out
    hidden = max(1, hidden * width // 64)
    layers += [
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(channels, hidden, bias=bias),
        nn.ReLU(),
        nn.Dropout(dropout),
        nn.Linear(hidden, num_classes, bias=bias),
    ]
    return nn.Sequential(*layers)


def vgg11(**options) -> nn.Sequential:
    return vgg(11, **options)


def vgg16(**options) -> nn.Sequential:
    return vgg(16, **options)
