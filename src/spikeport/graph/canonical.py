"""Rewrite a traced graph into canonical form: one spelling for each op.

After these passes every activation is a ``call_module`` of ``nn.ReLU``, every pooling a pooling module,
and dropout, identities and a final softmax are gone. Later passes then look at module types only.
"""

from __future__ import annotations

import builtins
import copy
import operator

import torch
import torch.nn.functional as F
from torch import fx, nn

from spikeport.errors import ConversionError
from spikeport.graph.ops import (
    ACTIVATION_FUNCTIONS,
    ACTIVATION_METHODS,
    ACTIVATION_MODULES,
    ACTIVATION_REPLACEMENTS,
    MAX_POOL_MODULES,
    Role,
    describe,
    role_of,
    supported_summary,
)
from spikeport.layers import (
    PADDING_MODULES,
    QCFS,
    MatMul,
    PaddedMaxPool2d,
    ScaledDotProductAttention,
    Softmax,
    SpikeSite,
)

POOL_MODULES = {
    F.avg_pool1d: nn.AvgPool1d,
    F.avg_pool2d: nn.AvgPool2d,
    F.adaptive_avg_pool1d: nn.AdaptiveAvgPool1d,
    F.adaptive_avg_pool2d: nn.AdaptiveAvgPool2d,
}
MAX_POOL_FUNCTIONS = {
    F.max_pool1d: nn.MaxPool1d,
    F.max_pool2d: nn.MaxPool2d,
    torch.max_pool1d: nn.MaxPool1d,
    torch.max_pool2d: nn.MaxPool2d,
}
# The functional max-pools' parameters in order (the modules take return_indices before ceil_mode).
MAX_POOL_PARAMETERS = ("kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices")


def modules_of(gm: fx.GraphModule) -> dict[str, nn.Module]:
    return dict(gm.named_modules())


def module_call_counts(gm: fx.GraphModule) -> dict[str, int]:
    """How many call sites each submodule has (a module called twice needs care before it gets state)."""
    calls: dict[str, int] = {}
    for node in gm.graph.nodes:
        if node.op == "call_module":
            calls[node.target] = calls.get(node.target, 0) + 1
    return calls


def check_supported(gm: fx.GraphModule) -> None:
    """Raise on the first op the converter does not know, naming it and what is supported."""
    modules = modules_of(gm)
    for node in gm.graph.nodes:
        if role_of(node, modules) is None:
            raise ConversionError(
                f"node '{node.name}' ({describe(node, modules)}) cannot be converted to spikes yet; "
                f"{supported_summary()}"
            )
        if node.op == "call_function" and node.target is F.pad:
            _check_zero_padding(node)
        if role_of(node, modules) is Role.MAX_POOL:
            _check_max_pool(node, modules)


def _check_max_pool(node: fx.Node, modules: dict[str, nn.Module]) -> None:
    """A max-pool that also returns its indices has no spiking counterpart (the indices are not a signal)."""
    if node.op == "call_module":
        returns_indices = getattr(modules[node.target], "return_indices", False)
    else:
        returns_indices = _max_pool_parameters(node).get("return_indices", False)
    if returns_indices:
        raise ConversionError(
            f"node '{node.name}' ({describe(node, modules)}) returns indices (return_indices=True); only a "
            "max-pool that returns the pooled values converts (used for unpooling, the indices are no signal)"
        )


def _max_pool_parameters(node: fx.Node) -> dict:
    parameters = dict(zip(MAX_POOL_PARAMETERS, node.args[1:], strict=False)) | dict(node.kwargs)
    if parameters.get("stride") in ([], ()):  # torch.max_pool2d's default: the kernel size
        parameters["stride"] = None
    return parameters


