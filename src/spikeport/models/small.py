"""Small models: the demo's MNIST CNN and the small VGG that benchmarks measure simulation on."""

from __future__ import annotations

from torch import nn


def mnist_cnn(channels: tuple[int, int] = (16, 32), num_classes: int = 10) -> nn.Sequential:
    """A conversion-friendly LeNet-style CNN: conv-ReLU-avgpool twice, then one linear read-out.

    Average pooling (not max) and no BatchNorm keep every non-activation op linear, as RMP-SNN prescribes;
    biases are fine in spikeport's formulation.
    """
    c1, c2 = channels
    return nn.Sequential(
        nn.Conv2d(1, c1, 5, padding=2),
        nn.ReLU(),
        nn.AvgPool2d(2),
        nn.Conv2d(c1, c2, 5, padding=2),
        nn.ReLU(),
        nn.AvgPool2d(2),
        nn.Flatten(),
        nn.Dropout(0.25),
        nn.Linear(c2 * 7 * 7, num_classes),
    )


def vgg6(width: int = 32, num_classes: int = 10, in_channels: int = 3, pool: str = "avg") -> nn.Sequential:
    """Six 3x3 convs in three stages with average (or, ``pool="max"``, max) pooling, for 32x32 input.

    The conversion-friendly VGG layout of RMP-SNN at a CPU-friendly width (32-64-128 channels).
    """
    if pool not in ("avg", "max"):
        raise ValueError(f"pool is 'avg' or 'max', got {pool!r}")
    layers: list[nn.Module] = []
    channels = in_channels
    for stage in range(3):
        out = width * 2**stage
        layers += [
            nn.Conv2d(channels, out, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(out, out, 3, padding=1),
            nn.ReLU(),
        ]
        layers.append(nn.AvgPool2d(2) if pool == "avg" else nn.MaxPool2d(2))
        channels = out
    layers += [nn.Flatten(), nn.Linear(channels * 4 * 4, num_classes)]
    return nn.Sequential(*layers)
