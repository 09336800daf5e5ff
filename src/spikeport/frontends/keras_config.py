"""A Keras model config (Keras 2 or 3 JSON) flattened into an ordered list of layer calls.

Keras writes two config dialects. Keras 2 (tf.keras) lists a layer's inputs as
``"inbound_nodes": [[["conv2d", 0, 0, {}]]]``; Keras 3 writes
``[{"args": [{"class_name": "__keras_tensor__", "config": {"keras_history": ["conv2d", 0, 0]}}], "kwargs": {}}]``.
Both name a tensor by (layer name, node index, tensor index), where the node index counts the calls of
that layer *within the model*. Sequential models are a chain; functional models are a DAG whose layers
may be listed in any order, so calls are resolved as soon as all their inputs exist. Nested models
(a Sequential or functional model used as a layer) are inlined: their layers become calls of the outer
graph, with qualified names (``("block", "dense_1")``) that say where their weights are stored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from spikeport.errors import ConversionError

__all__ = ["CONTAINER_CLASSES", "Call", "LayerSpec", "ModelGraph", "flatten_model_config", "snake_case"]

CONTAINER_CLASSES = ("Sequential", "Functional", "Model")
INPUT_CLASS = "InputLayer"
SHAPE_KEYS = ("batch_shape", "batch_input_shape")

Shape = tuple[int | None, ...]
TensorRef = tuple[str, int, int]  # (layer name, node index, tensor index), as Keras writes it


@dataclass(eq=False)
class LayerSpec:
    """One Keras layer as configured; shared by every call of that layer."""

    class_name: str
    name: str
    qualified: tuple[str, ...]  # enclosing model names + own name: the key of its weights
    config: dict[str, Any]
    weights_path: str  # where Keras 3 stores its variables in model.weights.h5 (``layers/conv2d``)
    module: str | None = None
    registered_name: str | None = None

    @property
    def label(self) -> str:
        return f"layer '{'/'.join(self.qualified)}' ({self.class_name})"

    def is_custom(self) -> bool:
        return _is_custom(self.module, self.registered_name, self.class_name)


@dataclass(eq=False)
class Call:
    """One application of a layer: the tensors it reads and the tensor it writes (by key)."""

    spec: LayerSpec
    inputs: list[str]
    output: str


@dataclass
class ModelGraph:
    """The model as calls in execution order; input calls carry their (channels-last) shapes."""

    name: str
    calls: list[Call] = field(default_factory=list)
    input_keys: list[str] = field(default_factory=list)
    input_shapes: dict[str, Shape] = field(default_factory=dict)
    output_keys: list[str] = field(default_factory=list)

    def consumers(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for call in self.calls:
            for key in call.inputs:
                counts[key] = counts.get(key, 0) + 1
        return counts


def snake_case(class_name: str) -> str:
    """Keras' own rule for the weight-file group of an object: ``BatchNormalization`` -> ``batch_normalization``."""
    name = re.sub(r"\W+", "", class_name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


class _Flattener:
    def __init__(self, source: str):
        self.source = source
        self.graph: ModelGraph | None = None
        self.specs: dict[tuple[str, ...], LayerSpec] = {}

    def fail(self, message: str) -> ConversionError:
        return ConversionError(f"{self.source}: {message}")

    # -- reading one layer entry ---------------------------------------------------------------------
    def spec(self, entry: Any, scope: tuple[str, ...], weights_path: str) -> LayerSpec:
        if not isinstance(entry, dict) or not isinstance(entry.get("class_name"), str):
            raise self.fail("malformed model config: a layer entry has no class_name")
        config = entry.get("config")
        if not isinstance(config, dict):
            config = {}
        name = config.get("name", entry.get("name"))
        if not isinstance(name, str) or not name:
            raise self.fail(f"malformed model config: a {entry['class_name']} layer has no name")
        return LayerSpec(
            class_name=entry["class_name"],
            name=name,
            qualified=(*scope, name),
            config=config,
            weights_path=weights_path,
            module=entry.get("module"),
            registered_name=entry.get("registered_name"),
        )

    def weight_paths(self, entries: list[Any], parent: str, sequential: bool) -> list[str]:
        """Keras 3 names each tracked layer's group after its class, numbered in list order.

        A Sequential's tracked layer list leaves out its InputLayer; a functional model's keeps it.
        """
        used: dict[str, int] = {}
        paths = []
        for entry in entries:
            class_name = entry.get("class_name", "") if isinstance(entry, dict) else ""
            if sequential and class_name == INPUT_CLASS:
                paths.append("")
                continue
            base = snake_case(class_name)
            if base in used:
                used[base] += 1
                base = f"{base}_{used[base]}"
            else:
                used[base] = 0
            paths.append(f"{parent}/layers/{base}" if parent else f"layers/{base}")
        return paths

    def layer_entries(self, config: Any, what: str) -> list[Any]:
        entries = config if isinstance(config, list) else (config or {}).get("layers")
        if not isinstance(entries, list):
            raise self.fail(f"malformed model config: {what} has no list of layers")
        return entries

    # -- models ----------------------------------------------------------------------------------------
    def top_level(self, model: Any) -> ModelGraph:
        if not isinstance(model, dict) or not isinstance(model.get("class_name"), str):
            raise self.fail("malformed model config: no top-level class_name")
        class_name = model["class_name"]
        config = model.get("config")
        name = config.get("name", "model") if isinstance(config, dict) else "model"
        self.graph = ModelGraph(name=str(name))
        if class_name not in CONTAINER_CLASSES or _is_custom_entry(model):
            raise self.fail(
                f"the model class {model.get('registered_name') or class_name!r} is a subclassed or custom "
                "model that cannot be rebuilt from its config; save a keras.Sequential or functional "
                "keras.Model built from standard layers"
            )
        if class_name == "Sequential":
            key = self.sequential_input(model, config)
            self.graph.output_keys = self.sequential(config, [key], scope=(), path="")
        else:
            self.graph.output_keys = self.functional(config, None, scope=(), path="")
        return self.graph

    def sequential_input(self, model: dict[str, Any], config: Any) -> str:
        """A Sequential's input: its InputLayer if listed, else a shape found on its first layer or build info."""
        entries = self.layer_entries(config, "the Sequential model")
        shape: Any = None
        name = "input"
        first = entries[0] if entries and isinstance(entries[0], dict) else {}
        first_config = first.get("config") if isinstance(first.get("config"), dict) else {}
        if first.get("class_name") == INPUT_CLASS:
            name = first_config.get("name", name)
        shape = _batch_shape(first_config)
        if shape is None and isinstance(config, dict):
            shape = config.get("build_input_shape")
        if shape is None:
            shape = (model.get("build_config") or {}).get("input_shape")
        if not isinstance(shape, list | tuple) or len(shape) < 2:
            raise self.fail(
                "the Sequential model has no known input shape; build it with keras.Input(shape=...) "
                "as its first layer before saving"
            )
        return self.add_input(LayerSpec(INPUT_CLASS, name, (name,), {}, ""), _shape_without_batch(shape))

    def add_input(self, spec: LayerSpec, shape: Shape) -> str:
        assert self.graph is not None
        key = f"{'/'.join(spec.qualified)}:input"
        self.graph.calls.append(Call(spec, [], key))
        self.graph.input_keys.append(key)
        self.graph.input_shapes[key] = shape
        return key

    def sequential(self, config: Any, inputs: list[str], scope: tuple[str, ...], path: str) -> list[str]:
        entries = self.layer_entries(config, "a Sequential model")
        paths = self.weight_paths(entries, path, sequential=True)
        current = inputs
        for entry, weights_path in zip(entries, paths, strict=True):
            if isinstance(entry, dict) and entry.get("class_name") == INPUT_CLASS:
                continue
            current = self.apply(entry, current, scope, weights_path, node_index=0)
        return current

    def functional(
        self, config: Any, inputs: list[str] | None, scope: tuple[str, ...], path: str
    ) -> list[str]:
        """Resolve a functional model's calls; ``inputs=None`` makes its InputLayers the model inputs."""
        entries = self.layer_entries(config, "a functional model")
        paths = self.weight_paths(entries, path, sequential=False)
        produced: dict[TensorRef, str] = {}
        input_refs = _refs(config.get("input_layers"))
        output_refs = _refs(config.get("output_layers"))
        if not input_refs or not output_refs:
            raise self.fail("malformed model config: a functional model lists no input or output layers")
        specs: dict[str, LayerSpec] = {}
        pending: list[_PendingCall] = []
        for entry, weights_path in zip(entries, paths, strict=True):
            spec = self.spec(entry, scope, weights_path)
            specs[spec.name] = spec
            nodes = entry.get("inbound_nodes") or []
            if not isinstance(nodes, list):
                raise self.fail(f"malformed model config: {spec.label} has unreadable inbound_nodes")
            for index, node in enumerate(nodes):
                pending.append(_PendingCall(spec.name, entry, weights_path, index, _node_refs(node)))
        if inputs is not None and len(inputs) != len(input_refs):
            raise self.fail(
                f"a nested model in scope '{'/'.join(scope)}' takes {len(input_refs)} inputs but is called with "
                f"{len(inputs)}"
            )
        for position, ref in enumerate(input_refs):
            if ref[0] not in specs:
                raise self.fail(f"malformed model config: input layer '{ref[0]}' is not among the layers")
            spec = specs[ref[0]]
            if inputs is not None:
                produced[ref] = inputs[position]
            elif spec.class_name == INPUT_CLASS:
                shape = _batch_shape(spec.config)
                if shape is None:
                    raise self.fail(f"{spec.label} has no batch_shape; cannot tell the input shape")
                produced[ref] = self.add_input(spec, _shape_without_batch(shape))
            else:
                raise self.fail(f"malformed model config: model input '{ref[0]}' is not an InputLayer")
        while pending:  # the listed order need not be topological: run whatever has its inputs
            ready = [item for item in pending if all(ref in produced for ref in item.refs)]
            if not ready:
                missing = sorted({ref[0] for item in pending for ref in item.refs if ref not in produced})
                raise self.fail(f"malformed model config: layer inputs never produced: {', '.join(missing)}")
            for item in ready:
                inputs_of_call = [produced[ref] for ref in item.refs]
                outputs = self.apply(item.entry, inputs_of_call, scope, item.weights_path, item.index)
                for tensor_index, key in enumerate(outputs):
                    produced[(item.name, item.index, tensor_index)] = key
            done = {id(item) for item in ready}
            pending = [item for item in pending if id(item) not in done]
        missing_outputs = [ref for ref in output_refs if ref not in produced]
        if missing_outputs:
            raise self.fail(
                f"malformed model config: model output '{missing_outputs[0][0]}' is never computed"
            )
        return [produced[ref] for ref in output_refs]

    def apply(
        self, entry: Any, inputs: list[str], scope: tuple[str, ...], weights_path: str, node_index: int
    ) -> list[str]:
        """Append the call(s) of one layer application; a nested model is expanded in place."""
        assert self.graph is not None
        spec = self.spec(entry, scope, weights_path)
        if spec.class_name in CONTAINER_CLASSES and not spec.is_custom():
            inner_scope = spec.qualified
            if spec.class_name == "Sequential":
                return self.sequential(spec.config, inputs, inner_scope, weights_path)
            return self.functional(spec.config, inputs, inner_scope, weights_path)
        key = f"{'/'.join(spec.qualified)}:{node_index}"
        self.graph.calls.append(Call(self.shared(spec), inputs, key))
        return [key]

    def shared(self, spec: LayerSpec) -> LayerSpec:
        """The same LayerSpec object for every call of a layer, so that calls share one module."""
        return self.specs.setdefault(spec.qualified, spec)


class _PendingCall(NamedTuple):
    name: str
    entry: Any
    weights_path: str
    index: int
    refs: list[TensorRef]


def _is_custom(module: Any, registered_name: Any, class_name: str) -> bool:
    """Keras marks user-registered objects with a registered name or a non-keras module."""
    if module is not None and not str(module).startswith("keras"):
        return True
    return registered_name not in (None, class_name)


def _is_custom_entry(entry: dict[str, Any]) -> bool:
    return _is_custom(entry.get("module"), entry.get("registered_name"), entry.get("class_name", ""))


def _batch_shape(config: dict[str, Any]) -> list[Any] | None:
    for key in SHAPE_KEYS:
        if isinstance(config.get(key), list | tuple):
            return list(config[key])
    return None


def _shape_without_batch(shape: list[Any] | tuple[Any, ...]) -> Shape:
    return tuple(None if size is None else int(size) for size in list(shape)[1:])


def _refs(value: Any) -> list[TensorRef]:
    """``input_layers`` / ``output_layers``: ``[[name, node, tensor], ...]`` or one flat ``[name, node, tensor]``."""
    if not isinstance(value, list) or not value:
        return []
    if isinstance(value[0], str):
        value = [value]
    return [(str(item[0]), int(item[1]), int(item[2])) for item in value]


def _node_refs(node: Any) -> list[TensorRef]:
    """The tensors one inbound node reads, in both dialects."""
    if isinstance(node, dict):  # Keras 3
        found = _keras3_tensors(node.get("args", []))
        return found or _keras3_tensors(node.get("kwargs", {}))
    refs = []
    for item in node if isinstance(node, list) else []:  # Keras 2: [name, node, tensor, kwargs]
        if isinstance(item, list) and len(item) >= 3 and isinstance(item[0], str):
            refs.append((item[0], int(item[1]), int(item[2])))
    return refs


def _keras3_tensors(value: Any) -> list[TensorRef]:
    if isinstance(value, dict):
        if value.get("class_name") == "__keras_tensor__":
            history = (value.get("config") or {}).get("keras_history")
            return [(str(history[0]), int(history[1]), int(history[2]))]
        return [ref for item in value.values() for ref in _keras3_tensors(item)]
    if isinstance(value, list | tuple):
        return [ref for item in value for ref in _keras3_tensors(item)]
    return []


def flatten_model_config(model_config: Any, source: str) -> ModelGraph:
    """The calls of a Keras model config (the parsed JSON of ``config.json`` or ``model_config``)."""
    return _Flattener(source).top_level(model_config)
