"""What the frontends share: one table of handlers per frontend, and one rule for naming rebuilt modules.

A frontend registers a handler for each foreign op or layer it converts; the same table answers "which
ops are supported?", so error messages and docs cannot drift from what is converted.
"""

from __future__ import annotations

import keyword
import re
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

from torch import fx

from spikeport.errors import ConversionError

__all__ = ["Registry", "module_name"]

K = TypeVar("K", bound=Hashable)
H = TypeVar("H", bound=Callable)

_GRAPH_MODULE_NAMES = frozenset(dir(fx.GraphModule))


class Registry(Generic[K, H]):
    """Handlers by the foreign name they convert (an ONNX op type, an aten op, a Keras layer class)."""

    def __init__(self, kind: str, label: Callable[[K], str] = str) -> None:
        self.kind = kind  # what the keys are, plural: "ONNX ops"
        self._label = label  # how a key reads in the supported list
        self._handlers: dict[K, H] = {}

    def register(self, *keys: K) -> Callable[[H], H]:
        """Decorator: the handler converts each of ``keys``."""

        def add(handler: H) -> H:
            if clash := [key for key in keys if key in self._handlers]:
                raise ValueError(f"{self.kind} registered twice: {clash}")
            self._handlers.update(dict.fromkeys(keys, handler))
            return handler

        return add

    def get(self, key: K) -> H | None:
        return self._handlers.get(key)

    def lookup(self, key: K, subject: str) -> H:
        """The handler of ``key``; else a one-line ConversionError about ``subject`` (which names the key)."""
        handler = self._handlers.get(key)
        if handler is None:
            raise ConversionError(f"{subject} has no spikeport equivalent; {self.supported_text()}")
        return handler

    def supported(self) -> tuple[str, ...]:
        """The names this frontend converts, sorted."""
        return tuple(sorted({self._label(key) for key in self._handlers}))

    def supported_text(self) -> str:
        return f"supported {self.kind}: {', '.join(self.supported())}"


def module_name(text: str, taken: Callable[[str], bool] = lambda name: False, *, path: bool = False) -> str:
    """A free name for a rebuilt module or tensor, readable and valid in the code fx generates.

    Characters other than letters, digits and ``_`` become ``_`` (those at either end are dropped),
    and so do dots, unless ``path``: then dots separate submodules, as in a torch model's own names,
    and all-digit parts (``nn.Sequential`` indices) stay. A part that is a keyword or an attribute of
    ``fx.GraphModule`` gets a trailing ``_``, one that starts with a digit a leading ``_``. Last, the
    first of ``name``, ``name_1``, ``name_2``, ... that ``taken`` does not claim.
    """
    parts = text.split(".") if path else [text]
    base = ".".join(_part(part, path) for part in parts)
    name, index = base, 1
    while taken(name):
        name, index = f"{base}_{index}", index + 1
    return name


def _part(text: str, indices: bool) -> str:
    part = re.sub(r"\W", "_", re.sub(r"^\W+|\W+$", "", text)) or "layer"
    if keyword.iskeyword(part) or part in _GRAPH_MODULE_NAMES:
        return f"{part}_"
    if part[0].isdigit() and not (indices and part.isdigit()):
        return f"_{part}"
    return part
