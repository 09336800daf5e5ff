"""Keras models (``.keras`` and legacy ``.h5``) read with h5py alone and rebuilt as a torch.fx.GraphModule.

No TensorFlow or Keras is imported: the architecture comes from the saved JSON config, the weights from
HDF5, and every layer becomes a standard torch module (see ``keras_config`` and ``keras_layers``).

Layout: the returned module takes **NCHW** input, the PyTorch convention. Keras image models take NHWC,
so feed ``x_nhwc.permute(0, 3, 1, 2)``; image-shaped outputs come back NCHW too. Any batch size works.
A final softmax is dropped (the module returns logits, the argmax is unchanged); such changes are listed
in the module's ``import_notes`` and reported with ``warnings.warn``.

File formats:

* ``.keras`` (Keras 3): a zip holding ``config.json``, ``metadata.json`` and ``model.weights.h5``. The
  weights file keeps each layer's variables as datasets ``0, 1, ...`` of a ``vars`` group, at a path
  named after the layer *class* and list position (``layers/conv2d_1/vars``, nested models as
  ``layers/sequential/layers/dense/vars``); recent versions also store the layer's own name as the
  ``name`` attribute of that ``vars`` group. Layers are matched by that name first, then by the path.
* ``.h5`` / ``.hdf5`` (legacy, Keras 2 ``model.save`` and Keras 3 ``model.save("x.h5")``): root attribute
  ``model_config`` (JSON) and group ``model_weights/<layer>`` whose attribute ``weight_names`` lists the
  datasets in order (``conv2d/kernel:0`` in Keras 2, ``sequential/conv2d/kernel`` in Keras 3).
"""

from __future__ import annotations

import io
import json
import warnings
import zipfile
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
from torch import fx

from spikeport.errors import ConversionError
from spikeport.frontends.keras_config import LayerSpec, flatten_model_config
from spikeport.frontends.keras_layers import KERAS_LAYERS, build_graph_module

__all__ = ["KERAS_LAYERS", "KerasWeights", "load_keras"]

ZIP_SIGNATURE = b"PK\x03\x04"
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
HDF5_SIGNATURE_OFFSETS = (0, 512, 1024, 2048)  # HDF5 allows a user block before the superblock
CONFIG_MEMBER = "config.json"
WEIGHTS_MEMBER = "model.weights.h5"


class KerasWeights:
    """Weight arrays of every layer, found by qualified layer name or (Keras 3) by storage path."""

    def __init__(self) -> None:
        self.by_name: dict[tuple[str, ...], list[np.ndarray]] = {}
        self.by_path: dict[str, list[np.ndarray]] = {}

    def __call__(self, spec: LayerSpec) -> list[np.ndarray] | None:
        if spec.qualified in self.by_name:
            return self.by_name[spec.qualified]
        if spec.weights_path in self.by_path:
            return self.by_path[spec.weights_path]
        # Nesting can be recorded differently (a Keras 2 nested model keeps all its weights in one group):
        # accept a unique entry with the same outermost and innermost names, then a unique same name.
        same_name = [key for key in self.by_name if key[-1] == spec.name]
        same_scope = [key for key in same_name if key[0] == spec.qualified[0]]
        for candidates in (same_scope, same_name):
            if len(candidates) == 1:
                return self.by_name[candidates[0]]
        return None


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes | np.bytes_) else str(value)


def _import_h5py() -> ModuleType:
    try:
        import h5py
    except ImportError:
        raise ConversionError("reading Keras models needs h5py: pip install spikeport[keras]") from None
    return h5py


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0]}" if text else type(error).__name__


def _parse_json(text: Any, source: str, what: str) -> Any:
    try:
        return json.loads(_text(text))
    except (ValueError, UnicodeDecodeError) as error:
        raise ConversionError(f"{source}: {what} is not valid JSON ({_first_line(error)})") from None


def _read_vars_groups(weights_file: Any) -> KerasWeights:
    """Keras 3 ``model.weights.h5``: every ``.../vars`` group, by its ``name`` attribute chain and by path."""
    weights = KerasWeights()
    groups: dict[str, Any] = {}

    def collect(path: str, item: Any) -> None:  # visititems stops at the first non-None return
        if path.endswith("vars"):
            groups[path] = item

    weights_file.visititems(collect)
    names: dict[str, str] = {}  # owner path -> layer name
    for path, group in groups.items():
        if not hasattr(group, "keys") or (path != "vars" and not path.endswith("/vars")):
            continue
        owner = path[: -len("/vars")] if path != "vars" else ""
        arrays = [np.asarray(group[key]) for key in sorted(group.keys(), key=_numeric_first)]
        weights.by_path[owner] = arrays
        if "name" in group.attrs:
            names[owner] = _text(group.attrs["name"])
    for owner, name in names.items():
        if not owner:
            continue  # the model's own variables (none for Sequential/functional models)
        parts = owner.split("/")
        ancestors = ["/".join(parts[:i]) for i in range(1, len(parts))]
        scope = tuple(names[a] for a in ancestors if a in names)
        weights.by_name[(*scope, name)] = weights.by_path[owner]
    return weights


