"""Codings: how values travel in time through a spiking network (``base`` says what a coding owns).

``CODINGS`` maps each coding's name (as networks, saved files and evaluations store it) to its class.
"""

from spikeport.coding.base import Coding, Run, Simulation
from spikeport.coding.rate import RateCoding
from spikeport.coding.temporal import TemporalCoding
from spikeport.errors import OptionError

CODINGS: dict[str, type[Coding]] = {cls.name: cls for cls in (RateCoding, TemporalCoding)}


def coding_named(name: str) -> type[Coding]:
    """The coding class of an evaluation or a saved network, by the name it stored."""
    if name not in CODINGS:
        raise OptionError(f"unknown coding {name!r}; codings: {', '.join(CODINGS)}")
    return CODINGS[name]


def coding_from_settings(name: str, settings: dict) -> Coding:
    """A network's coding from what the saved format stored (``Coding.settings``)."""
    return coding_named(name)(**settings)


__all__ = ["CODINGS", "Coding", "RateCoding", "Run", "Simulation", "TemporalCoding", "coding_named"]
