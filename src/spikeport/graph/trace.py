"""Turn a user's model into an fx graph, or say clearly why it cannot be."""

from __future__ import annotations

import copy

import torch
from torch import fx, nn

from spikeport.errors import ConversionError
from spikeport.layers import QCFS, CappedReLU, PaddedMaxPool2d


def check_finite(model: nn.Module) -> None:
    """NaN or inf weights make a silently wrong network; refuse them up front."""
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise ConversionError(
                f"parameter '{name}' contains NaN or inf values; fix or retrain the model before converting"
            )


class _Tracer(fx.Tracer):
    """torch.fx's tracer, with spikeport's own layers kept whole (the converter knows them as one op)."""

    def is_leaf_module(self, module: nn.Module, qualified_name: str) -> bool:
        kept_whole = isinstance(module, PaddedMaxPool2d | QCFS | CappedReLU)
        return kept_whole or super().is_leaf_module(module, qualified_name)


def trace(model: nn.Module) -> fx.GraphModule:
    """Symbolically trace a copy of ``model`` in eval mode (the caller's model is never modified)."""
    if not isinstance(model, nn.Module):
        raise ConversionError(f"expected a torch.nn.Module to convert, got {type(model).__name__}")
    check_finite(model)
    model = copy.deepcopy(model).eval()
    try:
        graph = _Tracer().trace(model)
        traced = fx.GraphModule(model, graph, type(model).__name__)
    except Exception as error:  # fx raises many kinds; all mean the same thing to the user
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ConversionError(
            f"torch.fx cannot trace {type(model).__name__}: {first_line}. Make control flow independent of "
            "tensor values, or export the model with torch.export and pass the .pt2 file"
        ) from None
    # Type annotations mean nothing to conversion, and string ones (``from __future__ import annotations``
    # in the model's file) would make the converted network impossible to save.
    for node in traced.graph.nodes:
        node.type = None
    traced.recompile()
    inputs = [n for n in traced.graph.nodes if n.op == "placeholder"]
    if len(inputs) != 1:
        names = ", ".join(n.name for n in inputs) or "none"
        raise ConversionError(f"the model must take exactly one input tensor, its forward takes: {names}")
    return traced
