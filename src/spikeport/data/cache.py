"""Where downloaded and derived data live between runs."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """``$SPIKEPORT_CACHE``, else ``$XDG_CACHE_HOME/spikeport``, else ``~/.cache/spikeport`` (created)."""
    if os.environ.get("SPIKEPORT_CACHE"):
        path = Path(os.environ["SPIKEPORT_CACHE"]).expanduser()
    else:
        base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
        path = Path(base).expanduser() / "spikeport"
    path.mkdir(parents=True, exist_ok=True)
    return path
