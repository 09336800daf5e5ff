"""sp.save / sp.load: a converted network to a file and back, bit-exactly, without pickle.

Format ``spikeport-snn`` version 3 is one safetensors file: the tensors (weights, thresholds, coding scales,
fan-outs) by name, and in the header's metadata a JSON description of the network: its coding and
settings, its graph (nodes in order, each module with its constructor arguments) and the graph of the ANN it
was converted from (for agreement). Layout of the metadata:

- ``format``: ``"spikeport-snn"``, ``version``: ``"3"``, ``spikeport``: the writer's version;
- ``network``: JSON ``{"coding": {"name", "settings"}, "input_shape", "settings", "info", "graph", "ann"}``;
  tensors of the network's graph are named ``snn/<module path>#<name>``, those of the ANN ``ann/...``;
- ``checksum``: ``sha256:<hex>`` of the header without it (JSON, keys sorted, no spaces) and the data bytes.

The header is written with sorted keys, so the same network always gives the same bytes. Version 2 files
(no checksum; a network class, FSNetwork or SpikingNetwork, where version 3 names the coding) still load.

What loading guarantees, for any file (tested by fuzzing saved headers):
- no code from the file runs: no pickle; graphs rebuilt from the allow-lists of
  ``spikeport.export.description`` with every name checked before torch.fx writes it into source;
- a damaged file is refused: the checksum covers every byte of header and data;
- a network that would run wrong is refused: non-finite tensors, thresholds or scales <= 0
  (``export.checks``), and a network that fails a one-step run on a zero input;
- every refusal is a one-line ``SaveFormatError``. A crafted file with a valid checksum can still describe a
  network of allowed parts that computes something else; only load files you would run.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
from pathlib import Path

import torch

from spikeport._version import __version__
from spikeport.coding import coding_from_settings
from spikeport.errors import SaveFormatError
from spikeport.export.checks import invalid_values
from spikeport.export.description import DescriptionError, build_graph, describe_graph
from spikeport.network import SpikingNetwork

FORMAT = "spikeport-snn"
VERSION = 3
READABLE_VERSIONS = (2, 3)  # 2: the same format without a checksum
# What the network's constructor takes besides its graph, tensors and coding, with the types a file may give.
SETTINGS: dict[str, tuple[type, ...]] = {
    "memory_budget": (int, type(None)),
    "ann_macs_per_image": (int, float),
    "separable_prefix": (bool,),
}
MAX_INPUT_ELEMENTS = 1 << 28  # per sample; the load check runs one sample of this size


def save(snn: SpikingNetwork, path: str | Path) -> Path:
    """Write ``snn`` to ``path`` (conventionally ``*.spk``); returns the path."""
    from safetensors.torch import save as save_bytes

    if not isinstance(snn, SpikingNetwork):
        raise TypeError(f"sp.save takes a SpikingNetwork, got {type(snn).__name__}")
    tensors: dict[str, torch.Tensor] = {"input_fanout": snn.input_fanout.contiguous().clone()}
    try:
        network = {
            "coding": {"name": snn.coding.name, "settings": snn.coding.settings()},
            "input_shape": list(snn.input_shape),
            "settings": {name: getattr(snn, name) for name in SETTINGS},
            "info": snn.info,
            "graph": describe_graph(snn.graph_module, tensors, "snn/"),
            "ann": None if snn.ann is None else describe_graph(snn.ann, tensors, "ann/"),
        }
        metadata = {"format": FORMAT, "version": str(VERSION), "spikeport": __version__}
        metadata["network"] = json.dumps(network)
    except (DescriptionError, TypeError) as error:
        raise SaveFormatError(f"cannot save this network: {error}") from None
    payload = save_bytes({name: t.cpu() for name, t in tensors.items()}, metadata=metadata)  # any device
    header, data = _split(payload)
    header["__metadata__"]["checksum"] = _checksum(header, data)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(_join(header, data))
    return path


def _split(payload: bytes) -> tuple[dict, bytes]:
    """A safetensors file's header (JSON) and data bytes; ValueError if it is not one."""
    if len(payload) < 8:
        raise ValueError("shorter than a safetensors header")
    size = int.from_bytes(payload[:8], "little")
    if not 2 <= size <= len(payload) - 8:
        raise ValueError(f"header length {size} does not fit a file of {len(payload)} bytes")
    header = json.loads(payload[8 : 8 + size])
    if not isinstance(header, dict) or not isinstance(header.get("__metadata__", {}), dict):
        raise ValueError("the header is not a JSON object")
    return header, payload[8 + size :]