def _check_zero_padding(node: fx.Node) -> None:
    """F.pad with zeros (an absent spike) or copies of the border (reflect, replicate, circular: spike
    trains copied) is exact; a non-zero constant is a current no neuron sends."""
    mode = node.kwargs.get("mode", node.args[2] if len(node.args) > 2 else "constant")
    value = node.kwargs.get("value", node.args[3] if len(node.args) > 3 else None)
    if mode not in PADDING_MODULES or (mode == "constant" and value not in (None, 0, 0.0)):
        raise ConversionError(
            f"node '{node.name}' pads with mode={mode!r}, value={value!r}; padding with zeros or copies "
            "(mode reflect, replicate, circular) converts exactly, a non-zero constant does not"
        )


def _is_inplace(node: fx.Node, modules: dict[str, nn.Module]) -> bool:
    if node.op == "call_module":
        return bool(getattr(modules[node.target], "inplace", False))
    if node.op == "call_method":
        return str(node.target).endswith("_")
    if node.op == "call_function":
        return bool(node.kwargs.get("inplace", False)) or getattr(node.target, "__name__", "").endswith("_")
    return False


def redirect_inplace_users(gm: fx.GraphModule) -> None:
    """Make in-place ops explicit: later readers of a mutated tensor read the op's result instead.

    ``y = x.relu_(); z = x + y`` reads the *mutated* x in eager mode; once the op becomes out-of-place the
    graph must say so, or the converted network would silently differ from the model.
    """
    modules = modules_of(gm)
    order = {node: i for i, node in enumerate(gm.graph.nodes)}
    for node in gm.graph.nodes:
        if not _is_inplace(node, modules) or not node.args or not isinstance(node.args[0], fx.Node):
            continue
        mutated = node.args[0]
        for user in list(mutated.users):
            if user is not node and order[user] > order[node]:
                user.replace_input_with(mutated, node)


def replace_with_module(
    gm: fx.GraphModule, node: fx.Node, module: nn.Module, stem: str, inputs: tuple | None = None
) -> fx.Node:
    """``node`` becomes a call of ``module`` (a fresh submodule named after ``stem``) on ``inputs`` (default:
    the node's first argument); returns the new node."""
    name = fresh_name(gm, stem)
    gm.add_submodule(name, module)
    with gm.graph.inserting_before(node):
        replacement = gm.graph.call_module(name, (node.args[0],) if inputs is None else inputs)
    node.replace_all_uses_with(replacement)
    gm.graph.erase_node(node)
    return replacement


def insert_after(gm: fx.GraphModule, node: fx.Node, module: nn.Module, stem: str) -> fx.Node:
    """A call of ``module`` (a fresh submodule named after ``stem``) on ``node``'s value, which every other
    reader of ``node`` now reads instead; returns the new node."""
    name = fresh_name(gm, stem)
    gm.add_submodule(name, module)
    with gm.graph.inserting_after(node):
        after = gm.graph.call_module(name, (node,))
    node.replace_all_uses_with(after, delete_user_cb=lambda user: user is not after)
    return after


def canonicalize_activations(gm: fx.GraphModule) -> None:
    """Every activation spelling (module, ``F.relu``, ``torch.sigmoid``, ``.tanh()``, in-place) becomes a
    module of its own (``nn.ReLU``, ``nn.SiLU``, ``nn.Sigmoid``...), without ``inplace``.

    A module called once keeps its name (so layers are named as in the user's model); functional calls and
    modules shared by several call sites get fresh ``relu``, ``silu``... modules.
    """
    modules = modules_of(gm)
    calls = module_call_counts(gm)
    for node in list(gm.graph.nodes):
        module = modules.get(node.target) if node.op == "call_module" else None
        if type(module) in ACTIVATION_REPLACEMENTS:  # ReLU6, Hardtanh: the activation they compute
            replace_with_module(gm, node, ACTIVATION_REPLACEMENTS[type(module)](module), "relu")
            continue
        if isinstance(module, ACTIVATION_MODULES):
            fresh = copy.deepcopy(module)
            if hasattr(fresh, "inplace"):
                fresh.inplace = False
            if calls[node.target] == 1:
                gm.set_submodule(node.target, fresh)
            else:
                replace_with_module(gm, node, fresh, type(module).__name__.lower())
            continue
        if node.op == "call_function" and node.target in ACTIVATION_FUNCTIONS:
            fresh = ACTIVATION_FUNCTIONS[node.target](node)
        elif node.op == "call_method" and node.target in ACTIVATION_METHODS:
            fresh = ACTIVATION_METHODS[node.target](node)
        else:
            continue
        replace_with_module(gm, node, fresh, type(fresh).__name__.lower())


