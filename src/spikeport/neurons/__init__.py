"""Spiking neuron models: pure dynamics plus the modules that wrap them."""

from spikeport.neurons.dynamics import Reset, if_scan, if_step
from spikeport.neurons.integrate_fire import IFNeuron

__all__ = ["IFNeuron", "Reset", "if_scan", "if_step"]
