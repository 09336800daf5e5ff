"""sp.load_model: one entry point for every way a user hands us a model."""

from __future__ import annotations

import importlib
from pathlib import Path

import torch
from torch import nn

from spikeport.errors import ConversionError
from spikeport.options import parse_options


def load_model(source: str | Path, weights: str | Path | None = None) -> nn.Module:
    """A model from a ``.pt2`` file (torch.export), an ``.onnx`` file, a Keras file or ``package.module:factory[options]``.

    Keras files (``.keras``, or legacy ``.h5`` / ``.hdf5`` full-model saves) need h5py
    (``pip install spikeport[keras]``), never TensorFlow; the rebuilt module takes NCHW input, so feed
    Keras' NHWC images as ``x.permute(0, 3, 1, 2)``. With a factory, ``weights`` is a state-dict file
    (loaded with ``weights_only=True``).
    """
    text = str(source)
    suffix = Path(text).suffix.lower()
    if text.endswith(".pt2"):
        from spikeport.frontends.torch_export import load_exported

        model = load_exported(text)
    elif suffix == ".onnx":
        from spikeport.frontends.onnx import load_onnx  # lazy: onnx is an optional dependency

        model = load_onnx(text)
    elif suffix in (".keras", ".h5", ".hdf5"):
        from spikeport.frontends.keras import load_keras  # lazy: h5py is an optional dependency

        model = load_keras(text)
    elif ":" in text and not Path(text).exists():
        model = _from_factory(text)
    else:
        raise ConversionError(
            f"cannot load a model from {text!r}: give a torch.export file (.pt2), an ONNX file (.onnx), a Keras "
            "file (.keras, .h5) or package.module:factory"
        )
    if weights is not None:
        _load_weights(model, Path(weights))
    return model.eval()


def _from_factory(reference: str) -> nn.Module:
    """``package.module:factory``, optionally with keyword arguments: ``...:resnet20[width=8, bias=false]``."""
    try:
        target, options = parse_options(reference, "model factory")
    except ValueError as error:
        raise ConversionError(str(error)) from None
    module_name, _, attribute = target.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as error:
        raise ConversionError(f"cannot import {reference!r}: {error}") from None
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
