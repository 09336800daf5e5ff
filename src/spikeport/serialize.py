"""sp.save / sp.load: a converted network to a file and back, bit-exactly, without pickle.

Format ``spikeport-snn`` version 2 is one safetensors file: the tensors (weights, thresholds, coding scales,
fan-outs) by name, and in the header's metadata a JSON description of the network: its class and
settings, its graph (nodes in order, each module with its constructor arguments) and the graph of the ANN it
was converted from (for agreement). Loading builds modules from a fixed list and runs no pickled code
(``spikeport.export.description``). Layout of the metadata:

- ``format``: ``"spikeport-snn"``, ``version``: ``"2"``, ``spikeport``: the writer's version;
- ``network``: JSON ``{"class", "settings", "graph", "ann"}``; tensors of the network's graph are named
  ``snn/<module path>#<name>``, those of the ANN ``ann/...``.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from spikeport.errors import SaveFormatError
from spikeport.export.description import DescriptionError, build_graph, describe_graph
from spikeport.network import SpikingNetwork
from spikeport.network_fs import FSNetwork

FORMAT = "spikeport-snn"
VERSION = 2
CLASSES = {"SpikingNetwork": SpikingNetwork, "FSNetwork": FSNetwork}
SETTINGS = {  # constructor keywords and attributes stored with each class
    "SpikingNetwork": ("encoding", "encoding_scale", "seed", "memory_budget"),
    "FSNetwork": ("default_steps", "coded_layers", "analog_input", "product_ops_per_sample"),
}
ATTRIBUTES = ("ann_macs_per_image", "separable_prefix")


def save(snn: SpikingNetwork, path: str | Path) -> Path:
    """Write ``snn`` to ``path`` (conventionally ``*.spk``); returns the path."""
    from safetensors.torch import save_file

    from spikeport import __version__

    if not isinstance(snn, SpikingNetwork):
        raise TypeError(f"sp.save takes a SpikingNetwork, got {type(snn).__name__}")
    kind = type(snn).__name__
    tensors: dict[str, torch.Tensor] = {"input_fanout": snn.input_fanout.contiguous().clone()}
    try:
        network = {
            "class": kind,
            "input_shape": list(snn.input_shape),
            "settings": {name: _plain(getattr(snn, name)) for name in SETTINGS[kind]},
            "attributes": {name: getattr(snn, name) for name in ATTRIBUTES},
            "info": snn.info,
            "graph": describe_graph(snn.graph_module, tensors, "snn/"),
            "ann": None if snn.ann is None else describe_graph(snn.ann, tensors, "ann/"),
        }
        metadata = {"format": FORMAT, "version": str(VERSION), "spikeport": __version__}
        metadata["network"] = json.dumps(network)
    except (DescriptionError, TypeError) as error:
        raise SaveFormatError(f"cannot save this network: {error}") from None
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({name: t.cpu() for name, t in tensors.items()}, str(path), metadata=metadata)  # from any device
    return path


def _plain(value):
    return getattr(value, "value", value)  # enums by their value


def load(path: str | Path, device: torch.device | str = "cpu") -> SpikingNetwork:
    """Read a network written by ``sp.save`` onto ``device``, with a one-line error for anything else."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file, safe_open

    path = Path(path)
    if not path.is_file():
        raise SaveFormatError(f"{path}: no such file")
    _refuse_pickles(path)
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise SaveFormatError(
            f"{path} is not a readable spikeport file (corrupt or truncated?): {reason}"
        ) from None
    if metadata.get("format") != FORMAT:
        raise SaveFormatError(f"{path} is not a spikeport network file (written by sp.save)")
    version = int(metadata.get("version", "0")) if str(metadata.get("version", "")).isdigit() else 0
    if version != VERSION:
        newer = "newer: upgrade spikeport" if version > VERSION else "older: convert the model again"
        raise SaveFormatError(
            f"{path} has format version {metadata.get('version')}, this spikeport reads version {VERSION} ({newer})"
        )
    try:
        snn = _build(json.loads(metadata["network"]), tensors)
    except (DescriptionError, KeyError, TypeError, ValueError) as error:
        raise SaveFormatError(f"{path} is damaged: {error}") from None
    return snn.to(device)


def _refuse_pickles(path: Path) -> None:
    """A zip is a ``torch.save`` pickle: spikeport's own version 1, or something else. Neither is unpickled."""
    import zipfile

    if not zipfile.is_zipfile(path):
        return
    with zipfile.ZipFile(path) as archive:
        pickles = [name for name in archive.namelist() if name.endswith("data.pkl")]
        ours = any(FORMAT.encode() in archive.read(name) for name in pickles)
    if ours:
        raise SaveFormatError(
            f"{path} has format version 1 (a pickle); this spikeport reads version {VERSION}, which needs no "
            "pickle: convert the model again"
        )
    raise SaveFormatError(f"{path} is not a spikeport network file (written by sp.save) but a PyTorch pickle")


def _build(network: dict, tensors: dict[str, torch.Tensor]) -> SpikingNetwork:
    kind = network["class"]
    if kind not in CLASSES:
        raise DescriptionError(f"unknown network class {kind!r}")
    graph_module = build_graph(network["graph"], tensors, "snn/")
    settings = network["settings"]
    snn = CLASSES[kind](
        graph_module, tuple(network["input_shape"]), tensors["input_fanout"], info=network["info"], **settings
    )
    for name, value in network["attributes"].items():
        setattr(snn, name, value)
    if network["ann"] is not None:
        snn.__dict__["ann"] = build_graph(network["ann"], tensors, "ann/")
    return snn
