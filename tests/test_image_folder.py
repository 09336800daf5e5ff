"""Image folders (ImageNet's layout) and normalisation in data specs, on small files written here."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from PIL import Image

import spikeport as sp
from spikeport.cli import _calibration_spec
from spikeport.data import as_batches, load_dataset, sample_count
from spikeport.data.folder import ImageFolder
from spikeport.errors import DataError

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def write_folder(root, classes=("cat", "dog", "eel"), per_class=2, sizes=((40, 30), (25, 50)), seed=0):
    """ROOT/CLASS/i.png with random RGB pixels of the given (width, height) sizes, in turn."""
    rng = np.random.default_rng(seed)
    for name in classes:
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            width, height = sizes[i % len(sizes)]
            pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    return root


def test_classes_are_sorted_folders_and_images_are_centre_crops(tmp_path):
    root = write_folder(tmp_path / "val", classes=("zebra", "ant", "mole"), sizes=((40, 30),))
    dataset = load_dataset(f"folder:{root}[size=20, resize=30]")
    assert isinstance(dataset, ImageFolder) and dataset.classes == ["ant", "mole", "zebra"]
    assert len(dataset) == 6 and sample_count(dataset) == 6
    image, label = dataset[0]
    assert image.shape == (3, 20, 20) and int(label) == 0 and image.dtype == torch.float32
    # the standard transform: shorter side to 30 (40x30 stays), then the central 20x20, scaled to [0, 1]
    pixels = np.asarray(Image.open(root / "ant" / "0.png").convert("RGB"), dtype=np.float32) / 255
    expected = torch.from_numpy(pixels[5:25, 10:30]).permute(2, 0, 1)
    assert torch.allclose(image, expected)
    labels = torch.cat([y for _, y in as_batches(dataset, batch_size=4)])
    assert labels.tolist() == [0, 0, 1, 1, 2, 2]


def test_splits_are_sub_folders_and_val_serves_as_test(tmp_path):
    write_folder(tmp_path / "train", classes=("a", "b"))
    write_folder(tmp_path / "val", classes=("a", "b"), per_class=1)
    assert load_dataset(f"folder:{tmp_path}:train[size=8]").root == tmp_path / "train"
    assert load_dataset(f"folder:{tmp_path}[size=8]").root == tmp_path / "val"  # default split: test
    assert load_dataset(f"folder:{tmp_path}[size=8]", default_split="train").root == tmp_path / "train"
    assert len(load_dataset(f"folder:{tmp_path}/val[size=8]")) == 2
    assert _calibration_spec(f"folder:{tmp_path}:test[size=8]") == f"folder:{tmp_path}:train[size=8]"


def test_normalisation_per_channel_and_presets(tmp_path):
    root = write_folder(tmp_path / "imgs", sizes=((16, 16),))
    plain = load_dataset(f"folder:{root}")[1][0]
    normalised = load_dataset(f"folder:{root}[mean=imagenet, std=imagenet]")[1][0]
    mean, std = torch.tensor(IMAGENET_MEAN)[:, None, None], torch.tensor(IMAGENET_STD)[:, None, None]
    assert torch.allclose(normalised, (plain - mean) / std)
    written = load_dataset(f"folder:{root}[mean=0.485/0.456/0.406, std=0.229/0.224/0.225]")[1][0]
    assert torch.equal(written, normalised)
    grey = load_dataset(f"folder:{root}[channels=1, mean=0.5, std=0.25]")[1][0]
    assert grey.shape == (1, 16, 16) and float(grey.min()) >= -2.0 and float(grey.max()) <= 2.0


def test_normalisation_of_array_datasets(tmp_path):
    x = torch.rand(10, 3, 4, 4)
    np.savez(tmp_path / "d.npz", x=x.numpy(), y=np.arange(10))
    data = load_dataset(f"npz:{tmp_path / 'd.npz'}[mean=0.5/0.25/0, std=2]")
    shift = torch.tensor([0.5, 0.25, 0.0])[:, None, None]
    assert torch.allclose(data.x, (x - shift) / 2)
    assert torch.equal(load_dataset(f"npz:{tmp_path / 'd.npz'}").x, x)


@pytest.mark.parametrize(
    "options, message",
    [
        ("[sise=3]", "takes the options size, resize, channels, mean, std, not sise"),
        ("[mean=grey]", "mean='grey' is not a number"),
        ("[std=0]", "std must be > 0"),
        ("[mean=0.1/0.2]", "mean has 2 values but the inputs have 3 channels"),
        ("[size=8, resize=4]", "resize must be an integer >= size"),
        ("[channels=2]", "channels must be 1 or 3"),
        ("", "give the spec a size, e.g. folder:PATH[size=224]"),
    ],
)
def test_folder_errors_name_the_fix(tmp_path, options, message):
    root = write_folder(tmp_path / "imgs")
    with pytest.raises(DataError, match=re.escape(message)):
        for _ in as_batches(load_dataset(f"folder:{root}{options}")):
            pass


def test_missing_and_empty_folders(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_dataset(f"folder:{tmp_path / 'none'}")
    (tmp_path / "flat").mkdir()
    (tmp_path / "flat" / "x.png").write_bytes(b"")
    with pytest.raises(DataError, match="no class sub-folders; the layout is ROOT/CLASS/IMAGE"):
        load_dataset(f"folder:{tmp_path / 'flat'}")
    (tmp_path / "flat" / "a").mkdir()
    with pytest.raises(DataError, match="no images"):
        load_dataset(f"folder:{tmp_path / 'flat'}")
    (tmp_path / "flat" / "a" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="broken.png: not a readable image"):
        load_dataset(f"folder:{tmp_path / 'flat'}")[0]
    with pytest.raises(DataError, match="mnist takes the options mean and std, not size"):
        load_dataset("mnist[size=3]")


def test_a_folder_calibrates_and_evaluates_a_conversion(tmp_path):
    root = write_folder(tmp_path / "imgs", sizes=((12, 12),), per_class=4)
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(4 * 6 * 6, 3)
    )
    spec = f"folder:{root}[size=8, mean=imagenet, std=imagenet]"
    snn = sp.convert(model, spec, "ecc", progress=False)
    ev = sp.evaluate(snn, spec, [4], progress=False)
    assert ev.samples == 12 and ev.data == spec and ev.accuracy[4] is not None
