"""Options as users write them, and their checks.

``NAME[key=value, ...]`` names a thing with its options in one string (methods, model factories); typed
fields (``check_fields``) turn what was written into values of the declared type and range, or refuse
them by name; ``positive_int(s)`` checks the step counts that several entry points take.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import re
import types
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from typing import Annotated, Any, Literal, Union, get_args, get_origin, get_type_hints

from spikeport.choices import Choice
from spikeport.errors import OptionError


def split_specs(text: str) -> list[str]:
    """``"ecc,max[reset=soft, channelwise=true]"`` -> ``["ecc", "max[reset=soft, channelwise=true]"]``.

    Splits on the commas that separate specs, not those inside ``[...]``.
    """
    return [spec.strip() for spec in re.split(r",(?![^\[]*\])", text) if spec.strip()]


def parse_options(spec: str, what: str = "spec") -> tuple[str, dict]:
    """``"max[reset=soft, channelwise=true]"`` -> ``("max", {"reset": "soft", "channelwise": True})``.

    Values are read as None, bools, ints or floats where they look like one, else kept as strings;
    dashes in keys become underscores. ``what`` names the kind of spec in error messages.
    """
    match = re.fullmatch(r"\s*([\w.:-]+)\s*(?:\[(.*)\])?\s*", spec)
    if match is None:
        raise OptionError(f"{what} {spec!r} is not NAME or NAME[option=value, ...]")
    name, body = match.group(1), match.group(2)
    options = {}
    for item in filter(None, (part.strip() for part in re.split(r"[,;]", body or ""))):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise OptionError(f"{what} {spec!r}: option {item!r} is not option=value")
        options[key.strip().replace("-", "_")] = _literal(value.strip())
    return name, options


def _literal(text: str):
    """An option value as written: None, a bool, an int, a float, else the string itself."""
    lowered = text.lower()
    if lowered in ("none", "null"):
        return None
    if lowered in ("true", "false"):
        return lowered == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def positive_int(value: object, name: str) -> int:
    """``value`` if it is an integer >= 1, else an OptionError naming ``name``: a bool or a float (even 2.0)
    is refused rather than silently read as a number of steps."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= 1:
        return int(value)
    raise OptionError(f"{name} must be a positive integer, got {value!r}")


def positive_ints(value: int | Iterable[int], name: str) -> list[int]:
    """The distinct values of an int or an iterable of ints, sorted, each checked by ``positive_int``.

    A string is refused: iterating ``"16"`` would run 1 and 6 steps.
    """
    if isinstance(value, str | bytes):
        raise OptionError(
            f"{name} takes integers, not a string: got {value!r}; write {name}=[16] or {name}=16"
        )
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return [positive_int(value, name)]
    if not isinstance(value, Iterable):
        raise OptionError(f"{name} must be a positive integer or a list of them, got {value!r}")
    values = sorted({positive_int(v, name) for v in value})
    if not values:
        raise OptionError(f"{name} is empty; give at least one number of steps, e.g. {name}=[16]")
    return values


@dataclass(frozen=True)
class Range:
    """Bounds an option's value must lie within, as ``Annotated`` metadata of its type: where the math needs
    them (a threshold scale of 0, a percentile of 0 or a run of 0 steps would fail far from the option)."""

    low: float | None = None
    high: float | None = None
    open_low: bool = False  # ``low`` itself excluded
    open_high: bool = False

    def __contains__(self, value: float) -> bool:
        above = self.low is None or (value > self.low if self.open_low else value >= self.low)
        below = self.high is None or (value < self.high if self.open_high else value <= self.high)
        return above and below

    def __str__(self) -> str:
        if self.high is None:
            return f"{'>' if self.open_low else '>='} {self.low:g}"
        left, right = "(" if self.open_low else "[", ")" if self.open_high else "]"
        return f"in {left}{self.low:g}, {self.high:g}{right}"