def _numeric_first(key: str) -> tuple[int, int | str]:
    return (0, int(key)) if key.isdigit() else (1, key)


def _read_zip(path: Path, h5py: ModuleType) -> tuple[Any, KerasWeights]:
    source = str(path)
    try:
        with zipfile.ZipFile(path) as archive:
            members = set(archive.namelist())
            if CONFIG_MEMBER not in members:
                raise ConversionError(
                    f"{source}: a zip file without {CONFIG_MEMBER}; not a Keras 3 .keras model"
                )
            if WEIGHTS_MEMBER not in members:
                found = ", ".join(sorted(m for m in members if "weights" in m)) or "none"
                raise ConversionError(
                    f"{source}: no {WEIGHTS_MEMBER} in the archive (weight files found: {found}); sharded or npz "
                    "weight stores are not supported, save with model.save('model.keras')"
                )
            config_bytes = archive.read(CONFIG_MEMBER)
            weights_bytes = archive.read(WEIGHTS_MEMBER)
    except ConversionError:
        raise
    except Exception as error:  # zipfile raises many kinds on damaged archives; all mean the same
        raise ConversionError(
            f"{source}: cannot read the .keras archive ({_first_line(error)}); the file is truncated or corrupt"
        ) from None
    config = _parse_json(config_bytes, source, CONFIG_MEMBER)
    try:
        with h5py.File(io.BytesIO(weights_bytes), "r") as weights_file:
            weights = _read_vars_groups(weights_file)
    except Exception as error:
        raise ConversionError(
            f"{source}: cannot read {WEIGHTS_MEMBER} inside the archive ({_first_line(error)}); the file is "
            "truncated or corrupt"
        ) from None
    return config, weights


def _read_legacy_h5(path: Path, h5py: ModuleType) -> tuple[Any, KerasWeights]:
    source = str(path)
    try:
        with h5py.File(path, "r") as h5:
            if "model_config" not in h5.attrs:
                if "layer_names" in h5.attrs or "layers" in h5 or "vars" in h5:
                    raise ConversionError(
                        f"{source}: holds only weights (save_weights), no model architecture; save the whole "
                        "model with model.save('model.keras') or model.save('model.h5')"
                    )
                raise ConversionError(
                    f"{source}: an HDF5 file without a Keras model_config; not a Keras model"
                )
            config_text = h5.attrs["model_config"]
            root = h5.get("model_weights", h5)  # Keras 2 model.save keeps weights there
            weights = KerasWeights()
            layer_names = [_text(n) for n in root.attrs.get("layer_names", list(root.keys()))]
            for layer_name in layer_names:
                if layer_name not in root:
                    continue
                group = root[layer_name]
                weight_names = [_text(n) for n in group.attrs.get("weight_names", [])]
                arrays = [np.asarray(group[name]) for name in weight_names]
                weights.by_name[(layer_name,)] = arrays
                # A nested model keeps all its layers' weights in one group: split them by owner layer,
                # the path component before the variable name ("block/dense_1/kernel", "dense_1/kernel:0").
                for name, array in zip(weight_names, arrays, strict=True):
                    parts = name.split("/")
                    if len(parts) >= 2:
                        weights.by_name.setdefault((layer_name, parts[-2]), []).append(array)
    except ConversionError:
        raise
    except Exception as error:  # h5py raises OSError/KeyError/ValueError on damaged files
        raise ConversionError(
            f"{source}: cannot read the HDF5 file ({_first_line(error)}); the file is truncated or corrupt"
        ) from None
    return _parse_json(config_text, source, "model_config"), weights


def _looks_like_hdf5(path: Path) -> bool:
    with open(path, "rb") as f:
        for offset in HDF5_SIGNATURE_OFFSETS:
            f.seek(offset)
            if f.read(len(HDF5_SIGNATURE)) == HDF5_SIGNATURE:
                return True
    return False


def load_keras(path: str | Path) -> fx.GraphModule:
    """The Keras model at ``path`` as an fx.GraphModule taking NCHW input (see the module docstring)."""
    path = Path(path)
    source = str(path)
    h5py = _import_h5py()
    if not path.is_file():
        raise ConversionError(f"{source}: no such file")
    try:
        with open(path, "rb") as f:
            head = f.read(len(ZIP_SIGNATURE))
        is_hdf5 = _looks_like_hdf5(path)
    except OSError as error:
        raise ConversionError(f"{source}: cannot read the file ({_first_line(error)})") from None
    if head == ZIP_SIGNATURE:
        config, weights = _read_zip(path, h5py)
    elif is_hdf5:
        config, weights = _read_legacy_h5(path, h5py)
    else:
        raise ConversionError(
            f"{source}: not a Keras model file (neither a .keras zip archive nor HDF5); save the model with "
            "model.save('model.keras')"
        )
    try:
        graph = flatten_model_config(config, source)
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as error:
        raise ConversionError(f"{source}: malformed model config ({_first_line(error)})") from None
    module = build_graph_module(graph, weights, source)
    for note in module.import_notes:
        warnings.warn(f"{source}: {note}", stacklevel=2)
    return module
