"""sp.load_model: one entry point for every way a user hands us a model."""

from __future__ import annotations

import importlib
from pathlib import Path

import torch
from torch import nn

from spikeport.errors import ConversionError
from spikeport.options import parse_options

# Suffixes of the model files load_model reads, and of the state dicts that go with factories.
MODEL_SUFFIXES = (".pt2", ".onnx", ".keras", ".h5", ".hdf5")
WEIGHT_SUFFIXES = (".pt", ".pth")


def load_model(source: str | Path, weights: str | Path | None = None) -> nn.Module:
    """A model from a ``.pt2`` file (torch.export), an ``.onnx`` file, a Keras file or ``package.module:factory[options]``.

    Keras files (``.keras``, or legacy ``.h5`` / ``.hdf5`` full-model saves) need h5py
    (``pip install spikeport[keras]``), never TensorFlow; the rebuilt module takes NCHW input, so feed
    Keras' NHWC images as ``x.permute(0, 3, 1, 2)``. With a factory, ``weights`` is a state-dict file
    (loaded with ``weights_only=True``).
    """
    text = str(source)
    suffix = Path(text).suffix.lower()  # case-insensitive: MODEL.PT2 is as good as model.onnx
    if suffix == ".pt2":
        from spikeport.frontends.torch_export import load_exported

        model = load_exported(text)
    elif suffix == ".onnx":
        from spikeport.frontends.onnx import load_onnx  # lazy: onnx is an optional dependency

        model = load_onnx(text)
    elif suffix in (".keras", ".h5", ".hdf5"):
        from spikeport.frontends.keras import load_keras  # lazy: h5py is an optional dependency

        model = load_keras(text)
    elif is_reference(text):
        model = _from_factory(text)
    else:
        raise ConversionError(
            f"cannot load a model from {text!r}: give a torch.export file (.pt2), an ONNX file (.onnx), a Keras "
            "file (.keras, .h5) or package.module:factory"
        )
    if weights is not None:
        _load_weights(model, Path(weights))
    return model.eval()


def is_reference(source: str | Path) -> bool:
    """Whether ``source`` names ``package.module:attribute`` rather than a file."""
    text = str(source)
    return ":" in text and not Path(text).exists() and Path(text).suffix.lower() not in MODEL_SUFFIXES


def builds_random_weights(source: str | Path) -> bool:
    """Whether ``source`` is a factory function, whose model starts from its random initialisation (a
    module instance or a file brings its own weights)."""
    if not is_reference(source):
        return False
    factory, _, _ = _resolve(str(source))
    return not isinstance(factory, nn.Module) and callable(factory)


def _resolve(reference: str) -> tuple[object, str, dict]:
    """The object ``package.module:name[options]`` names, the target without options, and the options."""
    try:
        target, options = parse_options(reference, "model factory")
    except ValueError as error:
        raise ConversionError(str(error)) from None
    module_name, _, attribute = target.partition(":")
    try:
        return getattr(importlib.import_module(module_name), attribute), target, options
    except (ImportError, AttributeError) as error:
        raise ConversionError(f"cannot import {reference!r}: {error}") from None


def _from_factory(reference: str) -> nn.Module:
    """``package.module:factory``, optionally with keyword arguments: ``...:resnet20[width=8, bias=false]``."""
    factory, target, options = _resolve(reference)
    if isinstance(factory, nn.Module) or not callable(factory):
        if options:
            raise ConversionError(f"{target!r} is not a factory function, so it takes no options")
        model = factory
    else:
        try:
            model = factory(**options)
        except (TypeError, ValueError) as error:
            raise ConversionError(f"{reference!r}: {error}") from None
    if not isinstance(model, nn.Module):
        raise ConversionError(f"{reference!r} did not give a torch.nn.Module (got {type(model).__name__})")
    return model


def _load_weights(model: nn.Module, path: Path) -> None:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise ConversionError(f"cannot read weights from {path}: {str(error).splitlines()[0]}") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError) as error:
        raise ConversionError(
            f"weights in {path} do not fit the model: {str(error).splitlines()[0]}"
        ) from None
