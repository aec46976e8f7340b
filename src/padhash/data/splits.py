"""One split of a retrieval data set: images (float32 [0, 1], NCHW) and multi-hot float labels (N, C).

`TensorSplit` keeps the images in memory; `FileSplit` decodes image files on demand (large list/folder data sets)
and keeps swapped or appended images (poisons) in memory beside the files.
"""
from __future__ import annotations

import abc
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

from padhash.errors import PadhashError

Index = torch.Tensor | Sequence[int] | None


def as_index(idx: Index, n: int) -> torch.Tensor:
    """A LongTensor of positions in a split of length n (None = all; a boolean mask selects), bounds-checked."""
    if idx is None:
        return torch.arange(n)
    out = torch.as_tensor(idx).detach().cpu()
    if out.dtype == torch.bool:
        if out.shape != (n,):
            raise IndexError(f"boolean mask of shape {tuple(out.shape)} for a split of {n} items")
        return torch.nonzero(out).flatten()
    out = out.long().flatten()
    if len(out) and (int(out.min()) < -n or int(out.max()) >= n):
        raise IndexError(f"index out of range for a split of {n} items")
    return out % max(n, 1)


def resize_images(images: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear (anti-aliased when shrinking) resize of NCHW [0,1] images to size×size."""
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    out = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return out.clamp_(0.0, 1.0)


def _check_labels(labels: torch.Tensor, n: int) -> torch.Tensor:
    labels = torch.as_tensor(labels, dtype=torch.float32)
    if labels.dim() != 2 or labels.shape[0] != n:
        raise PadhashError(f"labels must have shape ({n}, num_classes), got {tuple(labels.shape)}")
    return labels


def _check_images(images: torch.Tensor) -> torch.Tensor:
    if images.dim() != 4 or images.shape[1] != 3 or images.shape[2] != images.shape[3]:
        raise PadhashError(f"images must have shape (N, 3, H, H), got {tuple(images.shape)}")
    return images.to(torch.float32)


class Split(abc.ABC):
    """Images + multi-hot labels. `images()` returns float32 [0,1] (n, 3, H, W); callers must not modify it in place."""

    labels: torch.Tensor
    image_size: int

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def num_classes(self) -> int:
        return int(self.labels.shape[1])

    @abc.abstractmethod
    def images(self, idx: Index = None) -> torch.Tensor:
        """Images at positions idx (None = all, in order)."""

    @abc.abstractmethod
    def subset(self, idx: Index) -> "Split":
        """A new split holding the items at positions idx, in that order."""

    @abc.abstractmethod
    def replace(self, idx: Index, images: torch.Tensor) -> "Split":
        """A copy with the images at positions idx swapped for `images` (labels unchanged: clean-label poisons)."""

    @abc.abstractmethod
    def append(self, images: torch.Tensor, labels: torch.Tensor) -> "Split":
        """A copy with extra items added at the end."""

    def _check_new_images(self, images: torch.Tensor, count: int) -> torch.Tensor:
        images = _check_images(torch.as_tensor(images)).detach().cpu()
        if images.shape[0] != count or images.shape[-1] != self.image_size:
            raise PadhashError(f"expected {count} images of size {self.image_size}, got {tuple(images.shape)}")
        return images.clamp(0.0, 1.0)


class TensorSplit(Split):
    """A split held in memory as one float32 tensor."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor):
        self._images = _check_images(torch.as_tensor(images))
        self.labels = _check_labels(labels, self._images.shape[0])
        self.image_size = int(self._images.shape[-1])

    def images(self, idx: Index = None) -> torch.Tensor:
        if idx is None:
            return self._images
        return self._images[as_index(idx, len(self))]

    def subset(self, idx: Index) -> "TensorSplit":
        idx = as_index(idx, len(self))
        return TensorSplit(self._images[idx], self.labels[idx])

    def replace(self, idx: Index, images: torch.Tensor) -> "TensorSplit":
        idx = as_index(idx, len(self))
        out = self._images.clone()
        out[idx] = self._check_new_images(images, len(idx))
        return TensorSplit(out, self.labels)

    def append(self, images: torch.Tensor, labels: torch.Tensor) -> "TensorSplit":
        images = self._check_new_images(images, len(images))
        labels = _check_labels(labels, len(images))
        if labels.shape[1] != self.num_classes:
            raise PadhashError(f"appended labels have {labels.shape[1]} classes, the split has {self.num_classes}")
        return TensorSplit(torch.cat([self._images, images]), torch.cat([self.labels, labels]))


def load_image_file(path: Path, size: int) -> torch.Tensor:
    """One RGB image file → float32 [0,1] (3, size, size): shorter side resized to `size`, then centre-cropped."""
    try:
        with Image.open(path) as img:
            img = img.convert("RGB")
            w, h = img.size
            scale = size / min(w, h)
            new_w, new_h = max(size, round(w * scale)), max(size, round(h * scale))
            img = img.resize((new_w, new_h), Image.Resampling.BILINEAR)
            left, top = (new_w - size) // 2, (new_h - size) // 2
            img = img.crop((left, top, left + size, top + size))
            data = torch.frombuffer(bytearray(img.tobytes()), dtype=torch.uint8)
    except FileNotFoundError:
        raise PadhashError(f"{path}: no such file") from None
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise PadhashError(f"{path}: not a readable image ({exc.__class__.__name__})") from None
    return data.view(size, size, 3).permute(2, 0, 1).float().div_(255.0)


class FileSplit(Split):
    """A split whose images are files decoded lazily with Pillow; swapped/appended images live in memory.

    `paths[i]` is None for appended items, whose images are in `overrides`.
    """

    def __init__(self, paths: Sequence[Path | None], labels: torch.Tensor, image_size: int,
                 overrides: dict[int, torch.Tensor] | None = None):
        self.paths = list(paths)
        self.labels = _check_labels(labels, len(self.paths))
        self.image_size = int(image_size)
        self.overrides = dict(overrides or {})
        missing = [i for i, p in enumerate(self.paths) if p is None and i not in self.overrides]
        if missing:
            raise PadhashError(f"item {missing[0]} has neither an image file nor an in-memory image")

    def images(self, idx: Index = None) -> torch.Tensor:
        idx = as_index(idx, len(self))
        out = torch.empty(len(idx), 3, self.image_size, self.image_size)
        for row, i in enumerate(idx.tolist()):
            override = self.overrides.get(i)
            out[row] = override if override is not None else load_image_file(self.paths[i], self.image_size)
        return out

    def subset(self, idx: Index) -> "FileSplit":
        idx = as_index(idx, len(self)).tolist()
        overrides = {new: self.overrides[old] for new, old in enumerate(idx) if old in self.overrides}
        return FileSplit([self.paths[i] for i in idx], self.labels[idx], self.image_size, overrides)

    def replace(self, idx: Index, images: torch.Tensor) -> "FileSplit":
        idx = as_index(idx, len(self)).tolist()
        images = self._check_new_images(images, len(idx))
        overrides = dict(self.overrides)
        overrides.update({i: images[row] for row, i in enumerate(idx)})
        return FileSplit(self.paths, self.labels, self.image_size, overrides)

    def append(self, images: torch.Tensor, labels: torch.Tensor) -> "FileSplit":
        images = self._check_new_images(images, len(images))
        labels = _check_labels(labels, len(images))
        if labels.shape[1] != self.num_classes:
            raise PadhashError(f"appended labels have {labels.shape[1]} classes, the split has {self.num_classes}")
        n = len(self)
        overrides = dict(self.overrides)
        overrides.update({n + row: images[row] for row in range(len(images))})
        return FileSplit(self.paths + [None] * len(images), torch.cat([self.labels, labels]), self.image_size,
                         overrides)
