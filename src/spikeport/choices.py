"""String-valued options that users pass by name ("soft", "poisson"...)."""

from __future__ import annotations

from enum import Enum

from spikeport.errors import OptionError


class Choice(str, Enum):
    """An enum whose members users may also name as plain strings."""

    @classmethod
    def parse(cls, value: str | Choice) -> Choice:
        try:
            return cls(value)
        except ValueError:
            options = " or ".join(repr(member.value) for member in cls)
            raise OptionError(f"{cls.__name__.lower()} must be {options}, got {value!r}") from None
