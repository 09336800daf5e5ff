"""Conversion methods, registered by the name users pass to ``sp.convert(method=...)``."""

from spikeport.methods.base import Method, RateMethod, make_method, parse_method
from spikeport.methods.baselines import MaxNorm, PercentileNorm
from spikeport.methods.ecc import ECC
from spikeport.methods.fs import FS
from spikeport.methods.rmp import RMP

METHODS: dict[str, type[Method]] = {cls.name: cls for cls in (RMP, ECC, MaxNorm, PercentileNorm, FS)}

__all__ = [
    "ECC",
    "FS",
    "METHODS",
    "RateMethod",
    "RMP",
    "MaxNorm",
    "Method",
    "PercentileNorm",
    "make_method",
    "parse_method",
]
