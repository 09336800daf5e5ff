"""Dataset spec strings: NAME[:ARG][:SPLIT], e.g. ``mnist:test``, ``idx:/data/fmnist:train``, ``npz:x.npz``."""

from __future__ import annotations

from spikeport.data.arrays import ArrayDataset
from spikeport.data.cifar10 import load_cifar10
from spikeport.data.idx import load_fashion_mnist, load_idx_dir
from spikeport.data.mnist import load_mnist
from spikeport.data.npz import load_npz
from spikeport.errors import DataError

SPLITS = ("train", "test")
KNOWN = "mnist, fashion-mnist, idx:DIR, cifar10:DIR, npz:FILE (each optionally ending in :train or :test)"


def parse_spec(spec: str, split: str | None = None, default_split: str = "test") -> tuple[str, str, str]:
    """(name, argument, split) of a spec; an explicit ``split`` must agree with one written in the spec."""
    name, _, rest = spec.partition(":")
    argument, written = rest, None
    for candidate in SPLITS:
        if rest == candidate or rest.endswith(f":{candidate}"):
            argument, written = rest[: -len(candidate)].rstrip(":"), candidate
    if split is not None and split not in SPLITS:
        raise DataError(f"split must be 'train' or 'test', got {split!r}")
    if split and written and split != written:
        raise DataError(f"dataset spec {spec!r} names split {written!r} but {split!r} was asked for")
    return name.lower(), argument, written or split or default_split


def load_dataset(spec: str, split: str | None = None, default_split: str = "test") -> ArrayDataset:
    """Load a dataset from a spec string; see ``KNOWN`` for the forms."""
    name, argument, split = parse_spec(spec, split, default_split)
    needs_argument = {"idx", "cifar10", "npz"}
    if name in needs_argument and not argument:
        raise DataError(f"dataset spec {spec!r} needs a path: {name}:PATH")
    if name == "mnist" and not argument:
        return load_mnist(split)
    if name == "fashion-mnist" and not argument:
        return load_fashion_mnist(split)
    if name == "idx":
        return load_idx_dir(argument, split)
    if name == "cifar10":
        return load_cifar10(argument, split)
    if name == "npz":
        return load_npz(argument)
    raise DataError(f"unknown dataset spec {spec!r}; known: {KNOWN}")