def views_to_reshapes(gm: fx.GraphModule) -> None:
    """``x.view(...)`` becomes ``x.reshape(...)``: the same values, but it also takes a tensor stored in
    another memory order (a simulation's channels-last activations), where ``view`` raises."""
    for node in gm.graph.nodes:
        if node.op == "call_method" and node.target == "view":
            node.target = "reshape"
    gm.recompile()


def canonicalize_pools(gm: fx.GraphModule) -> None:
    """Functional pools become modules, and every max-pool call site gets a module of its own.

    Then fan-out and export see one kind of pooling node, and each spiking max-pool (which has state)
    serves exactly one place in the graph, even when the model calls one ``nn.MaxPool2d`` twice.
    """
    calls = module_call_counts(gm)
    for node in list(gm.graph.nodes):
        if node.op == "call_module":
            module = gm.get_submodule(node.target)
            if isinstance(module, MAX_POOL_MODULES) and calls[node.target] > 1:
                replace_with_module(gm, node, copy.deepcopy(module), "max_pool")
            continue
        if node.op != "call_function" or node.target not in POOL_MODULES | MAX_POOL_FUNCTIONS:
            continue
        is_max = node.target in MAX_POOL_FUNCTIONS
        parameters = _max_pool_parameters(node) if is_max else {}
        params = (*node.args[1:], *node.kwargs.values())
        if any(isinstance(p, fx.Node) for p in params):
            raise ConversionError(
                f"node '{node.name}' ({node.target.__name__}) takes its pooling size from a tensor; "
                "use constant sizes or an nn pooling module"
            )
        if is_max:
            module = MAX_POOL_FUNCTIONS[node.target](**parameters)
        else:
            module = POOL_MODULES[node.target](*node.args[1:], **node.kwargs)
        replace_with_module(gm, node, module, "max_pool" if is_max else "pool")


def max_pools_to_average(gm: fx.GraphModule) -> int:
    """Replace each max-pool module by an average pool over the same windows; returns how many.

    Padding is left out of each average (``count_include_pad=False``), as max-pooling ignores it.
    """
    replaced = 0
    for name, module in list(gm.named_modules()):
        if isinstance(module, PaddedMaxPool2d):
            raise ConversionError(
                f"max_to_avg: max-pool '{name}' pads unevenly ({module.padding}, TensorFlow's 'same'); no "
                "average pool has those windows, so convert it as a spiking max-pool (max_to_avg=False)"
            )
        if not isinstance(module, nn.MaxPool1d | nn.MaxPool2d):
            continue
        if any(d != 1 for d in _tuple(module.dilation)):
            raise ConversionError(
                f"max_to_avg: max-pool '{name}' is dilated (dilation={module.dilation}); average pools "
                "have no dilation, so convert it as a spiking max-pool (max_to_avg=False)"
            )
        average = nn.AvgPool1d if isinstance(module, nn.MaxPool1d) else nn.AvgPool2d
        replacement = average(
            module.kernel_size, module.stride, module.padding, module.ceil_mode, count_include_pad=False
        )
        gm.set_submodule(name, replacement)
        replaced += 1
    if replaced:
        gm.recompile()
    return replaced


