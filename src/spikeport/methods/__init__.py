"""Conversion methods, registered by the name users pass to ``sp.convert(method=...)``."""

from spikeport.methods.base import Method, RateMethod, make_method, parse_method
from spikeport.methods.baselines import MaxNorm, PercentileNorm
from spikeport.methods.calibrated import Calibrated
from spikeport.methods.ecc import ECC
from spikeport.methods.fs import FS
from spikeport.methods.qcfs import QCFSConversion
from spikeport.methods.rmp import RMP

METHODS: dict[str, type[Method]] = {
    cls.name: cls for cls in (RMP, ECC, MaxNorm, PercentileNorm, Calibrated, QCFSConversion, FS)
}

__all__ = [
    "Calibrated",
    "ECC",
    "FS",
    "METHODS",
    "RateMethod",
    "RMP",
    "MaxNorm",
    "Method",
    "PercentileNorm",
    "QCFSConversion",
    "make_method",
    "parse_method",
]
