"""The embedded clip set `digits-motion`: SYNTHETIC MOTION OVER REAL IMAGES. Each clip moves one real
scikit-learn digit (8×8, upsampled to a 12×12 tile) along a straight path on a black 32×32 canvas; the class is
the path: 4 axes (horizontal, vertical, diagonal, anti-diagonal) × 2 directions = 8 classes, and the digit shown
is drawn at random, so appearance carries no class information.

Why order matters: a clip of class "axis, forward" and one of "axis, backward" pass through the same positions
(same start/end pair, swapped) with the same distribution of digits and offsets, so the SET of their frames has
the same distribution. Any order-free fusion (mean-pooling frame features) therefore cannot tell a direction from
its reverse: it can separate the 4 axes at best, while a temporal model (LSTM) can separate all 8 classes.
"""
from __future__ import annotations

import torch
from sklearn.datasets import load_digits

from padhash.data.clips import DEFAULT_CLIP_LENGTH, check_frame_options, clip_dataset, frame_indices
from padhash.data.dataset import RetrievalDataset, register
from padhash.data.splits import resize_images
from padhash.errors import PadhashError

CANVAS, TILE, SOURCE_FRAMES = 32, 12, 16
AXES = {"horizontal": (1, 0), "vertical": (0, 1), "diagonal": (1, 1), "antidiagonal": (1, -1)}
CLASS_NAMES = [f"{axis}-{way}" for axis in AXES for way in ("forward", "backward")]


def _paths(count: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Per clip (top-left x, y) of the tile over SOURCE_FRAMES frames (count·8, SOURCE_FRAMES, 2) and the class."""
    span = CANVAS - TILE
    t = torch.linspace(0, 1, SOURCE_FRAMES)
    positions, classes = [], []
    for c, (axis, way) in enumerate((a, w) for a in AXES for w in (0, 1)):
        dx, dy = AXES[axis]
        # a random offset across the path, so positions differ from clip to clip
        offset = torch.randint(-span // 4, span // 4 + 1, (count, 1), generator=generator).float()
        along = t if way == 0 else 1 - t
        x = (span * along if dx > 0 else torch.full_like(t, span / 2)).expand(count, -1)
        y = {1: span * along, 0: torch.full_like(t, span / 2), -1: span * (1 - along)}[dy].expand(count, -1)
        if dx == 0:
            x = x + offset
        elif dy == 0:
            y = y + offset
        else:  # diagonals: shift perpendicular, kept on the canvas
            x, y = x + offset / 2, y - dy * offset / 2
        positions.append(torch.stack([x, y], -1).round().clamp(0, span).long())
        classes += [c] * count
    return torch.cat(positions), torch.tensor(classes)


@register("digits-motion", "embedded clip set, synthetic motion over real digits: a scikit-learn digit moving on a "
                           "32x32 canvas, class = path (4 axes x 2 directions = 8); mean-pooling cannot tell a "
                           "direction from its reverse; clips_per_class (default 60), clip_length 8, frame_stride 2")
def load_digits_motion(root: str | None = None, *, seed: int = 0, image_size: int | None = None,
                       clips_per_class: int = 60, clip_length: int = DEFAULT_CLIP_LENGTH, frame_stride: int = 2,
                       query_fraction: float = 0.1, train_per_class: int | None = None,
                       max_queries: int | None = None) -> RetrievalDataset:
    if root is not None:
        raise PadhashError(f"dataset 'digits-motion' is embedded and takes no root (got {root!r})")
    if isinstance(clips_per_class, bool) or not isinstance(clips_per_class, int) or clips_per_class < 2:
        raise PadhashError(f"dataset 'digits-motion': clips_per_class must be an integer ≥ 2, got {clips_per_class!r}")
    check_frame_options(clip_length, frame_stride, "dataset 'digits-motion'")
    generator = torch.Generator().manual_seed(seed)
    pixels = torch.as_tensor(load_digits().images, dtype=torch.float32).div_(16.0)[:, None]
    tiles = resize_images(pixels, TILE)[:, 0]
    positions, classes = _paths(clips_per_class, generator)
    keep = frame_indices(SOURCE_FRAMES, clip_length, frame_stride)
    digit = torch.randint(0, len(tiles), (len(classes),), generator=generator)
    clips = torch.zeros(len(classes), len(keep), CANVAS, CANVAS)
    for i in range(len(classes)):
        for f, source in enumerate(keep):
            x, y = positions[i, source].tolist()
            clips[i, f, y:y + TILE, x:x + TILE] = tiles[digit[i]]
    if image_size and image_size != CANVAS:
        clips = resize_images(clips.flatten(0, 1)[:, None], image_size).view(len(classes), len(keep), image_size,
                                                                             image_size)
    clips = clips[:, :, None].expand(-1, -1, 3, -1, -1).contiguous()
    labels = torch.nn.functional.one_hot(classes, len(CLASS_NAMES)).float()
    return clip_dataset("digits-motion", list(CLASS_NAMES), clips, labels, where="dataset 'digits-motion'", seed=seed,
                        query_fraction=query_fraction, train_per_class=train_per_class, max_queries=max_queries)
