"""Which activations FS neurons code, and where their fitted codes come from.

ReLU needs no fitting (the binary code is an exact quantiser). Every other activation has a code per
number of steps K, fitted by ``spikeport.fs_fit`` over a fixed input range: the shipped ones live in the
package (``neurons/fs_codes.json``); ``spikeport fit-fs`` writes refitted or additional ones to the user's
cache (see ``library`` for when they take precedence).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from spikeport.data.cache import cache_dir
from spikeport.errors import SaveFormatError
from spikeport.layers import SpikeSite
from spikeport.neurons.fs import FSCode

SHIPPED_CODES = Path(__file__).parent / "neurons" / "fs_codes.json"


@dataclass(frozen=True)
class FSActivation:
    """An activation function and the input range its FS codes are fitted on."""

    name: str
    function: object  # Tensor -> Tensor
    low: float
    high: float
    # Positively homogeneous (f(a x) = a f(x) for a > 0): coded on inputs normalised by a calibrated scale,
    # so one code serves every layer whatever its range.
    homogeneous: bool = False
    relu_like: bool = False  # grows like a ReLU: f - relu is a bounded bump (fits start from that shape)
    increasing: bool = False  # fits may start from the binary code of the output

    def __call__(self, x: Tensor) -> Tensor:
        return self.function(x)


def _activations() -> dict[str, FSActivation]:
    entries = [
        FSActivation("silu", F.silu, -8.0, 8.0, relu_like=True),
        FSActivation("sigmoid", torch.sigmoid, -8.0, 8.0, increasing=True),
        FSActivation("tanh", torch.tanh, -4.0, 4.0, increasing=True),
        FSActivation("gelu", F.gelu, -6.0, 6.0, relu_like=True),
        FSActivation("gelu_tanh", partial(F.gelu, approximate="tanh"), -6.0, 6.0, relu_like=True),
        FSActivation("hardswish", F.hardswish, -4.0, 4.0, relu_like=True),
        FSActivation(
            "leaky_relu",
            partial(F.leaky_relu, negative_slope=0.01),
            -1.0,
            1.0,
            homogeneous=True,
            relu_like=True,
        ),
    ]
    return {a.name: a for a in entries}


FITTED_ACTIVATIONS = _activations()


def activation_name(module: nn.Module) -> str | None:
    """The FS name of an activation module (``relu``, ``silu``...), or None when FS has no code for it.

    A spike site after an analog op is ``signed``: the binary code of its magnitude, with the sign.
    """
    if isinstance(module, nn.ReLU):
        return "relu"
    if isinstance(module, SpikeSite):
        return "signed"
    if isinstance(module, nn.LeakyReLU):
        return "leaky_relu" if math.isclose(module.negative_slope, 0.01) else None
    if isinstance(module, nn.GELU):
        return "gelu_tanh" if module.approximate == "tanh" else "gelu"
    names = {nn.SiLU: "silu", nn.Sigmoid: "sigmoid", nn.Tanh: "tanh", nn.Hardswish: "hardswish"}
    return names.get(type(module))


def user_codes_dir() -> Path:
    return cache_dir() / "fs_codes"


def code_to_dict(code: FSCode) -> dict:
    return {
        "thresholds": list(code.thresholds),
        "resets": list(code.resets),
        "weights": list(code.weights),
        "start": code.start,
        "offset": code.offset,
    }


def code_from_dict(raw: dict) -> FSCode:
    return FSCode(
        tuple(raw["thresholds"]),
        tuple(raw["resets"]),
        tuple(raw["weights"]),
        start=float(raw.get("start", 0.0)),
        offset=float(raw.get("offset", 0.0)),
    )


def read_library(path: Path) -> dict[str, dict[int, dict]]:
    """``{activation: {K: {"code": ..., "max_error": ..., "rms_error": ...}}}`` from a JSON file.

    A file that is not such a library is a ``SaveFormatError`` naming it: conversions read the user's
    library, so a damaged file must say which one to delete.
    """
    if not path.is_file():
        return {}
    try:
        raw = json.loads(path.read_text())
        codes = {name: {int(k): entry for k, entry in by_steps.items()} for name, by_steps in raw.items()}
        for by_steps in codes.values():
            for entry in by_steps.values():
                code_from_dict(entry["code"])
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as error:
        reason = f"{type(error).__name__}: {error}".splitlines()[0]
        raise SaveFormatError(
            f"{path} is not a readable FS code library ({reason}): delete it; "
            f"`spikeport fit-fs {path.stem}` then refits its codes"
        ) from None
    return codes


def library() -> dict[str, dict[int, dict]]:
    """Shipped codes, extended by the user's fitted ones and overridden where those fit at least as well.

    A user code replaces the shipped one of the same activation and K only when its RMS error (over the
    same range) is not larger: a refit with too few iterations, or one that found a worse optimum, would
    otherwise silently degrade every conversion. Codes for a K that ships none are always added.
    """
    merged = read_library(SHIPPED_CODES)
    for path in sorted(user_codes_dir().glob("*.json")) if user_codes_dir().is_dir() else []:
        for name, by_steps in read_library(path).items():
            for steps, entry in by_steps.items():
                if fits_as_well(entry, merged.get(name, {}).get(steps)):
                    merged.setdefault(name, {})[steps] = entry
    return merged


def fits_as_well(entry: dict, shipped: dict | None) -> bool:
    """Whether a user code may replace ``shipped`` (None: nothing to replace): not a larger RMS error over the
    same input range (an entry without its error or range never replaces one)."""
    if shipped is None:
        return True
    same_range = (entry.get("low"), entry.get("high")) == (shipped.get("low"), shipped.get("high"))
    return same_range and entry.get("rms_error", math.inf) <= shipped.get("rms_error", math.inf)


def fitted_codes(name: str) -> dict[int, FSCode]:
    """Every available code for ``name`` by K (empty when none was fitted)."""
    return {k: code_from_dict(entry["code"]) for k, entry in library().get(name, {}).items()}