def max_pools_before_activations(gm: fx.GraphModule) -> int:
    """Turn activation -> max-pool into max-pool -> activation where the pool is the activation's only reader.

    Exact for ReLU and QCFS: a max commutes with any non-decreasing function, padding included (max-pools pad
    with -inf). In the SNN the spiking max-pool then takes the max of the accumulated input currents, the
    ANN's own pre-activation max at every step, instead of gating spike trains that need many steps to
    settle; and the pooled layer has a quarter of the neurons (2x2 pools). Returns how many were swapped.
    """
    modules = modules_of(gm)
    swapped = 0
    for pool in list(gm.graph.nodes):
        if pool.op != "call_module" or role_of(pool, modules) is not Role.MAX_POOL:
            continue
        activation = pool.args[0]
        if not (
            isinstance(activation, fx.Node)
            and activation.op == "call_module"
            and isinstance(modules[activation.target], nn.ReLU | QCFS)
            and len(activation.users) == 1
        ):
            continue
        source = activation.args[0]
        pool.replace_all_uses_with(activation)
        pool.replace_input_with(activation, source)
        activation.replace_input_with(source, pool)
        pool.append(activation)  # the activation now runs after the pool
        if "sample_shape" in pool.meta:
            activation.meta["sample_shape"] = pool.meta["sample_shape"]
        swapped += 1
    if swapped:
        gm.graph.lint()
        gm.recompile()
    return swapped


def _tuple(value) -> tuple:
    return tuple(value) if isinstance(value, tuple | list) else (value,)


def remove_passthrough(gm: fx.GraphModule) -> list[str]:
    """Drop dropout, identities and a softmax that ends the network; returns notes for the user.

    A softmax inside the network (attention) stays, as a ``Softmax`` module: an analog op.
    """
    notes: list[str] = []
    modules = modules_of(gm)
    output = next(n for n in gm.graph.nodes if n.op == "output")
    for node in list(gm.graph.nodes):
        role = role_of(node, modules)
        if role is Role.REMOVE:
            node.replace_all_uses_with(node.args[0])
            gm.graph.erase_node(node)
        elif role is Role.READOUT_SOFTMAX:
            if list(node.users) != [output]:
                _keep_inner_softmax(gm, node, modules)
                continue
            node.replace_all_uses_with(node.args[0])
            gm.graph.erase_node(node)
            notes.append(f"dropped the final softmax '{node.name}': the read-out's argmax is unchanged")
    return notes


def _keep_inner_softmax(gm: fx.GraphModule, node: fx.Node, modules: dict[str, nn.Module]) -> None:
    """A softmax that does not end the network becomes a ``Softmax`` module (log-softmax has no use there)."""
    module = modules.get(node.target) if node.op == "call_module" else None
    is_log = isinstance(module, nn.LogSoftmax) or getattr(node.target, "__name__", node.target) in (
        "log_softmax",
    )
    if is_log:
        raise ConversionError(
            f"node '{node.name}' ({describe(node, modules)}) is a log-softmax inside the network; only a "
            "log-softmax that produces the output converts (it is dropped: the argmax is unchanged)"
        )
    if module is not None:
        dim = module.dim
    else:
        dim = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else None)
    if not isinstance(dim, int):
        raise ConversionError(
            f"node '{node.name}' ({describe(node, modules)}) is a softmax without a constant dim; name the "
            "dimension (softmax(x, dim=-1))"
        )
    replace_with_module(gm, node, Softmax(dim), "softmax")


def shapes_to_sizes(gm: fx.GraphModule) -> None:
    """``x.shape`` becomes ``x.size()``: the same sizes, in a spelling the saved format knows."""
    for node in list(gm.graph.nodes):
        if node.op != "call_function" or node.target is not builtins.getattr:
            continue
        if node.args[1:] != ("shape",):
            raise ConversionError(
                f"node '{node.name}' reads the attribute {node.args[1]!r} of a tensor; only x.shape converts"
            )
        with gm.graph.inserting_before(node):
            size = gm.graph.call_method("size", (node.args[0],))
        node.replace_all_uses_with(size)
        gm.graph.erase_node(node)
    gm.recompile()


