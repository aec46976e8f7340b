"""Array-backed data sets: `.npz` files and the shared CIFAR-10 subset (CIFAR-10 batches: `padhash.data.cifar`).

All go through `build_from_arrays`, which validates shapes and labels, then applies a split preset:
- "paper": training set = database = the train arrays (or x_db when given), queries = the test arrays;
- "deephash": train + test (+ db) pooled, then per class (seeded) `query_per_class` queries, `train_per_class`
  training images and the rest database (DeepHash-pytorch's "cifar10" protocol: database excludes train).
"""
from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np
import torch

from padhash.data.dataset import (RetrievalDataset, check_all_classes_present, check_preset, dataset_root, register,
                                  with_query_cap)
from padhash.data.sampling import split_per_class
from padhash.data.splits import TensorSplit, resize_images
from padhash.errors import PadhashError

PRESETS = ("paper", "deephash")
DEEPHASH_QUERY_PER_CLASS, DEEPHASH_TRAIN_PER_CLASS = 100, 500


def _image_tensor(x: np.ndarray, where: str) -> torch.Tensor:
    """HWC or NCHW uint8 / float [0,1] array → NCHW tensor of the same dtype (scaled later, per split)."""
    if x.ndim != 4 or 3 not in (x.shape[1], x.shape[3]):
        raise PadhashError(f"{where}: expected images of shape (N, H, W, 3) or (N, 3, H, W), got {x.shape}")
    tensor = torch.from_numpy(np.ascontiguousarray(x))
    if x.shape[1] != 3:
        tensor = tensor.permute(0, 3, 1, 2).contiguous()
    if tensor.shape[2] != tensor.shape[3]:
        raise PadhashError(f"{where}: images must be square, got {tensor.shape[2]}x{tensor.shape[3]}")
    if x.dtype == np.uint8:
        return tensor
    if not np.issubdtype(x.dtype, np.floating):
        raise PadhashError(f"{where}: images must be uint8 (0..255) or float in [0, 1], got dtype {x.dtype}")
    lo, hi = (float(tensor.min()), float(tensor.max())) if tensor.numel() else (0.0, 0.0)
    if lo < 0.0 or hi > 1.0 or not np.isfinite([lo, hi]).all():
        raise PadhashError(f"{where}: float images must lie in [0, 1], found values in [{lo}, {hi}]")
    return tensor.float()


def _float_images(x: torch.Tensor, image_size: int | None) -> torch.Tensor:
    x = x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()
    return resize_images(x, image_size) if image_size else x


def _num_classes(labels: list[np.ndarray], class_names: list[str] | None) -> int:
    if class_names is not None:
        return len(class_names)
    for y in labels:
        if y.ndim == 2:
            return int(y.shape[1])
    return int(max((int(y.max()) for y in labels if y.size), default=-1)) + 1


def _label_tensor(y: np.ndarray, n: int, num_classes: int, where: str) -> torch.Tensor:
    """Integer class indices (N,) or 0/1 multi-hot (N, C) → float multi-hot (N, C)."""
    if y.ndim not in (1, 2) or y.shape[0] != n:
        raise PadhashError(f"{where}: expected {n} labels (one per image), got an array of shape {y.shape}")
    if y.ndim == 2:
        if y.shape[1] != num_classes:
            raise PadhashError(f"{where}: {y.shape[1]} label columns, expected {num_classes} (one per class)")
        if not np.isin(y, (0, 1)).all():
            raise PadhashError(f"{where}: multi-hot labels must be 0 or 1")
        return torch.from_numpy(np.asarray(y, dtype=np.float32))
    if not np.issubdtype(y.dtype, np.integer):
        raise PadhashError(f"{where}: class indices must be integers, got dtype {y.dtype}")
    if y.size and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        raise PadhashError(f"{where}: class index out of range 0..{num_classes - 1} "
                           f"(found {int(y.min())}..{int(y.max())})")
    return torch.nn.functional.one_hot(torch.from_numpy(y.astype(np.int64)), num_classes).float()


