"""The small training loop: augmentation as specified, checkpoints that resume exactly, the train command."""

import copy

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from spikeport.cli import main
from spikeport.train import augment, train_classifier


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 1000), st.sampled_from(["crop", "crop-flip"]), st.integers(1, 4))
def test_each_augmented_image_is_a_window_of_the_padded_image(seed, kind, padding):
    x = torch.rand(6, 3, 9, 7, generator=torch.Generator().manual_seed(seed))
    out = augment(x, kind, torch.Generator().manual_seed(seed), padding=padding)
    assert out.shape == x.shape
    padded = torch.nn.functional.pad(x, (padding,) * 4)
    for image, source in zip(out, padded, strict=True):
        windows = [
            source[:, top : top + 9, left : left + 7]
            for top in range(2 * padding + 1)
            for left in range(2 * padding + 1)
        ]
        candidates = windows + ([w.flip(-1) for w in windows] if kind == "crop-flip" else [])
        assert any(torch.equal(image, w) for w in candidates)


def test_no_augmentation_is_the_identity():
    x = torch.rand(4, 1, 5, 5)
    assert augment(x, "none", torch.Generator()) is x


def tiny_data(n=64):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(n, 1, 6, 6, generator=g)
    return x, (x.mean(dim=(1, 2, 3)) > 0.5).long()


def tiny_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(36, 8), nn.ReLU(), nn.Dropout(0.2), nn.Linear(8, 2))


def test_resuming_a_checkpoint_equals_training_straight_through(tmp_path, monkeypatch):
    x, y = tiny_data()
    options = {"epochs": 3, "batch_size": 16, "progress": False, "augmentation": "crop"}
    saved: dict[int, dict] = {}
    real_save = torch.save

    def keep_copies(state, path):  # remember every epoch's checkpoint, as if the run had stopped there
        saved[state["epoch"]] = copy.deepcopy(state)
        real_save(state, path)

    monkeypatch.setattr("spikeport.train.torch.save", keep_copies)
    straight = train_classifier(tiny_model(), x, y, checkpoint=tmp_path / "run.pt", **options)
    monkeypatch.undo()
    assert sorted(saved) == [1, 2, 3]
    checkpoint = tmp_path / "after-epoch-2.pt"
    torch.save(saved[2], checkpoint)
    resumed = train_classifier(tiny_model(), x, y, checkpoint=checkpoint, **options)  # trains epoch 3 only
    for a, b in zip(straight.state_dict().values(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_bad_training_options_are_refused():
    x, y = tiny_data(8)
    with pytest.raises(ValueError, match="optimizer"):
        train_classifier(tiny_model(), x, y, optimizer="adam2", progress=False)
    with pytest.raises(ValueError, match="augmentation"):
        train_classifier(tiny_model(), x, y, augmentation="mixup", progress=False)


def test_train_command_writes_weights_that_convert(tmp_path, capsys):
    g = np.random.default_rng(0)
    x = g.random((48, 1, 8, 8), dtype=np.float32)
    np.savez(tmp_path / "d.npz", x=x, y=(x.mean(axis=(1, 2, 3)) > 0.5).astype(np.int64))
    factory = "spikeport.models:resnet20[width=2, in_channels=1, num_classes=2]"
    weights = tmp_path / "w.pt"
    code = main(
        ["train", factory, "--data", f"npz:{tmp_path / 'd.npz'}", "--epochs", "2", "--quiet"]
        + ["--batch-size", "16", "-o", str(weights), "--checkpoint", str(tmp_path / "c.pt")]
    )
    out = capsys.readouterr().out
    assert code == 0 and weights.is_file() and "test accuracy" in out
    code = main(
        ["convert", factory, "--weights", str(weights), "--data", f"npz:{tmp_path / 'd.npz'}"]
        + ["--method", "ecc", "-o", str(tmp_path / "net.spk")]
    )
    assert code == 0
