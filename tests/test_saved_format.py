"""The saved format: safetensors plus a JSON description, loaded without pickle, versioned, checked."""

import json
import pickle

import pytest
import torch
import torch.nn.functional as F
from helpers import Residual, randomize_batchnorms
from safetensors.torch import load_file, save_file
from torch import nn

import spikeport as sp
from spikeport.serialize import FORMAT, _checksum, _join, _split


class Mixed(nn.Module):
    """Max-pool, residual add, cat, getitem and a gate: every kind of node the format must carry."""

    def __init__(self, activation=F.relu):
        super().__init__()
        self.activation = activation
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1, groups=2)
        self.fc = nn.Linear(8 * 4 * 4, 3)

    def forward(self, x):
        x = F.max_pool2d(torch.relu(self.conv1(x)), 2)
        y = self.activation(self.conv2(x)) + x
        return self.fc(torch.cat([y, x[:, :, :, :]], dim=1).flatten(1))


def networks():
    x = torch.rand(16, 1, 8, 8)
    yield sp.convert(randomize_batchnorms(Residual()), x, "rmp", channelwise=True), x
    yield sp.convert(Mixed(), x, "ecc", encoding="poisson", seed=3), x
    yield sp.convert(Mixed(), x, "fs", input_coding="fs"), x
    yield sp.convert(Mixed(F.silu), x, "fs", steps=12), x


@pytest.mark.parametrize("index", range(4))
def test_round_trip_is_bit_exact_and_needs_no_pickle(tmp_path, monkeypatch, index):
    snn, x = list(networks())[index]
    path = sp.save(snn, tmp_path / "net.spk")

    def refuse(*args, **kwargs):
        raise AssertionError("sp.load must not unpickle")

    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(torch, "load", refuse)
    loaded = sp.load(path)
    assert type(loaded) is type(snn)
    steps = 9 if snn.coding.name == "rate" else 8
    assert torch.equal(loaded(x, timesteps=steps), snn(x, timesteps=steps))
    assert loaded.info == json.loads(json.dumps(snn.info))
    for name, layer in snn.spiking_layers().items():
        assert torch.equal(layer.fanout, loaded.spiking_layers()[name].fanout)
    assert torch.equal(loaded.ann(x), snn.ann(x))  # agreement after loading is against the same ANN
    timesteps = [4, 9] if snn.coding.name == "rate" else [4, 8]
    assert sp.evaluate(loaded, x, timesteps, progress=False) == sp.evaluate(snn, x, timesteps, progress=False)


def test_the_file_is_safetensors_with_a_json_description(tmp_path):
    snn, _ = next(networks())
    path = sp.save(snn, tmp_path / "net.spk")
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata()
    assert metadata["format"] == FORMAT and metadata["version"] == "3"
    assert metadata["checksum"].startswith("sha256:")
    network = json.loads(metadata["network"])
    assert network["coding"] == {
        "name": "rate",
        "settings": {"encoding": "analog", "encoding_scale": 1.0, "seed": 0},
    }
    neurons = [m for m in network["graph"]["modules"].values() if m["type"] == "IFNeuron"]
    assert neurons and all(m["arguments"]["reset"] == "soft" for m in neurons)
    assert any(name.startswith("ann/") for name in load_file(str(path)))


def rewrite(path, tmp_path, **changes):
    """The file with its metadata changed and its checksum made to match: a crafted file, not a damaged one."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata()
    metadata.update(changes)
    out = tmp_path / "changed.spk"
    save_file(load_file(str(path)), str(out), metadata=metadata)
    header, data = _split(out.read_bytes())
    header["__metadata__"]["checksum"] = _checksum(header, data)
    out.write_bytes(_join(header, data))
    return out


def test_versions_and_damage_are_one_line_errors(tmp_path):
    snn, _ = next(networks())
    path = sp.save(snn, tmp_path / "net.spk")
    with pytest.raises(
        sp.SaveFormatError, match="version 4, .* reads version 3 \\(newer: upgrade spikeport\\)"
    ):
        sp.load(rewrite(path, tmp_path, version="4"))
    network = json.loads(load_metadata(path)["network"])
    first = next(iter(network["graph"]["modules"]))
    network["graph"]["modules"][first]["type"] = "Evil"
    with pytest.raises(sp.SaveFormatError, match="is damaged: .*unknown type 'Evil'"):
        sp.load(rewrite(path, tmp_path, network=json.dumps(network)))
    old = tmp_path / "old.spk"
    torch.save({"format": FORMAT, "version": 1, "network": None}, old)
    with pytest.raises(sp.SaveFormatError, match="format version 1 .* convert the model again"):
        sp.load(old)


def load_metadata(path):
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        return handle.metadata()


def test_unknown_modules_are_refused_when_saving(tmp_path):
    class MyFlatten(nn.Flatten):
        pass

    snn, _ = next(networks())
    snn.graph_module.add_module("fc_extra", MyFlatten())
    node = next(n for n in snn.graph_module.graph.nodes if n.op == "output")
    with snn.graph_module.graph.inserting_before(node):
        extra = snn.graph_module.graph.call_module("fc_extra", (node.args[0],))
    node.args = (extra,)
    snn.graph_module.recompile()
    with pytest.raises(sp.SaveFormatError, match="module 'fc_extra' \\(MyFlatten\\) has no saved-format"):
        sp.save(snn, tmp_path / "net.spk")