Positive = Annotated[float, Range(0, open_low=True)]
Fraction = Annotated[float, Range(0, 1, open_high=True)]  # of a threshold, e.g. a start potential
Percentile = Annotated[float, Range(0, 100, open_low=True)]
Count = Annotated[int, Range(1)]

_REFUSED = object()
_BOOLS = {"true": True, "false": False, "1": True, "0": False}


def _is_choice(hint: Any) -> bool:
    return isinstance(hint, type) and issubclass(hint, Choice)


def _alternatives(hint: Any) -> list:
    """The types a union admits; a ``str`` next to a ``Choice`` only names one of its members."""
    args = get_args(hint)
    return [a for a in args if not (a is str and any(map(_is_choice, args)))]


def _coerce(hint: Any, value: Any) -> Any:
    """``value`` as an option typed ``hint`` holds it (bools from true/false/1/0, Choices from their names,
    ints widened to floats), else ``_REFUSED``. No other conversion: "no", 1.5 or nan are refused."""
    origin = get_origin(hint)
    if origin is Annotated:
        return _coerce(get_args(hint)[0], value)
    if origin is Literal:
        return value if isinstance(value, str) and value in get_args(hint) else _REFUSED
    if origin in (Union, types.UnionType):
        results = (_coerce(kind, value) for kind in _alternatives(hint))
        return next((r for r in results if r is not _REFUSED), _REFUSED)
    if hint is type(None):
        return None if value is None else _REFUSED
    if _is_choice(hint):
        try:
            return hint(value)
        except (TypeError, ValueError):
            return _REFUSED
    if hint is bool:
        if isinstance(value, bool):
            return value
        return _BOOLS.get(str(value).lower(), _REFUSED) if isinstance(value, int | str) else _REFUSED
    if hint is int:
        return int(value) if isinstance(value, numbers.Integral) and not isinstance(value, bool) else _REFUSED
    if hint is float:
        number = isinstance(value, numbers.Real) and not isinstance(value, bool)
        return float(value) if number and math.isfinite(value) else _REFUSED
    if hint is str:
        return value if isinstance(value, str) else _REFUSED
    return value


def _kind(hint: Any) -> str:
    """What an option typed ``hint`` takes, in words."""
    origin = get_origin(hint)
    if origin is Annotated:
        return _kind(get_args(hint)[0])
    if origin is Literal:
        return "one of " + ", ".join(map(repr, get_args(hint)))
    if origin in (Union, types.UnionType):
        return " or ".join(map(_kind, _alternatives(hint)))
    if _is_choice(hint):
        return " or ".join(repr(m.value) for m in hint)
    words = {bool: "true or false", int: "an integer", float: "a finite number", str: "a string"}
    return words.get(hint, "None" if hint is type(None) else getattr(hint, "__name__", str(hint)))


def _ranges(hint: Any) -> list[Range]:
    if get_origin(hint) is Annotated:
        return [m for m in hint.__metadata__ if isinstance(m, Range)]
    return [r for arg in get_args(hint) for r in _ranges(arg)]


@cache
def _option_types(cls: type) -> dict[str, Any]:
    return get_type_hints(cls, include_extras=True)


def check_fields(instance: Any, what: str) -> None:
    """Check every field of a dataclass ``instance`` against its type hint (and ``Range``), storing what was
    written for it as that type (``"true"`` -> True, ``"soft"`` -> Reset.SOFT); ``what`` names the owner."""
    hints = _option_types(type(instance))
    for field in dataclasses.fields(instance):
        hint, value = hints[field.name], getattr(instance, field.name)
        checked = _coerce(hint, value)
        if checked is _REFUSED:
            raise OptionError(f"{what}: {field.name} is {_kind(hint)}, got {value!r}")
        for limit in _ranges(hint) if checked is not None else ():
            if checked not in limit:
                raise OptionError(f"{what}: {field.name} must be {limit}, got {value!r}")
        setattr(instance, field.name, checked)
