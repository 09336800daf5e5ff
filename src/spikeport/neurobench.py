"""A converted network under NeuroBench's ``Benchmark`` (the optional ``neurobench`` extra).

NeuroBench (``pip install neurobench``) measures a model through hooks: it counts synaptic operations at
the *input* of each ``nn.Linear`` / ``nn.Conv*`` layer (non-zero inputs times non-zero weights, filed as
accumulates when every input is 0 or ±1 and as multiply-accumulates otherwise) and activation sparsity at
the *output* of each activation layer. A spikeport network folds time into the batch and its spikes carry
their threshold (ANN units), so NeuroBench's hooks on the network itself would file every event-driven
operation as a multiply-accumulate. ``NeuroBenchNetwork`` shows NeuroBench what a chip would see instead:

- each synaptic layer is shown to NeuroBench through a copy that receives, at every call, the events that
  reached the layer: where the layer is driven by binary spikes (rate coding, no graded spikes, no analog
  ops), the sign of its input (1 where a spike arrives, -1 for a negative one); elsewhere (the analog input
  layer, graded spikes, FS codes, analog ops) its input as it is, which NeuroBench counts as MACs;
- the activation layers are the network's neuron layers, whose outputs are its spikes.

How NeuroBench's counts differ from ``sp.evaluate``'s, and why, is in docs/results.md.
"""

from __future__ import annotations

import copy
from functools import partial

import torch
from torch import Tensor, nn

from spikeport.assembly.static_prefix import static_prefix
from spikeport.coding import RateCoding
from spikeport.network import SpikingNetwork
from spikeport.options import positive_int

try:
    from neurobench.blocks.layer import STATELESS_LAYERS
    from neurobench.models import NeuroBenchModel
except ImportError as error:  # an optional extra: say how to get it
    raise ImportError(
        "spikeport.neurobench needs the neurobench package: pip install 'spikeport[neurobench]'"
    ) from error

OUTPUTS = ("classes", "readout")


def binary_spikes(snn: SpikingNetwork) -> bool:
    """Whether every value after the neurons is made of binary spikes (so a non-zero input is an event)."""
    layers = snn.spiking_layers().values()
    return (
        isinstance(snn.coding, RateCoding)
        and not snn.analog_layers()
        and all(layer.levels == 1 for layer in layers)
    )


class NeuroBenchNetwork(NeuroBenchModel):
    """A ``SpikingNetwork`` run for ``timesteps`` steps as a NeuroBench model.

    Called on a batch ``[B, ...]`` it returns the predicted classes after ``timesteps`` steps
    (``output="classes"``, what NeuroBench's ``ClassificationAccuracy`` compares with the labels) or the
    read-out ``[B, classes]`` (``output="readout"``). Pass it to ``neurobench.benchmarks.Benchmark``
    as any NeuroBench model; a batch is run whole, so choose the data loader's batch size as for
    ``sp.evaluate``.
    """

    def __init__(self, snn: SpikingNetwork, timesteps: int, output: str = "classes"):
        super().__init__()
        if not isinstance(snn, SpikingNetwork):
            raise TypeError(
                f"NeuroBenchNetwork takes a converted network (sp.convert or sp.load), got {type(snn).__name__}"
            )
        if output not in OUTPUTS:
            raise ValueError(f"output must be one of {', '.join(OUTPUTS)}, got {output!r}")
        self.snn, self.output = snn, output
        self.timesteps = positive_int(timesteps, "timesteps")
        snn.coding.check_steps(snn, [self.timesteps])
        gm = snn.graph_module
        modules = dict(gm.named_modules())
        analog = static_prefix(gm) or set()
        spikes_only = binary_spikes(snn)
        # module path -> (the copy NeuroBench hooks, whether it is shown events rather than values)
        self.synaptic: dict[str, tuple[nn.Module, bool]] = {}
        for node in gm.graph.nodes:
            module = modules.get(node.target) if node.op == "call_module" else None
            # the layers whose synaptic operations NeuroBench counts
            if isinstance(module, STATELESS_LAYERS) and str(node.target) not in self.synaptic:
                shown = copy.deepcopy(module).requires_grad_(False)
                self.synaptic[str(node.target)] = (shown, spikes_only and node not in analog)

    def __net__(self) -> nn.Module:
        """The network itself: NeuroBench's static metrics (footprint, parameters) read its weights."""
        return self.snn

    def connection_layers(self) -> list[nn.Module]:
        """The copies of the synaptic layers that NeuroBench hooks (see the module docstring)."""
        return [shown for shown, _ in self.synaptic.values()]

    def activation_layers(self) -> list[dict]:
        """The neuron layers, by module path (max-pools pass events on and are not neurons)."""
        return [
            {"layer_name": name, "layer": layer}
            for name, layer in self.snn.spiking_layers().items()
            if layer.is_neuron
        ]

    @torch.no_grad()
    def __call__(self, batch: Tensor) -> Tensor:
        gm = self.snn.graph_module
        handles = [
            gm.get_submodule(path).register_forward_pre_hook(partial(_show, shown, events))
            for path, (shown, events) in self.synaptic.items()
        ]
        try:
            readout = self.snn(batch.to(self.snn.device), self.timesteps)[-1]
        finally:
            for handle in handles:
                handle.remove()
        return readout.argmax(-1) if self.output == "classes" else readout


def _show(shown: nn.Module, events: bool, _module: nn.Module, inputs: tuple) -> None:
    """Pass what reached a synaptic layer to its copy, where NeuroBench's hook sees it."""
    x = inputs[0]
    shown.to(x.device)(x.sign() if events else x.detach().clone())
