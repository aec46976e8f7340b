"""The service's database: every item's pixels (uint8, at the served image size) and tags, on disk.

Layout of the store folder: `chunk-00000000.npz`, `chunk-00000001.npz`, ... each holding `ids` (int64),
`pixels` (uint8 N×H×W×3) and `labels` (float32 N×C multi-hot). Chunks are only ever added: a new one is written
to a temp file, fsynced, renamed into place and the folder fsynced, so once `append` returns (and the service
answers 2xx) the items survive a kill or power loss; a killed write leaves only a temp file, removed on open.
Ids are assigned here (the next free integer), never taken from a request; file names come from the sequence.
"""
from __future__ import annotations

import os
import re
import tempfile
import threading
from pathlib import Path

import numpy as np
import torch

from padhash.errors import PadhashError

CHUNK = re.compile(r"^chunk-(\d{8})\.npz$")


def to_pixels(images: torch.Tensor) -> np.ndarray:
    """float [0,1] NCHW → uint8 NHWC (what a PNG holds)."""
    return (images.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()


def to_images(pixels: np.ndarray) -> torch.Tensor:
    """uint8 NHWC → float32 [0,1] NCHW."""
    return torch.from_numpy(np.ascontiguousarray(pixels)).permute(0, 3, 1, 2).float().div_(255.0)


class ItemStore:
    """Append-only item storage; `append` is serialised by a lock and durable when it returns."""

    def __init__(self, root: Path, image_size: int, num_classes: int):
        self.root = Path(root)
        self.image_size, self.num_classes = image_size, num_classes
        self.root.mkdir(parents=True, exist_ok=True)
        self.lock = threading.Lock()
        for leftover in self.root.glob(".chunk-*.tmp"):  # a write killed before its rename: never acknowledged
            leftover.unlink()
        pixels, labels, self._next_chunk = [], [], 0
        for path in sorted(p for p in self.root.iterdir() if CHUNK.match(p.name)):
            ids, px, lab = self._read(path)
            if len(ids) and int(ids[0]) != sum(len(p) for p in pixels):
                raise PadhashError(f"{path}: item ids do not continue the previous chunk (store damaged)")
            pixels.append(px)
            labels.append(lab)
            self._next_chunk = int(CHUNK.match(path.name).group(1)) + 1
        shape = (0, image_size, image_size, 3)
        self.pixels = np.concatenate(pixels) if pixels else np.zeros(shape, np.uint8)
        self.labels = np.concatenate(labels) if labels else np.zeros((0, num_classes), np.float32)

    def __len__(self) -> int:
        return len(self.pixels)

    def _read(self, path: Path):
        try:
            with np.load(path, allow_pickle=False) as data:
                ids, px, lab = data["ids"], data["pixels"], data["labels"]
        except (OSError, ValueError, KeyError) as exc:
            raise PadhashError(f"{path}: not a readable store chunk ({exc})") from None
        if px.shape[1:] != (self.image_size, self.image_size, 3) or lab.shape[1:] != (self.num_classes,):
            raise PadhashError(f"{path}: items of shape {px.shape[1:]} / {lab.shape[1:]} do not fit this service "
                               f"({self.image_size} px, {self.num_classes} classes)")
        return ids, px, lab

    def append(self, pixels: np.ndarray, labels: np.ndarray) -> list[int]:
        """Write the items as one new chunk (durably) and return their ids. Caller holds `self.lock`."""
        start = len(self)
        ids = np.arange(start, start + len(pixels), dtype=np.int64)
        path = self.root / f"chunk-{self._next_chunk:08d}.npz"
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".chunk-", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                np.savez(fh, ids=ids, pixels=pixels, labels=labels.astype(np.float32))
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        dir_fd = os.open(self.root, os.O_RDONLY)
        try:
            os.fsync(dir_fd)  # the rename itself must reach the disk before we acknowledge
        finally:
            os.close(dir_fd)
        self._next_chunk += 1
        self.pixels = np.concatenate([self.pixels, pixels])
        self.labels = np.concatenate([self.labels, labels.astype(np.float32)])
        return ids.tolist()
