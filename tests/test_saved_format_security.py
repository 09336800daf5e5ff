"""A saved file is data, never code: hostile or damaged headers and tensors load as errors, never as runs.

The crafted files here get a valid checksum (``crafted``), as an attacker would write them, so that every
check behind the checksum is exercised; ``damaged`` files keep the old checksum, as corruption would.
"""

from __future__ import annotations

import contextlib
import copy
import json
import tempfile
from functools import cache
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import load as load_bytes
from safetensors.torch import load_file
from safetensors.torch import save as save_bytes
from torch import nn

import spikeport as sp
from spikeport.serialize import _checksum, _join, _split

SENTINEL = Path(tempfile.gettempdir()) / "spikeport-sentinel-must-not-exist"
TOUCH = f"__import__('pathlib').Path({str(SENTINEL)!r}).touch()"
PAYLOADS = [  # each breaks out of the place fx pastes a name into, if pasted unchecked
    TOUCH,
    f"x, {TOUCH}",
    f"x); {TOUCH}; (x",
    f'a"), {TOUCH}, getattr(self, "b',
    f"a=1, b={TOUCH}, c",
    f"__class__.__init__.__globals__ or {TOUCH} or x.relu",
    "forward",
    "__dict__",
    "training",
]


class Net(nn.Module):
    """Every kind of node the format carries: modules, functions, methods, kwargs, a constant, a max-pool."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4 * 4 * 4, 3)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.bn(self.conv(x))), 2)
        return self.fc(torch.flatten(x, start_dim=1).view(x.size(0), -1)) * 0.5


@cache
def saved() -> tuple[bytes, torch.Tensor, torch.Tensor]:
    """A network's file, an input and the network's output on it (built once for every example)."""
    torch.manual_seed(0)
    x = torch.rand(8, 1, 8, 8)
    snn = sp.convert(Net().eval(), x, "ecc")
    with tempfile.TemporaryDirectory() as folder:
        payload = sp.save(snn, Path(folder) / "net.spk").read_bytes()
    return payload, x, snn(x, timesteps=4)


def parts(payload: bytes) -> tuple[dict, dict, dict[str, torch.Tensor]]:
    header, _ = _split(payload)
    metadata = header["__metadata__"]
    return metadata, json.loads(metadata["network"]), load_bytes(payload)


def crafted(tmp_path: Path, network: dict | None = None, tensors=None, checksum: bool = True, **meta) -> Path:
    """A file with the given description and tensors, checksummed unless ``checksum`` is False."""
    metadata, original, original_tensors = parts(saved()[0])
    metadata = {**metadata, **meta, "network": json.dumps(original if network is None else network)}
    header, data = _split(save_bytes(original_tensors if tensors is None else tensors, metadata=metadata))
    if checksum:
        header["__metadata__"]["checksum"] = _checksum(header, data)
    path = tmp_path / "crafted.spk"
    path.write_bytes(_join(header, data))
    return path


def network() -> dict:
    return copy.deepcopy(parts(saved()[0])[1])


def node(description: dict, op: str) -> dict:
    return next(n for n in description["graph"]["nodes"] if n["op"] == op)


def refused(path: Path, match: str | None = None) -> None:
    with pytest.raises(sp.SaveFormatError, match=match):
        sp.load(path)
    assert not SENTINEL.exists()


def refused_or_same(path: Path, payload: str) -> None:
    """A name that is a plain identifier may stand anywhere a name does; anything else is refused."""
    if payload.isidentifier() and not payload.startswith("__"):
        _, x, out = saved()
        assert torch.equal(sp.load(path)(x, timesteps=4), out)
    else:
        refused(path, "not a plain identifier|not a module path")


def test_a_saved_file_loads_as_the_same_network(tmp_path):
    payload, x, out = saved()
    path = tmp_path / "net.spk"
    path.write_bytes(payload)
    assert torch.equal(sp.load(path)(x, timesteps=4), out)


@pytest.mark.parametrize("payload", PAYLOADS)
def test_keyword_names_are_identifiers(tmp_path, payload):
    description = network()
    flatten = next(n for n in description["graph"]["nodes"] if n["target"] == "torch.flatten")
    flatten["kwargs"] = {"dict": {payload: 1}}
    refused(crafted(tmp_path, description), "not a plain identifier|unexpected keyword")


@pytest.mark.parametrize("payload", PAYLOADS)
def test_method_names_come_from_the_allow_list(tmp_path, payload):
    description = network()
    node(description, "call_method")["target"] = payload
    refused(crafted(tmp_path, description), "which this spikeport does not know")


@pytest.mark.parametrize("payload", PAYLOADS)
def test_module_paths_input_and_node_names_are_checked(tmp_path, payload):
    description = network()
    target = node(description, "call_module")["target"]
    description["graph"]["modules"][payload] = description["graph"]["modules"].pop(target)
    node(description, "call_module")["target"] = payload
    refused(crafted(tmp_path, description))  # "forward", "training": attributes a module has already
    description = network()
    node(description, "placeholder")["target"] = payload
    refused_or_same(crafted(tmp_path, description), payload)
    description = network()
    first = node(description, "call_function")
    for user in description["graph"]["nodes"]:
        user["args"] = json.loads(
            json.dumps(user["args"]).replace(f'"node": "{first["name"]}"', f'"node": {json.dumps(payload)}')
        )
    first["name"] = payload
    refused_or_same(crafted(tmp_path, description), payload)


def test_constants_get_attr_names_are_checked(tmp_path):
    description = network()
    nodes = description["graph"]["nodes"]
    nodes.insert(
        1,
        {
            "name": "c",
            "op": "get_attr",
            "target": f'a"), {TOUCH}, getattr(self, "b',
            "args": [],
            "kwargs": {"dict": {}},
            "sample_shape": None,
        },
    )
    refused(crafted(tmp_path, description), "not a module path")


def test_dtypes_decode_to_dtypes_only(tmp_path):
    description = network()
    node(description, "call_function")["kwargs"] = {"dict": {"dtype": {"dtype": "save"}}}
    refused(crafted(tmp_path, description), "unknown value")


def test_module_state_and_network_attributes_take_declared_names_only(tmp_path):
    description = network()
    neuron = next(m for m in description["graph"]["modules"].values() if m["type"] == "IFNeuron")
    neuron["state"]["forward"] = {"dtype": "float32"}
    refused(crafted(tmp_path, description), "unexpected entries \\['forward'\\]")
    description = network()
    description["settings"]["forward"] = 1
    refused(crafted(tmp_path, description), "settings")
    description = network()
    description["coding"]["settings"]["forward"] = 1
    refused(crafted(tmp_path, description), "forward")
    description = network()
    neuron = next(m for m in description["graph"]["modules"].values() if m["type"] == "IFNeuron")
    neuron["arguments"]["device"] = "meta"
    refused(crafted(tmp_path, description), "unexpected entries \\['device'\\]")


def test_sizes_in_a_description_allocate_nothing(tmp_path):
    description = network()
    conv = next(m for m in description["graph"]["modules"].values() if m["type"] == "Conv2d")
    conv["arguments"]["out_channels"] = 10**12  # a real allocation would exhaust memory
    refused(crafted(tmp_path, description), "size mismatch")


@pytest.mark.parametrize("value", [0.0, -1.0, float("nan")])
def test_thresholds_must_be_positive(tmp_path, value):
    tensors = parts(saved()[0])[2]
    name = next(k for k in tensors if k.startswith("snn/") and k.endswith("#threshold"))
    tensors[name] = torch.full_like(tensors[name], value)
    refused(crafted(tmp_path, tensors=tensors), "must be > 0|non-finite")


@pytest.mark.parametrize("prefix", ["snn/", "ann/"])
def test_non_finite_weights_are_refused(tmp_path, prefix):
    tensors = parts(saved()[0])[2]
    name = next(k for k in tensors if k.startswith(prefix) and k.endswith("#weight"))
    tensors[name] = tensors[name].clone()
    tensors[name].view(-1)[3] = float("inf")
    refused(crafted(tmp_path, tensors=tensors), "non-finite")


def test_a_corrupted_byte_anywhere_fails_the_checksum(tmp_path):
    payload = bytearray(saved()[0])
    payload[-5] ^= 0x40  # inside the last tensor (an ANN weight: agreement would silently drop)
    path = tmp_path / "flipped.spk"
    path.write_bytes(bytes(payload))
    refused(path, "checksum does not match")


def test_a_description_that_does_not_run_is_refused_at_load(tmp_path):
    description = network()
    flatten = next(n for n in description["graph"]["nodes"] if n["target"] == "torch.flatten")
    flatten["kwargs"] = {"dict": {"start_dimension": 1}}  # a valid identifier that torch.flatten lacks
    refused(crafted(tmp_path, description), "start_dimension")


def test_saving_is_deterministic(tmp_path):
    payload, x, _ = saved()
    loaded = tmp_path / "loaded.spk"
    loaded.write_bytes(payload)
    snn = sp.load(loaded)
    first, second = sp.save(snn, tmp_path / "a.spk"), sp.save(snn, tmp_path / "b.spk")
    assert first.read_bytes() == second.read_bytes() == payload  # and a round trip changes nothing


@pytest.mark.parametrize("coding", ["rate", "fs"])
def test_version_2_files_still_load_bit_exactly(coding):
    """Files written by the version-2 format (no checksum, a network class instead of a coding)."""
    data = Path(__file__).parent / "data"
    expected = load_file(str(data / "version2-expected.safetensors"))
    snn = sp.load(data / f"version2-{coding}.spk")
    steps = 5 if coding == "rate" else 6
    assert torch.equal(snn(expected["x"], timesteps=steps), expected[coding])


# --- fuzzing: any change to the header loads as the same network or as a SaveFormatError ---

HOSTILE = st.one_of(
    st.sampled_from(PAYLOADS),
    st.text(max_size=12),
    st.integers(min_value=-(2**40), max_value=2**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
    st.sampled_from(
        [
            {"dtype": "save"},
            {"dtype": "float64"},
            {"node": "x"},
            {"tensor": "input_fanout"},
            {"slice": [0, None, 2]},
            {"ellipsis": True},
            {"tuple": [1, 2]},
            {"dict": {TOUCH: 1}},
            {"fs_code": {}},
            [],
            {},
        ]
    ),
)


def places(value, path=()):
    """Every (path, is_key) in a JSON value: leaves and containers to replace, dict keys to rename."""
    yield path, False
    if isinstance(value, dict):
        for key, child in value.items():
            yield (*path, key), True
            yield from places(child, (*path, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from places(child, (*path, index))


def mutated(description: dict, place: tuple, is_key: bool, value) -> dict:
    description = copy.deepcopy(description)
    *parents, last = place
    owner = description
    for step in parents:
        owner = owner[step]
    if is_key:
        owner[value if isinstance(value, str) else json.dumps(value)] = owner.pop(last)
    else:
        owner[last] = value
    return description


def load_or_refuse(path: Path):
    try:
        return sp.load(path)
    except sp.SaveFormatError:
        return None
    finally:
        assert not SENTINEL.exists(), "a saved file ran code"


FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FUZZ
@given(data=st.data(), value=HOSTILE)
def test_fuzzed_crafted_headers_never_run_code(tmp_path, data, value):
    """With a matching checksum (an attacker's file): an error, or a network of allowed parts that runs."""
    description = network()
    choices = [p for p in places(description) if p[0]]
    place, is_key = data.draw(st.sampled_from(choices))
    snn = load_or_refuse(crafted(tmp_path, mutated(description, place, is_key, value)))
    if snn is not None:
        _, x, _ = saved()
        with contextlib.suppress(sp.SpikeportError):
            snn(x, timesteps=4)
        assert not SENTINEL.exists()


@FUZZ
@given(data=st.data(), value=HOSTILE)
def test_fuzzed_damaged_headers_load_as_the_same_network_or_fail(tmp_path, data, value):
    """Without a matching checksum (a damaged file): the same network, or a SaveFormatError."""
    description = network()
    place, is_key = data.draw(st.sampled_from([p for p in places(description) if p[0]]))
    changed = mutated(description, place, is_key, value)
    snn = load_or_refuse(crafted(tmp_path, changed, checksum=False))
    if snn is not None:
        _, x, out = saved()
        assert torch.equal(snn(x, timesteps=4), out)