def _constant(gm: fx.GraphModule, value, node: fx.Node, what: str):
    """The tensor a ``get_attr`` argument names (None stays None); a value computed from data is refused."""
    if value is None or not isinstance(value, fx.Node):
        return value
    if value.op != "get_attr":
        raise ConversionError(
            f"node '{node.name}' takes its {what} from a computed value ('{value.name}'); only parameters of "
            "the model convert there"
        )
    return _attribute(gm, value.target)


def _attribute(gm: fx.GraphModule, target: str):
    owner, _, name = target.rpartition(".")
    return getattr(gm.get_submodule(owner) if owner else gm, name)


def _argument(node: fx.Node, index: int, name: str, default=None):
    return node.kwargs.get(name, node.args[index] if len(node.args) > index else default)


def _normalized_shape(node: fx.Node, weight) -> tuple[int, ...]:
    """The normalised shape as numbers: given, or read off the weight when the call takes it from a shape
    (``F.layer_norm(x, self.weight.shape, self.weight, ...)``, as nanoGPT writes it)."""
    shape = _argument(node, 1, "normalized_shape")
    parts = shape if isinstance(shape, list | tuple) else [shape]
    if not any(isinstance(part, fx.Node) for part in parts):
        return tuple(parts)
    if weight is None:
        raise ConversionError(
            f"node '{node.name}' ({node.target.__name__}) takes its normalized_shape from a tensor's shape and "
            "has no weight to read it from; give the sizes as numbers"
        )
    return tuple(weight.shape)


def _layer_norm(gm: fx.GraphModule, node: fx.Node) -> nn.Module:
    weight = _constant(gm, _argument(node, 2, "weight"), node, "weight")
    shape = _normalized_shape(node, weight)
    bias = _constant(gm, _argument(node, 3, "bias"), node, "bias")
    eps = _argument(node, 4, "eps", 1e-5)
    module = nn.LayerNorm(shape, eps, elementwise_affine=weight is not None, bias=bias is not None)
    with torch.no_grad():
        if weight is not None:
            module.weight.copy_(weight)
        if bias is not None:
            module.bias.copy_(bias)
    return module


def _rms_norm(gm: fx.GraphModule, node: fx.Node) -> nn.Module:
    weight = _constant(gm, _argument(node, 2, "weight"), node, "weight")
    shape = _normalized_shape(node, weight)
    module = nn.RMSNorm(shape, _argument(node, 3, "eps"), elementwise_affine=weight is not None)
    if weight is not None:
        with torch.no_grad():
            module.weight.copy_(weight)
    return module


def _local_response_norm(gm: fx.GraphModule, node: fx.Node) -> nn.Module:
    return nn.LocalResponseNorm(
        _argument(node, 1, "size"),
        _argument(node, 2, "alpha", 1e-4),
        _argument(node, 3, "beta", 0.75),
        _argument(node, 4, "k", 1.0),
    )


def _attention(gm: fx.GraphModule, node: fx.Node) -> nn.Module:
    mask = _argument(node, 3, "attn_mask")
    if mask is not None:
        raise ConversionError(
            f"node '{node.name}' (function scaled_dot_product_attention) takes an attention mask; masks are "
            "not converted (use is_causal=True for a causal mask, or no mask)"
        )
    if _argument(node, 7, "enable_gqa", False):
        raise ConversionError(
            f"node '{node.name}' (function scaled_dot_product_attention) uses grouped-query attention "
            "(enable_gqa=True); repeat the keys and values to the number of query heads instead"
        )
    scale = _argument(node, 6, "scale")
    if isinstance(scale, fx.Node):
        raise ConversionError(
            f"node '{node.name}' (function scaled_dot_product_attention) takes its scale from a tensor; "
            "give a number"
        )
    return ScaledDotProductAttention(bool(_argument(node, 5, "is_causal", False)), scale)


