"""spikeport: convert trained ANNs into spiking neural networks and measure exactly what you get.

import spikeport as sp
snn = sp.convert(model, calibration)  # ecc, channel-wise, 4-bit graded spikes; or method="rmp", "calibrated"...
ev = sp.evaluate(snn, data, timesteps=[8, 32, 128], ann=model)
print(ev.to_markdown())
"""

import os as _os
import sys as _sys

# PyTorch's own switch for 2 MiB pages on large CPU tensors, read when it allocates (a user's setting wins).
# This VM gives huge pages only on request; without them the simulator's fresh per-chunk tensors page-fault
# and it lands on a 1.5x slower level in most processes (docs/benchmarks.md, "Simulation speed").
_os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")
# OpenMP threads that spin while waiting for the next parallel region steal a core that another process
# needs: with a busy process on one of two cores a simulation took 1.9x one thread's time, with passive
# waiting 1.04x, and no longer unloaded (bench/loaded_machine.py). OpenMP reads this when torch loads: it
# holds when spikeport is imported first (always for the `spikeport` command); a user's setting wins.
if "torch" not in _sys.modules:
    _os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from spikeport import qcfs
from spikeport._version import __version__
from spikeport.calibration import Statistics, calibrate
from spikeport.coding import Coding, RateCoding, Simulation, TemporalCoding
from spikeport.compare import Comparison, compare
from spikeport.convert import convert
from spikeport.cpu_allocator import keep_freed_memory
from spikeport.errors import (
    CalibrationError,
    ConversionError,
    DataError,
    InputShapeError,
    SaveFormatError,
    SpikeportError,
)
from spikeport.evaluate import evaluate
from spikeport.evaluation import AnalogLayerReport, Evaluation, LayerReport
from spikeport.export.nir import export_nir, import_nir
from spikeport.frontends import load_model
from spikeport.metrics import EnergyModel
from spikeport.network import SpikingNetwork
from spikeport.registry import register_neuron
from spikeport.serialize import load, save

__all__ = [
    "AnalogLayerReport",
    "CalibrationError",
    "Coding",
    "Comparison",
    "ConversionError",
    "DataError",
    "EnergyModel",
    "Evaluation",
    "InputShapeError",
    "LayerReport",
    "RateCoding",
    "SaveFormatError",
    "Simulation",
    "SpikeportError",
    "SpikingNetwork",
    "Statistics",
    "TemporalCoding",
    "__version__",
    "calibrate",
    "compare",
    "convert",
    "evaluate",
    "export_nir",
    "import_nir",
    "keep_freed_memory",
    "load",
    "load_model",
    "models",
    "qcfs",
    "register_neuron",
    "save",
]


def __getattr__(name: str):
    """``sp.models`` (the model builders) loads on first use: most conversions never build a model."""
    if name == "models":
        import importlib

        return importlib.import_module("spikeport.models")
    raise AttributeError(f"module 'spikeport' has no attribute {name!r}")
