"""Dataset spec strings, ``NAME[:ARG][:SPLIT][options]``, e.g. ``mnist:test``, ``idx:/data/fmnist:train``,
``folder:/data/imagenet:test[size=224, mean=imagenet, std=imagenet]``.

One string names any dataset, so the CLI and the Python API accept the same thing. Options at the end
normalise the inputs as the network was trained (``mean``, ``std``: one value, one per channel written
``0.485/0.456/0.406``, or ``imagenet``) and, for image folders, say how images are cropped (``size``,
``resize``, ``channels``).
"""

from __future__ import annotations

import re

import torch
from torch import Tensor
from torch.utils.data import Dataset

from spikeport.data.arrays import ArrayDataset, normalise
from spikeport.data.cifar10 import load_cifar10
from spikeport.data.folder import ImageFolder, split_root
from spikeport.data.idx import load_fashion_mnist, load_idx_dir
from spikeport.data.mnist import load_mnist
from spikeport.data.npz import load_npz
from spikeport.errors import DataError, OptionError
from spikeport.options import parse_options

SPLITS = ("train", "test")
KNOWN = (
    "mnist, fashion-mnist, idx:DIR, cifar10:DIR, npz:FILE, folder:DIR (each optionally ending in :train or "
    ":test, then [mean=..., std=...])"
)
FOLDER_OPTIONS = ("size", "resize", "channels")
# The channel statistics torchvision's ImageNet models are trained with.
PRESETS = {"mean": {"imagenet": (0.485, 0.456, 0.406)}, "std": {"imagenet": (0.229, 0.224, 0.225)}}
NO_ARGUMENT = {"mnist": load_mnist, "fashion-mnist": load_fashion_mnist}
WITH_PATH = {"idx": load_idx_dir, "cifar10": load_cifar10, "npz": lambda path, split: load_npz(path)}


def _check_split(split: str, what: str) -> None:
    if split not in SPLITS:
        raise DataError(f"{what} must be 'train' or 'test', got {split!r}")


def parse_spec(spec: str, split: str | None = None, default_split: str = "test") -> tuple[str, str, str]:
    """(name, argument, split) of a spec; an explicit ``split`` must agree with one written in the spec."""
    if not isinstance(spec, str):
        raise DataError(f"a dataset spec is a string such as 'mnist:test', got {type(spec).__name__}")
    if split is not None:
        _check_split(split, "split")
    _check_split(default_split, "default_split")
    name, _, rest = spec.strip().partition(":")
    argument, written = _split_written(rest)
    if split is not None and written is not None and split != written:
        raise DataError(
            f"dataset spec {spec!r} names split {written!r} but {split!r} was asked for; drop one of them"
        )
    return name.lower(), argument, written or split or default_split


def _split_written(rest: str) -> tuple[str, str | None]:
    """A spec's part after ``NAME:`` as its argument and the split written at its end (None: none written)."""
    for candidate in SPLITS:
        if rest == candidate or rest.endswith(f":{candidate}"):
            return rest[: -len(candidate)].rstrip(":"), candidate
    return rest, None


def split_options(spec: str) -> tuple[str, dict]:
    """``"mnist:test[mean=0.13, std=0.31]"`` -> ``("mnist:test", {"mean": 0.13, "std": 0.31})``."""
    if not isinstance(spec, str):
        raise DataError(f"a dataset spec is a string such as 'mnist:test', got {type(spec).__name__}")
    match = re.fullmatch(r"(.*?)\s*(\[[^\[\]]*\])\s*", spec)
    if match is None:
        return spec, {}
    try:
        return match.group(1), parse_options("data" + match.group(2), "dataset spec")[1]
    except OptionError as error:
        raise DataError(f"dataset spec {spec!r}: {error}") from None


def load_dataset(spec: str, split: str | None = None, default_split: str = "test") -> ArrayDataset | Dataset:
    """Load a dataset from a spec string (forms in ``KNOWN``); ``split`` overrides ``default_split``.

    In-memory formats come as an ``ArrayDataset``; an image folder as a ``data.folder.ImageFolder`` that
    decodes images batch by batch.
    """
    body, options = split_options(spec)
    mean, std = (channel_values(options.pop(key, None), key, spec) for key in ("mean", "std"))
    name, argument, split = parse_spec(body, split, default_split)
    if name == "folder":
        unknown = sorted(set(options) - set(FOLDER_OPTIONS))
        if unknown or not argument:
            raise DataError(
                f"dataset spec {spec!r}: folder:DIR takes the options {', '.join(FOLDER_OPTIONS)}, mean, std"
                + (f", not {', '.join(unknown)}" if unknown else "; it needs a path: folder:DIR")
            )
        written = _split_written(body.strip().partition(":")[2])[1] is not None
        root = split_root(argument, split if written or has_splits(argument) else None)
        return ImageFolder(root, **options, mean=mean, std=std)
    if options:
        raise DataError(
            f"dataset spec {spec!r}: {name} takes the options mean and std, not {', '.join(sorted(options))}"
        )
    return normalised(load_arrays(spec, name, argument, split), mean, std)


def load_arrays(spec: str, name: str, argument: str, split: str) -> ArrayDataset:
    """An in-memory dataset of the kinds in ``NO_ARGUMENT`` and ``WITH_PATH``."""
    if name in NO_ARGUMENT:
        if argument:
            raise DataError(f"dataset spec {spec!r}: {name} takes no argument, only a split ({name}:train)")
        return NO_ARGUMENT[name](split)
    if name in WITH_PATH:
        if not argument:
            raise DataError(f"dataset spec {spec!r} needs a path: {name}:PATH")
        return WITH_PATH[name](argument, split)
    raise DataError(f"unknown dataset spec {spec!r}; known: {KNOWN}")


def has_splits(root: str) -> bool:
    """Whether an image folder holds its splits as sub-folders (``train/`` and ``test/`` or ``val/``)."""
    try:
        split_root(root, "train"), split_root(root, "test")
    except DataError:
        return False
    return True


def channel_values(value: object, option: str, spec: str) -> Tensor | None:
    """A ``mean`` or ``std`` option as a 1-d tensor: one value, one per channel (``a/b/c``), or a preset."""
    if value is None:
        return None
    text = str(value).strip().lower()
    written = PRESETS[option].get(text) or text.split("/")
    try:
        values = torch.tensor([float(v) for v in written], dtype=torch.float32)
    except ValueError:
        values = None
    if (
        values is None
        or not bool(torch.isfinite(values).all())
        or (option == "std" and bool((values <= 0).any()))
    ):
        raise DataError(
            f"dataset spec {spec!r}: {option}={value!r} is not a number, numbers per channel written "
            f"0.485/0.456/0.406, or {', '.join(PRESETS[option])}"
            + (" (std must be > 0)" if option == "std" else "")
        )
    return values


def normalised(dataset: ArrayDataset, mean: Tensor | None, std: Tensor | None) -> ArrayDataset:
    """``dataset`` with its inputs normalised (itself when there is nothing to do)."""
    if mean is None and std is None:
        return dataset
    return ArrayDataset(normalise(dataset.x, mean, std, dataset.name), dataset.y, dataset.name)
