"""Frontends: ways a model reaches spikeport."""

from spikeport.frontends.dispatch import load_model
from spikeport.frontends.torch_export import load_exported

__all__ = ["load_exported", "load_model"]
