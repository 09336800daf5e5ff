"""Small models and data files shared by the tests."""

import pickle
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from spikeport.neurons import CurrentProbe


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


def write_cifar_dir(folder: Path, per_batch: int = 3) -> dict[str, tuple[np.ndarray, list[int]]]:
    """A cifar-10-batches-py folder: per image, one pixel at 255 at a known (c, h, w), the rest 0."""
    folder.mkdir(parents=True)
    batches = {}
    for b, name in enumerate([f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]):
        data = np.zeros((per_batch, 3072), np.uint8)
        for i in range(per_batch):
            c, h, w = (b + i) % 3, 3 * b + i, 31 - b
            data[i, c * 1024 + h * 32 + w] = 255  # R, G, B planes of 32x32, each row-major
        labels = [(b * per_batch + i) % 10 for i in range(per_batch)]
        with open(folder / name, "wb") as f:
            pickle.dump({b"batch_label": name.encode(), b"data": data, b"labels": labels}, f)
        batches[name] = (data, labels)
    return batches


class Lambda(nn.Module):
    def __init__(self, function):
        super().__init__()
        self.function = function

    def forward(self, x):
        return self.function(x)


def ann_with_fs_functions(snn, function) -> nn.Module:
    """The FS network's source ANN with each activation replaced by ``function(neuron)`` (a callable on x);
    at a signed spike site, by ``function`` of the magnitude with the sign."""
    import copy

    from spikeport.neurons.fs import FSNeuron

    def signed(f):
        return lambda x: torch.sign(x) * f(x.abs())

    ann = copy.deepcopy(snn.ann)
    for name, module in snn.graph_module.named_modules():
        if isinstance(module, FSNeuron):
            coded = function(module)
            ann.set_submodule(name, Lambda(signed(coded) if module.signed else coded))
    return ann


class GatedMLP(nn.Module):
    """Features times a gate, ``fc2(f(fc1(x)) * g(gate(x)) * scale)``: a product of two signals, an analog op."""

    def __init__(self, features=torch.relu, gate=torch.relu, scale: float = 1.0):
        super().__init__()
        self.features, self.gate_activation, self.scale = features, gate, scale
        self.fc1 = nn.Linear(6, 8)
        self.gate = nn.Linear(6, 8)
        self.fc2 = nn.Linear(8, 3)

    def forward(self, x):
        return self.fc2(self.features(self.fc1(x)) * self.gate_activation(self.gate(x)) * self.scale)


def channels_last_per_step(t: torch.Tensor) -> torch.Tensor:
    """The same values with every [B, C, H, W] block of ``t`` ([B, C, H, W] or [steps, B, C, H, W]) stored
    channels-last, as a channels-last network's states and currents are."""
    if t.dim() == 4:
        return t.contiguous(memory_format=torch.channels_last)
    return t.permute(0, 1, 3, 4, 2).contiguous().permute(0, 1, 4, 2, 3)


@contextmanager
def kernel_off(kernel):
    """A scan kernel module (``cpu_scan``, ``fused_scan``) switched off inside the block: the eager scan runs."""
    before, kernel.enabled = kernel.enabled, False
    try:
        yield
    finally:
        kernel.enabled = before


class SilentProbe(CurrentProbe):
    """What an observed layer was before SpikingNetwork.observing: it observes and emits zeros, and the
    graph runs on to its end."""

    def forward(self, x):
        super().forward(x)
        return x.new_zeros(self.clock.steps * self.clock.batch, *x.shape[1:])


@contextmanager
def observing_whole_graph(snn, observers):
    """A stand-in for SpikingNetwork.observing that runs the whole graph (as the code before it did)."""
    gm = snn.graph_module
    targets = {n.name: str(n.target) for n in gm.graph.nodes if n.name in observers}
    originals = {name: gm.get_submodule(target) for name, target in targets.items()}
    for name, target in targets.items():
        gm.set_submodule(target, SilentProbe(originals[name], observers[name]))
    yield
    for name, target in targets.items():
        gm.set_submodule(target, originals[name])
