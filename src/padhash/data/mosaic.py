"""The embedded multi-label set `digits-mosaic`: COMPOSED FROM REAL IMAGES. Each 32×32 image is a 2×2 mosaic of
16×16 tiles; each tile is a real scikit-learn digit, or blank with probability `blank` (at least one tile is a
digit). The label is the union of the tiles' classes (multi-hot over 10 digits), so retrieval follows the
multi-label convention of MS-COCO / NUS-WIDE: two images are relevant when they share at least one digit.
"""
from __future__ import annotations

import torch
from sklearn.datasets import load_digits

from padhash.data.dataset import RetrievalDataset, check_all_classes_present, register, split_queries, with_query_cap
from padhash.data.splits import TensorSplit, resize_images
from padhash.errors import PadhashError

SIDE, TILE = 32, 16


@register("digits-mosaic", "embedded multi-label set composed of real digits: 2x2 mosaics of scikit-learn digits "
                           "(a tile blank with probability blank=0.5), label = union of the tiles' digits; "
                           "num_images (default 2000), per first-label 10% queries, the rest database = train")
def load_digits_mosaic(root: str | None = None, *, seed: int = 0, image_size: int | None = None,
                       num_images: int = 2000, blank: float = 0.5, query_fraction: float = 0.1,
                       train_per_class: int | None = None, max_queries: int | None = None) -> RetrievalDataset:
    where = "dataset 'digits-mosaic'"
    if root is not None:
        raise PadhashError(f"{where} is embedded and takes no root (got {root!r})")
    if isinstance(num_images, bool) or not isinstance(num_images, int) or num_images < 20:
        raise PadhashError(f"{where}: num_images must be an integer ≥ 20, got {num_images!r}")
    if isinstance(blank, bool) or not isinstance(blank, (int, float)) or not 0 <= blank < 1:
        raise PadhashError(f"{where}: blank must be in [0, 1), got {blank!r}")
    bunch = load_digits()
    tiles = resize_images(torch.as_tensor(bunch.images, dtype=torch.float32).div_(16.0)[:, None], TILE)[:, 0]
    targets = torch.as_tensor(bunch.target)
    g = torch.Generator().manual_seed(seed)
    chosen = torch.randint(0, len(tiles), (num_images, 4), generator=g)
    present = torch.rand(num_images, 4, generator=g) >= blank
    present[torch.arange(num_images), torch.randint(0, 4, (num_images,), generator=g)] = True  # ≥ 1 digit
    images = torch.zeros(num_images, SIDE, SIDE)
    labels = torch.zeros(num_images, 10)
    for q, (row, col) in enumerate(((0, 0), (0, 1), (1, 0), (1, 1))):
        tile = tiles[chosen[:, q]] * present[:, q, None, None]
        images[:, row * TILE:(row + 1) * TILE, col * TILE:(col + 1) * TILE] = tile
        labels[torch.arange(num_images)[present[:, q]], targets[chosen[present[:, q], q]]] = 1.0
    images = resize_images(images[:, None], image_size or SIDE).expand(-1, 3, -1, -1).contiguous()
    names = [str(d) for d in range(10)]
    check_all_classes_present(labels, names, where)
    train, query, database = split_queries(TensorSplit(images, labels), query_fraction, train_per_class, seed, where)
    return with_query_cap(RetrievalDataset("digits-mosaic", names, train, query, database), max_queries, seed)