def _canonical(header: dict) -> bytes:
    return json.dumps(header, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _join(header: dict, data: bytes) -> bytes:
    """The file with its header's keys sorted (safetensors orders them by hash: bytes would vary)."""
    text = _canonical(header)
    text += b" " * (-len(text) % 8)  # safetensors aligns the data to 8 bytes
    return len(text).to_bytes(8, "little") + text + data


def _checksum(header: dict, data: bytes) -> str:
    metadata = {k: v for k, v in header.get("__metadata__", {}).items() if k != "checksum"}
    digest = hashlib.sha256(_canonical({**header, "__metadata__": metadata}))
    digest.update(data)
    return f"sha256:{digest.hexdigest()}"


def load(path: str | Path, device: torch.device | str = "cpu") -> SpikingNetwork:
    """Read a network written by ``sp.save`` onto ``device``, with a one-line error for anything else."""
    from safetensors import SafetensorError
    from safetensors.torch import load as load_bytes

    path = Path(path)
    if not path.is_file():
        raise SaveFormatError(f"{path}: no such file")
    payload = path.read_bytes()
    _refuse_pickles(path, payload)
    try:
        header, data = _split(payload)
        tensors = load_bytes(payload)
    except (SafetensorError, ValueError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise SaveFormatError(
            f"{path} is not a readable spikeport file (corrupt or truncated?): {reason}"
        ) from None
    metadata = header.get("__metadata__", {})
    if metadata.get("format") != FORMAT:
        raise SaveFormatError(f"{path} is not a spikeport network file (written by sp.save)")
    version = str(metadata.get("version", ""))
    number = int(version) if version.isdigit() else 0
    if number not in READABLE_VERSIONS:
        newer = "newer: upgrade spikeport" if number > VERSION else "older: convert the model again"
        raise SaveFormatError(
            f"{path} has format version {version}, this spikeport reads version {VERSION} ({newer})"
        )
    if number >= 3 and metadata.get("checksum") != _checksum(header, data):
        raise SaveFormatError(
            f"{path} is damaged: its checksum does not match its contents (changed or corrupted)"
        )
    try:
        network = json.loads(metadata["network"])
        snn = _build(network if number >= 3 else _upgrade_from_version_2(network), tensors)
        problem = invalid_values(snn) or (None if snn.ann is None else invalid_values(snn.ann))
        if problem:
            raise DescriptionError(problem)
        _run_once(snn)
    except Exception as error:  # nothing of the file runs as code, so any failure here means damage
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise SaveFormatError(f"{path} is damaged: {reason}") from None
    return snn.to(device)


def _run_once(snn: SpikingNetwork) -> None:
    """One step on a zero sample: a description that loads but cannot run is refused now, not mid-evaluation."""
    if not 0 < _elements(snn.input_shape) <= MAX_INPUT_ELEMENTS:
        raise DescriptionError(f"implausible input shape {list(snn.input_shape)}")
    x = torch.zeros(1, *snn.input_shape, dtype=snn.dtype)
    with contextlib.redirect_stderr(io.StringIO()):  # torch.fx prints its own traceback of a failing graph
        snn(x, timesteps=(snn.supported_steps() or [1])[0])  # the shortest run the network has
        if snn.ann is not None:
            snn.ann(x)


def _elements(shape: tuple[int, ...]) -> int:
    count = 1
    for size in shape:
        count *= size
    return count


def _refuse_pickles(path: Path, payload: bytes) -> None:
    """A zip is a ``torch.save`` pickle: spikeport's own version 1, or something else. Neither is unpickled."""
    import zipfile

    if not zipfile.is_zipfile(io.BytesIO(payload)):
        return
    with zipfile.ZipFile(io.BytesIO(payload)) as archive:
        pickles = [name for name in archive.namelist() if name.endswith("data.pkl")]
        ours = any(FORMAT.encode() in archive.read(name) for name in pickles)
    if ours:
        raise SaveFormatError(
            f"{path} has format version 1 (a pickle); this spikeport reads version {VERSION}, which needs no "
            "pickle: convert the model again"
        )
    raise SaveFormatError(f"{path} is not a spikeport network file (written by sp.save) but a PyTorch pickle")


def _build(network: dict, tensors: dict[str, torch.Tensor]) -> SpikingNetwork:
    coding = network["coding"]
    if not (
        isinstance(coding, dict)
        and set(coding) == {"name", "settings"}
        and isinstance(coding["settings"], dict)
    ):
        raise DescriptionError(f"coding {coding!r} is not {{name, settings}}")
    settings = _typed(network["settings"], SETTINGS, "settings")
    shape = network["input_shape"]
    if not (isinstance(shape, list) and shape and all(type(v) is int and v > 0 for v in shape)):
        raise DescriptionError(f"input shape {shape!r} is not a list of positive sizes")
    if not isinstance(network["info"], dict):
        raise DescriptionError("info is not a JSON object")
    return SpikingNetwork(
        build_graph(network["graph"], tensors, "snn/"),
        tuple(shape),
        tensors["input_fanout"],
        coding_from_settings(coding["name"], coding["settings"]),
        ann=None if network["ann"] is None else build_graph(network["ann"], tensors, "ann/"),
        info=network["info"],
        **settings,
    )


def _upgrade_from_version_2(network: dict) -> dict:
    """Version 2 named a network class (SpikingNetwork: rate, FSNetwork: temporal) where 3 names its coding."""
    kind, old = network["class"], network["settings"]
    if kind == "SpikingNetwork":
        coding = {"name": "rate", "settings": {k: old[k] for k in ("encoding", "encoding_scale", "seed")}}
    elif kind == "FSNetwork":
        fields = ("coded_layers", "analog_input", "product_ops_per_sample")
        coding = {
            "name": "temporal",
            "settings": {"converted_steps": old["default_steps"], **{k: old[k] for k in fields}},
        }
    else:
        raise DescriptionError(f"unknown network class {kind!r}")
    settings = {"memory_budget": old.get("memory_budget"), **network["attributes"]}
    rest = {k: v for k, v in network.items() if k not in ("class", "settings", "attributes")}
    return {**rest, "coding": coding, "settings": settings}


def _typed(values, types: dict[str, tuple[type, ...]], what: str) -> dict:
    """``values`` if it names exactly the keys of ``types``, each of its type."""
    if not isinstance(values, dict) or set(values) != set(types):
        raise DescriptionError(f"{what} {values!r} are not those of the network ({', '.join(types)})")
    for name, value in values.items():
        if not isinstance(value, types[name]) or (isinstance(value, bool) and bool not in types[name]):
            raise DescriptionError(f"{what}: {name} = {value!r} is not a {types[name][0].__name__}")
    return values
