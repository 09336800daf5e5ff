"""``NAME[key=value, ...]``: one string that names a thing with its options (methods, model factories)."""

from __future__ import annotations

import re


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
        raise ValueError(f"{what} {spec!r} is not NAME or NAME[option=value, ...]")
    name, body = match.group(1), match.group(2)
    options = {}
    for item in filter(None, (part.strip() for part in re.split(r"[,;]", body or ""))):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{what} {spec!r}: option {item!r} is not option=value")
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