def build_from_arrays(name: str, source: str, parts: dict[str, tuple[np.ndarray, np.ndarray]],
                      class_names: list[str] | None, *, preset: str | None, seed: int, image_size: int | None,
                      query_per_class: int | None, train_per_class: int | None,
                      max_queries: int | None) -> RetrievalDataset:
    """parts: "train", "test" and optionally "db" → (images, labels) arrays; `source` names the file in errors."""
    preset = check_preset(name, preset, PRESETS)
    if preset == "paper" and (query_per_class is not None or train_per_class is not None):
        raise PadhashError(f"dataset {name!r}: query_per_class / train_per_class apply to preset 'deephash' only")
    num_classes = _num_classes([y for _, y in parts.values()], class_names)
    if num_classes < 1:
        raise PadhashError(f"{source}: no labels found")
    class_names = class_names or [str(c) for c in range(num_classes)]
    images, labels = {}, {}
    for part, (x, y) in parts.items():
        x_name, y_name = f"x_{part}", f"y_{part}"
        images[part] = _image_tensor(x, f"{source}: {x_name}")
        labels[part] = _label_tensor(y, len(images[part]), num_classes, f"{source}: {y_name}")
        if images[part].shape[-1] != images["train"].shape[-1]:
            raise PadhashError(f"{source}: {x_name} images are {images[part].shape[-1]} pixels wide, "
                               f"x_train's are {images['train'].shape[-1]}")
    if len({x.dtype for x in images.values()}) > 1:  # uint8 beside float parts: scale all to [0,1] before pooling
        images = {part: _float_images(x, None) for part, x in images.items()}

    def split(part_images: torch.Tensor, part_labels: torch.Tensor) -> TensorSplit:
        return TensorSplit(_float_images(part_images, image_size), part_labels)

    if preset == "paper":
        check_all_classes_present(labels["train"], class_names, f"{source}: y_train")
        train = split(images["train"], labels["train"])
        database = split(images["db"], labels["db"]) if "db" in parts else train
        query = split(images["test"], labels["test"])
    else:
        pooled_x, pooled_y = torch.cat(list(images.values())), torch.cat(list(labels.values()))
        check_all_classes_present(pooled_y, class_names, f"{source}: labels")
        counts = [DEEPHASH_QUERY_PER_CLASS if query_per_class is None else query_per_class,
                  DEEPHASH_TRAIN_PER_CLASS if train_per_class is None else train_per_class]
        if any(isinstance(c, bool) or not isinstance(c, int) or c < 1 for c in counts):
            raise PadhashError(f"dataset {name!r}: query_per_class and train_per_class must be positive integers")
        q_idx, t_idx, db_idx = split_per_class(pooled_y, counts, seed, f"{source} (preset deephash)")
        query, train, database = (split(pooled_x[i], pooled_y[i]) for i in (q_idx, t_idx, db_idx))
    return with_query_cap(RetrievalDataset(name, list(class_names), train, query, database), max_queries, seed)


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise PadhashError(f"{path}: no such file")
    if not zipfile.is_zipfile(path):
        raise PadhashError(f"{path}: not a readable .npz file (not a zip archive)")
    try:
        with np.load(path, allow_pickle=False) as archive:  # never unpickle: object arrays are refused
            return {key: archive[key] for key in archive.files}
    except ValueError as exc:
        raise PadhashError(f"{path}: cannot read without unpickling ({exc}); store plain numeric/string "
                           "arrays") from None
    except (OSError, zipfile.BadZipFile, EOFError) as exc:
        raise PadhashError(f"{path}: not a readable .npz file ({exc.__class__.__name__})") from None


@register("npz", "a .npz file (root) with x_train, y_train, x_test, y_test [x_db, y_db] [class_names]: HWC uint8 or "
                 "NCHW float images, int or multi-hot labels; preset paper (train = database) or deephash")
def load_npz(root: str | None, *, seed: int = 0, image_size: int | None = None, preset: str | None = None,
             query_per_class: int | None = None, train_per_class: int | None = None,
             max_queries: int | None = None) -> RetrievalDataset:
    path = dataset_root(root, "npz", "the path of the .npz file", folder=False)
    arrays = _read_npz(path)
    required = ["x_train", "y_train", "x_test", "y_test"]
    if ("x_db" in arrays) != ("y_db" in arrays):
        required += ["x_db", "y_db"]
    missing = [key for key in required if key not in arrays]
    if missing:
        present = ", ".join(sorted(arrays)) or "none"
        raise PadhashError(f"{path}: missing array(s) {', '.join(missing)} (has: {present})")
    parts = {"train": (arrays["x_train"], arrays["y_train"]), "test": (arrays["x_test"], arrays["y_test"])}
    if "x_db" in arrays:
        parts["db"] = (arrays["x_db"], arrays["y_db"])
    class_names = None
    if "class_names" in arrays:
        names = arrays["class_names"]
        if names.ndim != 1 or names.dtype.kind not in "US":
            raise PadhashError(f"{path}: class_names must be a 1-D string array, got {names.dtype} {names.shape}")
        class_names = [n.decode() if isinstance(n, bytes) else str(n) for n in names.tolist()]
    return build_from_arrays(path.stem, str(path), parts, class_names, preset=preset, seed=seed,
                             image_size=image_size, query_per_class=query_per_class, train_per_class=train_per_class,
                             max_queries=max_queries)


def shared_data_dir() -> Path:
    """../shared/data beside the project (override with $PADHASH_SHARED_DATA)."""
    env = os.environ.get("PADHASH_SHARED_DATA")
    if env:
        return Path(env)
    project_root = Path(__file__).resolve().parents[3]  # src/padhash/data/arrays.py → project root
    return project_root.parent / "shared" / "data"


def shared_cifar10_subset_path() -> Path:
    return shared_data_dir() / "cifar10_subset.npz"


@register("cifar10-subset", "the shared 5,592-image real CIFAR-10 subset (../shared/data/cifar10_subset.npz), "
                            "paper preset: train = database = 4,660 train images, 932 test queries")
def load_shared_cifar10_subset(root: str | None = None, *, seed: int = 0, image_size: int | None = None,
                               preset: str | None = None, query_per_class: int | None = None,
                               train_per_class: int | None = None, max_queries: int | None = None) -> RetrievalDataset:
    ds = load_npz(str(root or shared_cifar10_subset_path()), seed=seed, image_size=image_size, preset=preset,
                  query_per_class=query_per_class, train_per_class=train_per_class, max_queries=max_queries)
    ds.name = "cifar10-subset"
    return ds


def shared_cifar10_subset(**options) -> RetrievalDataset | None:
    """The shared CIFAR-10 subset with the paper preset (options: seed, image_size, max_queries, ...),
    or None when the file is absent."""
    if not shared_cifar10_subset_path().is_file():
        return None
    return load_shared_cifar10_subset(None, **options)
