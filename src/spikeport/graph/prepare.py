"""prepare: from a user's model to a canonical, checked graph ready for calibration and conversion."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

from torch import Tensor, fx, nn

from spikeport.errors import ConversionError
from spikeport.fs_codes import FITTED_ACTIVATIONS
from spikeport.graph.canonical import (
    canonicalize_activations,
    canonicalize_analog_ops,
    canonicalize_pools,
    check_supported,
    insert_spike_sites,
    redirect_inplace_users,
    remove_passthrough,
    shapes_to_sizes,
    views_to_reshapes,
)
from spikeport.graph.connectivity import fanouts
from spikeport.graph.fold import fold_batchnorms, fold_batchnorms_forward
from spikeport.graph.ops import Role, role_of
from spikeport.graph.shapes import canonicalize_products, propagate_shapes
from spikeport.graph.trace import trace
from spikeport.metrics import ann_macs_per_image

if TYPE_CHECKING:
    from spikeport.calibration import Statistics


@dataclass
class PreparedModel:
    """A canonical graph of the model: BN folded, dropout gone, every activation and analog op a module of its
    own, a ``SpikeSite`` wherever an analog op's value enters synapses."""

    graph_module: fx.GraphModule
    input_shape: tuple[int, ...]
    notes: list[str] = field(default_factory=list)
    # What calibration saw, when it ran as a phase of its own (``spikeport.calibration.Statistics``): data-based
    # methods read their thresholds from it instead of running the ANN again.
    statistics: Statistics | None = None

    # Synapse counts depend on the graph and its zero weights only, not on thresholds: computed once, on first
    # use (after the method's transform, which may zero weights), however often the network is assembled.

    @cached_property
    def spike_fanouts(self) -> dict[str, Tensor]:
        """Fan-out per element of the input, every activation, max-pool and analog op (``graph.connectivity``)."""
        modules = dict(self.graph_module.named_modules())
        sources = [
            n
            for n in self.graph_module.graph.nodes
            if role_of(n, modules) in (Role.INPUT, Role.ACTIVATION, Role.MAX_POOL, Role.ANALOG)
        ]
        return fanouts(self.graph_module, sources)

    @cached_property
    def ann_macs_per_image(self) -> int:
        return ann_macs_per_image(self.graph_module)

    def nodes_of(self, role: Role) -> list[fx.Node]:
        modules = dict(self.graph_module.named_modules())
        return [n for n in self.graph_module.graph.nodes if role_of(n, modules) is role]

    def activation_nodes(self) -> list[fx.Node]:
        """Activation sites in execution order (each becomes a layer of spiking neurons)."""
        modules = dict(self.graph_module.named_modules())
        return [n for n in self.graph_module.graph.nodes if role_of(n, modules) is Role.ACTIVATION]


def prepare(model: nn.Module, example: Tensor) -> PreparedModel:
    """Trace, canonicalise and check ``model``; ``example`` is a batch of real input (shapes only)."""
    gm = trace(model)
    check_supported(gm)
    redirect_inplace_users(gm)
    notes = remove_passthrough(gm)
    views_to_reshapes(gm)  # `.contiguous()` went with the passthrough ops: a view after a transpose needs it
    shapes_to_sizes(gm)
    canonicalize_activations(gm)
    canonicalize_pools(gm)
    canonicalize_analog_ops(gm)
    folded = fold_batchnorms(gm)
    if folded:
        notes.append(f"folded {folded} BatchNorm layer(s) into the conv/linear layer before them")
    forward, kept = fold_batchnorms_forward(gm)
    if forward:
        notes.append(f"folded {forward} BatchNorm layer(s) into the conv/linear layer after them")
    if kept:
        notes.append(
            f"kept {kept} BatchNorm layer(s) as per-channel affine ops (no unpadded conv/linear follows them)"
        )
    gm.graph.eliminate_dead_code()
    gm.delete_all_unused_submodules()
    gm.graph.lint()
    gm.recompile()
    output = next(n for n in gm.graph.nodes if n.op == "output")
    if not isinstance(output.args[0], fx.Node):
        raise ConversionError("the model must return a single tensor (the class scores), not a tuple or dict")
    canonicalize_products(gm)
    analog = [n for n in gm.graph.nodes if role_of(n, dict(gm.named_modules())) is Role.ANALOG]
    if analog:
        sites = insert_spike_sites(gm)
        notes.append(
            f"{len(analog)} analog op(s) (normalisations, softmax, products of two signals): computed on "
            f"values, counted apart from spikes; {sites} of them feed synapses through signed spikes"
        )
    input_shape = propagate_shapes(gm, example)
    prepared = PreparedModel(gm, input_shape, notes)
    if not prepared.activation_nodes():  # a network of synapses only: nothing would spike
        raise ConversionError(
            "the model has no activation to convert into spiking neurons (and no analog op that feeds "
            f"synapses); spikeport converts ReLU, {', '.join(sorted(set(FITTED_ACTIVATIONS) - {'relu'}))} "
            "(LeakyReLU with slope 0.01 only), normalisations, softmax and products"
        )
    return prepared
