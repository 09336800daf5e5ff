"""Shape propagation and the checks that time folding relies on.

The SNN runs every synaptic op on ``[T*B, ...]``. That is only correct when each op treats dim 0 as an
independent batch: we run the model at two batch sizes and refuse any node whose output does not track it.
"""

from __future__ import annotations

import torch
from torch import Tensor, fx

from spikeport.errors import ConversionError, InputShapeError
from spikeport.graph.canonical import replace_with_module
from spikeport.graph.ops import SCALING_FUNCTIONS, SCALING_METHODS, Role, describe, role_of
from spikeport.layers import AnalogProduct


class _Recorder(fx.Interpreter):
    def __init__(self, gm: fx.GraphModule):
        super().__init__(gm)
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.current: fx.Node | None = None

    def run_node(self, node: fx.Node):
        self.current = node
        result = super().run_node(node)
        if isinstance(result, Tensor):
            self.shapes[node.name] = tuple(result.shape)
        return result


def _run(gm: fx.GraphModule, x: Tensor) -> tuple[_Recorder, Exception | None]:
    """Shapes of every node for input ``x``, or the error the model raised (and at which node)."""
    recorder = _Recorder(gm)
    try:
        with torch.no_grad():
            recorder.run(x)
    except Exception as error:  # any failure inside the user's model is reported, not re-raised
        return recorder, error
    return recorder, None


def _first_line(error: Exception) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


def _batch_error(node: fx.Node, modules: dict, detail: str) -> ConversionError:
    return ConversionError(
        f"node '{node.name}' ({describe(node, modules)}) does not keep dim 0 as the batch ({detail}); spikeport "
        "folds time into the batch, so use x.view(x.size(0), -1) or torch.flatten(x, 1), not fixed batch sizes"
    )


def propagate_shapes(gm: fx.GraphModule, example: Tensor) -> tuple[int, ...]:
    """Store ``node.meta['sample_shape']`` for every tensor node; returns the input's per-sample shape.

    The model runs on ``example`` as given (a failure there means the data does not fit the model) and
    again at another batch size (a failure or a shape that does not follow means a hard-coded batch).
    """
    if example.dim() == 0:
        raise InputShapeError("calibration input is a scalar; expected a batch [N, ...]")
    modules = dict(gm.named_modules())
    batch = example.shape[0]
    reference = _Recorder(gm)
    try:
        with torch.no_grad():
            reference.run(example)
    except Exception as error:
        raise InputShapeError(
            f"the model fails on input of shape {list(example.shape)}: {_first_line(error)}; give calibration "
            "data shaped like the model's training input"
        ) from None
    other = example[:1] if batch > 1 else torch.cat([example, example])
    probe = _Recorder(gm)
    try:
        with torch.no_grad():
            probe.run(other)
    except Exception as error:
        raise _batch_error(
            probe.current, modules, f"it fails for batch {other.shape[0]}: {_first_line(error)}"
        ) from None
    for node in gm.graph.nodes:
        if node.name not in reference.shapes or node.op == "get_attr":  # constants have no batch
            continue
        s1, s2 = reference.shapes[node.name], probe.shapes[node.name]
        if role_of(node, modules) is Role.STRUCTURAL and _batch_moved(s1, s2, batch, other.shape[0]):
            continue  # [3, B, heads, N, d] of a fused q/k/v projection: unbound before any other op
        if len(s1) == 0 or s1[0] != batch or s2[0] != other.shape[0] or s1[1:] != s2[1:]:
            raise _batch_error(
                node, modules, f"shape {list(s1)} for batch {batch}, {list(s2)} for {other.shape[0]}"
            )
        node.meta["sample_shape"] = s1[1:]
    return tuple(example.shape[1:])


def _batch_moved(s1: tuple, s2: tuple, batch: int, other: int) -> bool:
    """Whether exactly one dim other than 0 follows the batch, the others keeping their sizes (data
    movement may move the batch; the ops that compute must see it at dim 0, which they are checked for)."""
    if len(s1) != len(s2) or len(s1) < 2:
        return False
    moved = [d for d in range(len(s1)) if s1[d] != s2[d]]
    return len(moved) == 1 and moved[0] > 0 and s1[moved[0]] == batch and s2[moved[0]] == other


def signal_nodes(gm: fx.GraphModule) -> set[fx.Node]:
    """Nodes whose value depends on the network input (sizes and constants do not count)."""
    modules = dict(gm.named_modules())
    signal: set[fx.Node] = set()
    for node in gm.graph.nodes:
        role = role_of(node, modules)
        if role is Role.INPUT or (
            role is not Role.ATTRIBUTE and any(arg in signal for arg in node.all_input_nodes)
        ):
            signal.add(node)
    return signal


def canonicalize_products(gm: fx.GraphModule) -> int:
    """``a * b`` is linear when one side is a constant; a product of two signals becomes an ``AnalogProduct``.

    A product of rates is not the rate of the product, so the product is an analog op (computed on the
    accumulated inputs under rate coding, on decoded values under temporal coding) and counted as such.
    Dividing by a signal is refused. Returns how many products were found.
    """
    signal = signal_nodes(gm)
    modules = dict(gm.named_modules())
    products = 0
    for node in list(gm.graph.nodes):
        on_signal = any(a in signal for a in node.all_input_nodes)
        if node.op == "call_function" and role_of(node, modules) is Role.ATTRIBUTE and on_signal:
            raise ConversionError(
                f"node '{node.name}' ({describe(node, modules)}) computes on a signal; it converts only on "
                "sizes (such as x.shape[-1] // heads)"
            )
        is_scaling = (node.op == "call_function" and node.target in SCALING_FUNCTIONS) or (
            node.op == "call_method" and node.target in SCALING_METHODS
        )
        if not is_scaling:
            continue
        operands = [a for a in node.args[:2] if isinstance(a, fx.Node) and a in signal]
        divides = node.target == "div" or getattr(node.target, "__name__", "") == "truediv"
        if divides and len(node.args) > 1 and node.args[1] in signal:
            raise ConversionError(
                f"node '{node.name}' divides by a signal ('{node.args[1].name}'); that is not linear and has "
                "no spiking counterpart (divide by constants only)"
            )
        if len(operands) < 2:
            continue
        replacement = replace_with_module(gm, node, AnalogProduct(), f"product_{node.name}", tuple(operands))
        signal.add(replacement)  # (a * b) * c: the product is a signal for the ops after it
        products += 1
    if products:
        gm.recompile()
    return products