# Functional analog ops and the module each becomes, built from the call (parameters copied in).
ANALOG_FUNCTIONS = {
    F.layer_norm: _layer_norm,
    F.rms_norm: _rms_norm,
    F.local_response_norm: _local_response_norm,
    F.scaled_dot_product_attention: _attention,
}
MATMULS = {torch.matmul, torch.bmm, operator.matmul, "matmul", "bmm"}


def canonicalize_analog_ops(gm: fx.GraphModule) -> int:
    """Every analog op becomes a module of its own that takes only signals: functional layer/RMS/local
    response norms and attention take their parameters along, ``a @ b`` becomes ``MatMul``. Returns how
    many analog ops the graph has (products of two elementwise signals come later, once signals are known).
    """
    modules = modules_of(gm)
    calls = module_call_counts(gm)
    count = 0
    for node in list(gm.graph.nodes):
        if role_of(node, modules) is not Role.ANALOG:
            continue
        count += 1
        if node.op == "call_module":
            if calls[node.target] > 1:  # an analog op keeps state in a simulation: one module per call site
                replace_with_module(gm, node, copy.deepcopy(modules[node.target]), "analog")
            continue
        if node.target in MATMULS:
            operands = node.args[:2]
            if not all(isinstance(a, fx.Node) and a.op != "get_attr" for a in operands):
                raise ConversionError(
                    f"node '{node.name}' ({describe(node, modules)}) multiplies by a constant matrix; use "
                    "nn.Linear for a weight (spikeport counts its synapses)"
                )
            module, inputs = MatMul(), tuple(operands)
        else:
            module = ANALOG_FUNCTIONS[node.target](gm, node)
            inputs = (
                (node.args[0],) if not isinstance(module, ScaledDotProductAttention) else tuple(node.args[:3])
            )
        replace_with_module(gm, node, module, type(module).__name__.lower(), inputs)
    gm.graph.eliminate_dead_code()
    gm.recompile()
    return count


def fresh_name(gm: fx.GraphModule, stem: str) -> str:
    """``stem``, or ``stem_1``, ``stem_2``...: a top-level module name the graph does not use yet."""
    existing = modules_of(gm)
    name, index = stem, 1
    while name in existing:
        name, index = f"{stem}_{index}", index + 1
    return name


SYNAPTIC_ROLES = (Role.WEIGHTED, Role.POOL, Role.AFFINE)


def _reaches_synapses(node: fx.Node, modules: dict[str, nn.Module]) -> bool:
    """Whether ``node``'s value reaches a synaptic layer through linear glue, data movement and max-pools."""
    stack, seen = list(node.users), set()
    while stack:
        user = stack.pop()
        if user in seen:
            continue
        seen.add(user)
        role = role_of(user, modules)
        if role in SYNAPTIC_ROLES:
            return True
        if role in (Role.LINEAR, Role.STRUCTURAL, Role.MAX_POOL):  # a pool passes spikes on
            stack.extend(user.users)
    return False


def insert_spike_sites(gm: fx.GraphModule) -> int:
    """Put a ``SpikeSite`` after every analog op whose value feeds synapses; returns how many.

    Synapses are what spikes drive: there, and only there, the analog op's output is carried by spikes.
    Between analog ops (scores into a softmax) and into neurons (which integrate any current) values
    travel as they are: one analog op after another is still exact on accumulated inputs.
    """
    modules = modules_of(gm)
    sites = 0
    for node in list(gm.graph.nodes):
        if role_of(node, modules) is not Role.ANALOG or not _reaches_synapses(node, modules):
            continue
        insert_after(gm, node, SpikeSite(), f"{node.name}_spikes")
        sites += 1
    if sites:
        gm.recompile()
    return sites
