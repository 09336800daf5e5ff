"""Image folders as ImageNet and most custom datasets come: ``ROOT/CLASS/IMAGE`` (torchvision's ImageFolder layout).

Classes are the sub-folders in sorted order, so label i means what it meant when a model was trained on the
same folder with torchvision. Images are decoded when a batch asks for them (ImageNet does not fit in memory),
resized so that the shorter side is ``resize``, centre-cropped to ``size`` x ``size`` and scaled to [0, 1]: the
standard evaluation transform. Pillow decodes them (it comes with matplotlib).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from spikeport.data.arrays import normalise
from spikeport.errors import DataError

EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".gif", ".tif", ".tiff", ".webp")
# A split named in a spec, and the sub-folders that hold it (ImageNet calls its test images "val").
SPLIT_FOLDERS = {"train": ("train",), "test": ("test", "val")}


def split_root(root: str | Path, split: str | None) -> Path:
    """The folder of classes: ``root`` itself, or its ``train`` / ``test`` (or ``val``) sub-folder."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"image folder {root} does not exist (expected ROOT/CLASS/IMAGE files)")
    if split is None:
        return root
    for name in SPLIT_FOLDERS[split]:
        if (root / name).is_dir():
            return root / name
    raise DataError(
        f"image folder {root} has no {' or '.join(SPLIT_FOLDERS[split])} sub-folder for split {split!r}; "
        f"name the folder of classes itself: folder:{root / '...'}"
    )


class ImageFolder(Dataset):
    """Labelled images from ``ROOT/CLASS/IMAGE`` files, as float32 ``[C, size, size]`` tensors in [0, 1].

    ``size``: the side of the centre crop (None: images must all have one size and are used as they are).
    ``resize``: the shorter side before cropping (default ``size * 8 / 7``: 256 for 224, the usual ratio).
    ``channels``: 3 (RGB) or 1 (greyscale). ``mean``, ``std``: per-channel normalisation after scaling.
    """

    def __init__(
        self,
        root: str | Path,
        size: int | None = None,
        resize: int | None = None,
        channels: int = 3,
        mean: Tensor | None = None,
        std: Tensor | None = None,
    ):
        self.root = Path(root)
        if channels not in (1, 3):
            raise DataError(f"image folder {root}: channels must be 1 or 3, got {channels}")
        if size is not None and (not isinstance(size, int) or size < 1):
            raise DataError(f"image folder {root}: size must be a positive integer, got {size!r}")
        if resize is not None and (not isinstance(resize, int) or resize < (size or 1)):
            raise DataError(f"image folder {root}: resize must be an integer >= size, got {resize!r}")
        self.size, self.channels, self.mean, self.std = size, channels, mean, std
        self.shape: torch.Size | None = None  # of the first image read, when images are not cropped
        self.resize = resize if resize is not None or size is None else round(size * 8 / 7)
        self.classes = sorted(entry.name for entry in self.root.iterdir() if entry.is_dir())
        if not self.classes:
            raise DataError(
                f"image folder {root} has no class sub-folders; the layout is ROOT/CLASS/IMAGE "
                "(e.g. imagenet/val/n01440764/ILSVRC2012_val_00000293.JPEG)"
            )
        self.samples = [
            (path, label)
            for label, name in enumerate(self.classes)
            for path in sorted((self.root / name).rglob("*"))
            if path.suffix.lower() in EXTENSIONS and path.is_file()
        ]
        if not self.samples:
            raise DataError(
                f"image folder {root}: no images ({', '.join(EXTENSIONS)}) under its {len(self.classes)} "
                "class folders"
            )

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        path, label = self.samples[index]
        image = self.image(path)
        if self.mean is not None or self.std is not None:
            image = normalise(image[None], self.mean, self.std, str(self.root))[0]
        return image, torch.tensor(label)

    def image(self, path: Path) -> Tensor:
        """One image: decoded, resized and centre-cropped, as float32 [C, H, W] in [0, 1]."""
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(path) as opened:
                image = opened.convert("RGB" if self.channels == 3 else "L")
        except (UnidentifiedImageError, OSError) as error:
            raise DataError(f"{path}: not a readable image ({error})") from None
        if self.size is not None:
            image = centre_crop(resized(image, self.resize), self.size)
        pixels = np.asarray(image, dtype=np.float32) / 255.0
        tensor = torch.from_numpy(pixels.reshape(*pixels.shape[:2], self.channels)).permute(2, 0, 1)
        if self.size is None:  # uncropped images must share one shape: the first one's
            self.shape = self.shape or tensor.shape
        if self.size is None and tensor.shape != self.shape:
            raise DataError(
                f"{path} is {tensor.shape[2]}x{tensor.shape[1]}, other images of {self.root} are not: give "
                "the spec a size, e.g. folder:PATH[size=224]"
            )
        return tensor.contiguous()


def resized(image, shorter: int):
    """``image`` scaled (bilinear, antialiased) so that its shorter side is ``shorter`` pixels."""
    from PIL import Image

    width, height = image.size
    scale = shorter / min(width, height)
    return image.resize((max(1, round(width * scale)), max(1, round(height * scale))), Image.BILINEAR)


def centre_crop(image, size: int):
    """The central ``size`` x ``size`` pixels of ``image`` (at least ``size`` on each side)."""
    width, height = image.size
    left, top = (width - size) // 2, (height - size) // 2
    return image.crop((left, top, left + size, top + size))
