"""sp.save / sp.load: a converted network to a file and back, bit-exactly.

Version 1 stores the whole module with ``torch.save`` inside a small header that names the format and
its version. Like any ``torch.load`` of a full module this unpickles code: load only files you trust.
"""

from __future__ import annotations

from pathlib import Path

import torch

from spikeport.errors import SaveFormatError
from spikeport.network import SpikingNetwork

FORMAT = "spikeport-snn"
VERSION = 1


def save(snn: SpikingNetwork, path: str | Path) -> Path:
    """Write ``snn`` to ``path`` (conventionally ``*.spk``); returns the path."""
    if not isinstance(snn, SpikingNetwork):
        raise TypeError(f"sp.save takes a SpikingNetwork, got {type(snn).__name__}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"format": FORMAT, "version": VERSION, "network": snn}, path)
    return path


def load(path: str | Path) -> SpikingNetwork:
    """Read a network written by ``sp.save``, with a one-line error for anything else."""
    path = Path(path)
    if not path.is_file():
        raise SaveFormatError(f"{path}: no such file")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise SaveFormatError(
            f"{path} is not a readable spikeport file (corrupt or truncated?): {reason}"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise SaveFormatError(f"{path} is not a spikeport network file (written by sp.save)")
    if payload.get("version") != VERSION:
        raise SaveFormatError(
            f"{path} has format version {payload.get('version')}, this spikeport reads version {VERSION}; "
            "convert the model again with this version"
        )
    network = payload.get("network")
    if not isinstance(network, SpikingNetwork):
        raise SaveFormatError(f"{path} is damaged: it holds no SpikingNetwork")
    return network
