"""Small models shared by the tests."""

import torch
import torch.nn.functional as F
from torch import nn


class Residual(nn.Module):
    """Every supported op in one net: functional and in-place ReLUs, add, cat, pools, view, BN, dropout."""

    def __init__(self, channels: int = 4, classes: int = 5):
        super().__init__()
        self.conv1 = nn.Conv2d(1, channels, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.conv3 = nn.Conv2d(channels, channels, 1)
        self.pool = nn.AvgPool2d(2)
        self.drop = nn.Dropout(0.5)
        self.fc = nn.Linear(2 * channels * 2 * 2, classes)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)), inplace=True)
        y = torch.relu(self.conv2(x))
        x = (x + self.conv3(y)).relu()
        x = self.pool(x)
        z = F.adaptive_avg_pool2d(x, 2)
        x = torch.cat([F.avg_pool2d(x, 2), z], dim=1)
        return self.fc(self.drop(x.view(x.size(0), -1)))


def randomize_batchnorms(model: nn.Module, seed: int = 0) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
    return model.eval()


def readout_errors(snn, model: nn.Module, x: torch.Tensor, steps: tuple[int, ...]) -> list[float]:
    """Mean absolute gap between the SNN's read-out after each of ``steps`` and the ANN's output (one run)."""
    readout, expected = snn(x, timesteps=max(steps)), model(x)
    return [(readout[t - 1] - expected).abs().mean().item() for t in steps]
