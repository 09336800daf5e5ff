"""The SNN side of conversion: a prepared ANN graph (``spikeport.graph``) becomes a SpikingNetwork.

- ``rate``: integrate-and-fire neurons (or the method's own, through its neuron factory) where the
  activations were, spiking max-pools, fan-outs; ``assemble``.
- ``temporal``: FS neurons, FS max-pools of binary codes, the input coder, the coded depth; ``assemble_fs``.
- ``static_prefix``: the part of the graph an input that is the same at every step needs once per batch.

The modules are imported by name (``spikeport.assembly.rate``): the network imports ``static_prefix``.
"""
