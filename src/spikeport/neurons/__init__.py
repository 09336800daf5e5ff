"""Spiking neuron models: pure dynamics plus the modules that wrap them."""

from spikeport.neurons.dynamics import Reset, if_scan, if_step
from spikeport.neurons.events import SpikingLayer
from spikeport.neurons.integrate_fire import CurrentProbe, IFNeuron
from spikeport.neurons.max_pool import SpikingMaxPool, gated_max_pool

__all__ = [
    "CurrentProbe",
    "IFNeuron",
    "Reset",
    "SpikingLayer",
    "SpikingMaxPool",
    "gated_max_pool",
    "if_scan",
    "if_step",
]
