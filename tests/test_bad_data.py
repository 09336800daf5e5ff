"""Hostile or broken data is refused with a clear error instead of running code or skewing results."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch
from helpers import write_cifar_dir
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import spikeport as sp
from spikeport.data import as_batches, load_dataset
from spikeport.errors import DataError, InputError

# --- CIFAR-10: a batch file is unpickled without running code ----------------------------------------


class _CreatesFile:
    """Pickles as a call of os.system: unpickling it without restriction would create ``path``."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return os.system, (f"touch {self.path}",)


def test_cifar10_batch_that_runs_code_is_refused(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar_dir(folder)
    sentinel = tmp_path / "sentinel"
    with open(folder / "data_batch_1", "wb") as f:
        pickle.dump({b"data": _CreatesFile(str(sentinel)), b"labels": [0]}, f)
    with pytest.raises(DataError, match=r"data_batch_1: refuses to unpickle posix\.system"):
        load_dataset(f"cifar10:{folder}:train")
    assert not sentinel.exists()


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_cifar10_batches_of_every_pickle_protocol_still_load(tmp_path, protocol):
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar_dir(folder)
    data = np.full((2, 3072), 255, np.uint8)
    with open(folder / "test_batch", "wb") as f:  # numpy int64 labels pickle through numpy's scalar helper
        pickle.dump({b"data": data, b"labels": list(np.array([4, 7]))}, f, protocol=protocol)
    test = load_dataset(f"cifar10:{folder}:test")
    assert test.y.tolist() == [4, 7] and bool((test.x == 1).all())


# --- IDX: a forged header cannot overflow the size check ---------------------------------------------


def test_idx_header_whose_size_overflows_int64_is_refused(tmp_path):
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(
        (0x801).to_bytes(4, "big") + (1).to_bytes(4, "big") + b"\0"
    )
    dims = (2**31, 2**31, 4)  # 2**64 bytes: 0 in int64, so it matched the empty payload and reached reshape
    header = (0x803).to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in dims)
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(header)
    with pytest.raises(
        DataError, match=r"t10k-images-idx3-ubyte: truncated: .*dims \(2147483648, 2147483648, 4\)"
    ):
        load_dataset(f"idx:{tmp_path}:test")


# --- non-finite and integer inputs -------------------------------------------------------------------


def _with_nan_at(sample: int, element: tuple[int, ...], n: int = 40) -> torch.Tensor:
    x = torch.rand(n, 1, 6, 6)
    x[(sample, *element)] = float("nan")
    return x


@pytest.mark.parametrize(
    "form",
    [
        lambda x: x,
        lambda x: (x, torch.zeros(len(x), dtype=torch.long)),
        lambda x: DataLoader(TensorDataset(x), batch_size=8),
    ],
    ids=["tensor", "tuple", "loader"],
)
def test_as_batches_names_the_batch_sample_and_element_of_a_nan(form):
    batches = as_batches(form(_with_nan_at(27, (0, 4, 5))), batch_size=8)
    assert len(next(batches)[0]) == 8  # the clean batches before it pass
    with pytest.raises(
        InputError,
        match=r"^evaluation batch 3 has a non-finite value \(nan\) at sample 27, "
        r"element \(0, 4, 5\): .*fix: clean or drop such samples$",
    ):
        list(batches)


def test_as_batches_names_infinities_and_skips_what_the_limit_cuts():
    x = torch.rand(10, 3)
    x[6, 2] = -float("inf")
    with pytest.raises(
        InputError, match=r"batch 1 has a non-finite value \(-inf\) at sample 6, element \(2\)"
    ):
        list(as_batches(x, batch_size=4))
    assert sum(len(b) for b, _ in as_batches(x, batch_size=4, limit=6)) == 6


def _model() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(36, 8), nn.ReLU(), nn.Linear(8, 3)).eval()


def test_convert_refuses_non_finite_calibration_data():
    x = torch.rand(40, 1, 6, 6)
    x[21, 0, 3, 1] = float("inf")
    with pytest.raises(
        InputError,
        match=r"^calibration batch 2 has a non-finite value \(inf\) at sample 21, "
        r"element \(0, 3, 1\)",
    ):
        sp.convert(_model(), x, batch_size=10)


def test_evaluate_refuses_non_finite_data():
    snn = sp.convert(_model(), torch.rand(40, 1, 6, 6), batch_size=10)
    data = (_with_nan_at(13, (0, 0, 2), n=20), torch.zeros(20, dtype=torch.long))
    with pytest.raises(InputError, match=r"^evaluation batch 1 has a non-finite value \(nan\) at sample 13"):
        sp.evaluate(snn, data, timesteps=(4,), batch_size=10, progress=False)


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int64])
def test_integer_images_are_refused_with_the_scaling_fix(dtype):
    images = torch.randint(0, 256, (12, 1, 6, 6)).to(dtype)
    images[0, 0, 0, 0], images[1, 0, 0, 0] = 0, 255
    message = rf"batch 0 is {str(dtype)[6:]} with values 0\.\.255, but the network takes floats; .*x\.float\(\) / 255"
    with pytest.raises(InputError, match="^calibration " + message):
        sp.convert(_model(), images)
    with pytest.raises(InputError, match="^evaluation " + message):
        list(as_batches(DataLoader(TensorDataset(images, torch.arange(12)), batch_size=4)))
    labels = torch.arange(12, dtype=torch.int32)  # integer labels stay fine; they come back as int64
    ((x, y),) = as_batches((images.float() / 255, labels), batch_size=12)
    assert x.dtype == torch.float32 and y.dtype == torch.int64
