"""The embedded default data set: scikit-learn's 1,797 real 8×8 handwritten digits as 32×32 RGB (no download)."""
from __future__ import annotations

import torch
from sklearn.datasets import load_digits

from padhash.data.dataset import RetrievalDataset, check_preset, register, split_queries, with_query_cap
from padhash.data.splits import TensorSplit, resize_images
from padhash.errors import PadhashError


@register("digits", "embedded default: scikit-learn digits (1,797 real 8x8 handwritten digits, 10 classes) "
                    "as 32x32 RGB; per class 10% queries, the rest database = train")
def load_digits_dataset(root: str | None = None, *, seed: int = 0, image_size: int | None = None,
                        preset: str | None = None, query_fraction: float = 0.1, train_per_class: int | None = None,
                        max_queries: int | None = None) -> RetrievalDataset:
    """Seeded stratified split. preset "paper": train = database (the training set is searched).
    train_per_class=n instead draws a seeded n-per-class training set from the database."""
    if root is not None:
        raise PadhashError(f"dataset 'digits' is embedded and takes no root (got {root!r})")
    check_preset("digits", preset, ("paper",))
    bunch = load_digits()
    pixels = torch.as_tensor(bunch.images, dtype=torch.float32).div_(16.0)  # values 0..16
    images = resize_images(pixels[:, None], image_size or 32).expand(-1, 3, -1, -1).contiguous()
    targets = torch.as_tensor(bunch.target, dtype=torch.long)
    labels = torch.nn.functional.one_hot(targets, 10).float()
    train, query, database = split_queries(TensorSplit(images, labels), query_fraction, train_per_class, seed,
                                           "dataset 'digits'")
    ds = RetrievalDataset("digits", [str(d) for d in range(10)], train, query, database)
    return with_query_cap(ds, max_queries, seed)
