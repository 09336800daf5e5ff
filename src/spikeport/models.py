"""Model builders. For now the demo's MNIST CNN; deeper families (VGG, ResNet) come with their issue."""

from __future__ import annotations

from torch import nn


def mnist_cnn(channels: tuple[int, int] = (16, 32), classes: int = 10) -> nn.Sequential:
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
        nn.Linear(c2 * 7 * 7, classes),
    )
