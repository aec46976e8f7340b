"""Clip data sets: splits of videos as frame tensors (N, T, 3, H, W) in [0, 1] with multi-hot labels.

Loaders: `clip-folder` (JHMDB / UCF-101 frames extracted to root/<class>/<clip>/<frame image>) and `clip-npz`
(`clips` (N, T, H, W, 3) uint8 + `labels`, int (N,) or multi-hot (N, C)). Both take `clip_length` and
`frame_stride`: a clip keeps frames 0, s, 2s, ... up to `clip_length` of them (DHTA: at most 40 frames, stride 3
on UCF-101); a shorter clip repeats its last kept frame so every clip of a split has one length (a tensor).
Clips are decoded eagerly: a split holds N·T·3·H²·4 bytes, so pick `image_size` to fit memory.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from padhash.data.dataset import (RetrievalDataset, check_all_classes_present, dataset_root, register, split_queries,
                                   with_query_cap)
from padhash.data.splits import Index, Split, as_index, load_image_file, resize_images
from padhash.errors import PadhashError

DEFAULT_CLIP_LENGTH = 8
DEFAULT_FOLDER_SIZE = 64
FRAME_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


def _check_clips(clips: torch.Tensor) -> torch.Tensor:
    if clips.dim() != 5 or clips.shape[2] != 3 or clips.shape[3] != clips.shape[4]:
        raise PadhashError(f"clips must have shape (N, T, 3, H, H), got {tuple(clips.shape)}")
    return clips.to(torch.float32)


class ClipSplit(Split):
    """A split of clips held in memory; `images()` returns (n, T, 3, H, W) float32 in [0, 1], one clip per item,
    so a clip is one query, one database item, one training example."""

    def __init__(self, clips: torch.Tensor, labels: torch.Tensor):
        self._clips = _check_clips(torch.as_tensor(clips))
        labels = torch.as_tensor(labels, dtype=torch.float32)
        if labels.dim() != 2 or labels.shape[0] != self._clips.shape[0]:
            raise PadhashError(f"labels must have shape ({self._clips.shape[0]}, num_classes), got {tuple(labels.shape)}")
        self.labels = labels
        self.frames = int(self._clips.shape[1])
        self.image_size = int(self._clips.shape[-1])

    def images(self, idx: Index = None) -> torch.Tensor:
        return self._clips if idx is None else self._clips[as_index(idx, len(self))]

    def subset(self, idx: Index) -> "ClipSplit":
        idx = as_index(idx, len(self))
        return ClipSplit(self._clips[idx], self.labels[idx])

    def _new(self, clips: torch.Tensor, count: int) -> torch.Tensor:
        clips = _check_clips(torch.as_tensor(clips)).detach().cpu()
        if clips.shape[0] != count or clips.shape[1:] != self._clips.shape[1:]:
            raise PadhashError(f"expected {count} clips of shape {tuple(self._clips.shape[1:])}, got {tuple(clips.shape)}")
        return clips.clamp(0.0, 1.0)

    def replace(self, idx: Index, images: torch.Tensor) -> "ClipSplit":
        idx = as_index(idx, len(self))
        out = self._clips.clone()
        out[idx] = self._new(images, len(idx))
        return ClipSplit(out, self.labels)

    def append(self, images: torch.Tensor, labels: torch.Tensor) -> "ClipSplit":
        images = self._new(images, len(images))
        labels = torch.as_tensor(labels, dtype=torch.float32)
        if labels.shape != (len(images), self.num_classes):
            raise PadhashError(f"appended labels must have shape ({len(images)}, {self.num_classes}), "
                               f"got {tuple(labels.shape)}")
        return ClipSplit(torch.cat([self._clips, images]), torch.cat([self.labels, labels]))


def check_frame_options(clip_length, frame_stride, where: str) -> None:
    for name, value, top in (("clip_length", clip_length, 40), ("frame_stride", frame_stride, None)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1 or (top and value > top):
            limit = f"1..{top}" if top else "a positive integer"
            raise PadhashError(f"{where}: {name} must be {limit}, got {value!r}")


def frame_indices(available: int, clip_length: int, frame_stride: int) -> list[int]:
    """Frames 0, s, 2s, ... of a clip of `available` frames, `clip_length` of them; a short clip repeats its last."""
    kept = list(range(0, available, frame_stride))[:clip_length]
    return kept + [kept[-1]] * (clip_length - len(kept))


def clip_dataset(name: str, class_names: list[str], clips: torch.Tensor, labels: torch.Tensor, *, where: str,
                 seed: int, query_fraction: float, train_per_class: int | None,
                 max_queries: int | None) -> RetrievalDataset:
    """Seeded per-class split as the image loaders: query_fraction queries, the rest database = train."""
    check_all_classes_present(labels, class_names, where)
    train, query, database = split_queries(ClipSplit(clips, labels), query_fraction, train_per_class, seed, where)
    return with_query_cap(RetrievalDataset(name, class_names, train, query, database), max_queries, seed)


def _frame_number(path: Path) -> int | None:
    digits = re.findall(r"\d+", path.stem)
    return int(digits[-1]) if digits else None


def _clip_frames(clip_dir: Path) -> list[Path]:
    """The frame files of one clip in order; numbered frames must run without gaps."""
    frames = sorted((p for p in clip_dir.iterdir() if p.is_file() and p.suffix.lower() in FRAME_SUFFIXES),
                    key=lambda p: (_frame_number(p) is None, _frame_number(p) or 0, p.name))
    if not frames:
        raise PadhashError(f"{clip_dir}: no frames (expected {', '.join(FRAME_SUFFIXES)} files)")
    numbers = [_frame_number(p) for p in frames]
    if None not in numbers:
        missing = sorted(set(range(numbers[0], numbers[-1] + 1)) - set(numbers))
        if missing:
            raise PadhashError(f"{clip_dir}: missing frame number(s) {', '.join(map(str, missing[:5]))}")
    return frames


def _read_clip(clip_dir: Path, clip_length: int, frame_stride: int, size: int) -> torch.Tensor:
    frames = _clip_frames(clip_dir)
    shapes = set()
    for path in frames:
        try:
            with Image.open(path) as img:
                shapes.add(img.size)
        except OSError:
            raise PadhashError(f"{path}: not a readable image") from None
    if len(shapes) > 1:
        raise PadhashError(f"{clip_dir}: frames of different sizes {sorted(shapes)}")
    picked = [frames[i] for i in frame_indices(len(frames), clip_length, frame_stride)]
    return torch.stack([load_image_file(p, size) for p in picked])


@register("clip-folder", "video clips as frame folders (root/<class>/<clip>/<frames>.jpg|png, JHMDB / UCF-101 "
                         "frames); clip_length (default 8, at most 40), frame_stride; seeded per-class split")
def load_clip_folder(root: str | None, *, seed: int = 0, image_size: int | None = None,
                     clip_length: int = DEFAULT_CLIP_LENGTH, frame_stride: int = 1, query_fraction: float = 0.1,
                     train_per_class: int | None = None, max_queries: int | None = None) -> RetrievalDataset:
    folder = dataset_root(root, "clip-folder", "a folder with one sub-folder of clip folders per class")
    check_frame_options(clip_length, frame_stride, str(folder))
    class_dirs = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not class_dirs:
        raise PadhashError(f"{folder}: no class sub-folders")
    clips, classes = [], []
    for c, class_dir in enumerate(class_dirs):
        clip_dirs = sorted(p for p in class_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
        if not clip_dirs:
            raise PadhashError(f"{class_dir}: no clip folders (expected {class_dir}/<clip>/<frames>)")
        for clip_dir in clip_dirs:
            clips.append(_read_clip(clip_dir, clip_length, frame_stride, image_size or DEFAULT_FOLDER_SIZE))
            classes.append(c)
    labels = torch.nn.functional.one_hot(torch.tensor(classes), len(class_dirs)).float()
    return clip_dataset(folder.name, [d.name for d in class_dirs], torch.stack(clips), labels, where=str(folder),
                        seed=seed, query_fraction=query_fraction, train_per_class=train_per_class,
                        max_queries=max_queries)


@register("clip-npz", "a .npz (root) with clips (N, T, H, W, 3) uint8 and labels (N,) int or (N, C) multi-hot "
                      "[class_names]; clip_length, frame_stride; seeded per-class split")
def load_clip_npz(root: str | None, *, seed: int = 0, image_size: int | None = None,
                  clip_length: int = DEFAULT_CLIP_LENGTH, frame_stride: int = 1, query_fraction: float = 0.1,
                  train_per_class: int | None = None, max_queries: int | None = None) -> RetrievalDataset:
    from padhash.data.arrays import _label_tensor, _read_npz

    path = dataset_root(root, "clip-npz", "the path of the .npz file", folder=False)
    check_frame_options(clip_length, frame_stride, str(path))
    arrays = _read_npz(path)
    missing = [k for k in ("clips", "labels") if k not in arrays]
    if missing:
        raise PadhashError(f"{path}: missing array(s) {', '.join(missing)} (has: {', '.join(sorted(arrays)) or 'none'})")
    x, y = arrays["clips"], arrays["labels"]
    if x.ndim != 5 or x.shape[-1] != 3 or x.dtype != np.uint8 or x.shape[2] != x.shape[3]:
        raise PadhashError(f"{path}: clips must be uint8 of shape (N, T, H, H, 3), got {x.dtype} {x.shape}")
    names = None
    if "class_names" in arrays:
        names = [str(n) for n in arrays["class_names"].tolist()]
    num_classes = len(names) if names else (int(y.shape[1]) if y.ndim == 2 else int(y.max(initial=-1)) + 1)
    labels = _label_tensor(y, len(x), num_classes, f"{path}: labels")
    keep = frame_indices(x.shape[1], clip_length, frame_stride)
    clips = torch.from_numpy(np.ascontiguousarray(x[:, keep])).permute(0, 1, 4, 2, 3).float().div_(255.0)
    if image_size:
        n, t = clips.shape[:2]
        clips = resize_images(clips.flatten(0, 1), image_size).view(n, t, 3, image_size, image_size)
    return clip_dataset(path.stem, names or [str(c) for c in range(num_classes)], clips, labels, where=str(path),
                        seed=seed, query_fraction=query_fraction, train_per_class=train_per_class,
                        max_queries=max_queries)
