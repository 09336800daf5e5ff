"""Conversion methods, registered by the name users pass to ``sp.convert(method=...)``."""

from spikeport.methods.base import Method, make_method, parse_method
from spikeport.methods.baselines import MaxNorm, PercentileNorm
from spikeport.methods.ecc import ECC
from spikeport.methods.rmp import RMP

METHODS: dict[str, type[Method]] = {cls.name: cls for cls in (RMP, ECC, MaxNorm, PercentileNorm)}

__all__ = ["ECC", "METHODS", "RMP", "MaxNorm", "Method", "PercentileNorm", "make_method", "parse_method"]
