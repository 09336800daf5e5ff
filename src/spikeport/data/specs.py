"""Dataset spec strings, ``NAME[:ARG][:SPLIT]``, e.g. ``mnist:test``, ``idx:/data/fmnist:train``.

One string names any dataset, so the CLI and the Python API accept the same thing.
"""

from __future__ import annotations

from spikeport.data.arrays import ArrayDataset
from spikeport.data.cifar10 import load_cifar10
from spikeport.data.idx import load_fashion_mnist, load_idx_dir
from spikeport.data.mnist import load_mnist
from spikeport.data.npz import load_npz
from spikeport.errors import DataError

SPLITS = ("train", "test")
KNOWN = "mnist, fashion-mnist, idx:DIR, cifar10:DIR, npz:FILE (each optionally ending in :train or :test)"
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
    argument, written = rest, None
    for candidate in SPLITS:
        if rest == candidate or rest.endswith(f":{candidate}"):
            argument, written = rest[: -len(candidate)].rstrip(":"), candidate
    if split is not None and written is not None and split != written:
        raise DataError(
            f"dataset spec {spec!r} names split {written!r} but {split!r} was asked for; drop one of them"
        )
    return name.lower(), argument, written or split or default_split


def load_dataset(spec: str, split: str | None = None, default_split: str = "test") -> ArrayDataset:
    """Load a dataset from a spec string (forms in ``KNOWN``); ``split`` overrides ``default_split``."""
    name, argument, split = parse_spec(spec, split, default_split)
    if name in NO_ARGUMENT:
        if argument:
            raise DataError(f"dataset spec {spec!r}: {name} takes no argument, only a split ({name}:train)")
        return NO_ARGUMENT[name](split)
    if name in WITH_PATH:
        if not argument:
            raise DataError(f"dataset spec {spec!r} needs a path: {name}:PATH")
        return WITH_PATH[name](argument, split)
    raise DataError(f"unknown dataset spec {spec!r}; known: {KNOWN}")
