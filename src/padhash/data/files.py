"""Data sets of image files, decoded lazily (`FileSplit`): DeepHash-style image lists and class folders."""
from __future__ import annotations

from pathlib import Path

import torch

from padhash.data.dataset import (RetrievalDataset, check_all_classes_present, check_preset, dataset_root, register,
                                  split_queries, with_query_cap)
from padhash.data.splits import FileSplit
from padhash.errors import PadhashError

DEFAULT_IMAGE_SIZE = 224  # DeepHash-pytorch's crop size for list data sets
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
LIST_FILES = {"train": "train.txt", "query": "test.txt", "database": "database.txt"}


def _read_list(list_path: Path, data_path: Path, width: int | None) -> tuple[list[Path], torch.Tensor]:
    """Lines `relative/path.jpg 0 1 0 ...` → (image paths, multi-hot labels). Every problem names file and line."""
    if not list_path.is_file():
        raise PadhashError(f"{list_path}: no such file")
    paths, rows = [], []
    for number, line in enumerate(list_path.read_text(encoding="utf-8").splitlines(), start=1):
        tokens = line.split()
        if not tokens:
            continue
        where = f"{list_path}:{number}"
        if len(tokens) < 2:
            raise PadhashError(f"{where}: expected 'relative/path.jpg 0 1 0 ...', got {line.strip()!r}")
        if any(t not in ("0", "1") for t in tokens[1:]):
            raise PadhashError(f"{where}: labels must be 0 or 1, got {' '.join(tokens[1:])!r}")
        if width is not None and len(tokens) - 1 != width:
            raise PadhashError(f"{where}: {len(tokens) - 1} labels, expected {width} (one per class)")
        width = len(tokens) - 1
        image = data_path / tokens[0]
        if not image.is_file():
            raise PadhashError(f"{image}: no such file (listed in {where})")
        paths.append(image)
        rows.append([float(t) for t in tokens[1:]])
    if not paths:
        raise PadhashError(f"{list_path}: no images listed")
    return paths, torch.tensor(rows, dtype=torch.float32)


def _read_class_names(root: Path, num_classes: int) -> list[str]:
    """Optional root/classes.txt, one name per line; default "0".."C-1"."""
    names_path = root / "classes.txt"
    if not names_path.is_file():
        return [str(c) for c in range(num_classes)]
    names = [line.strip() for line in names_path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if len(names) != num_classes:
        raise PadhashError(f"{names_path}: {len(names)} class names, but the lists have {num_classes} label columns")
    return names


@register("image-list", "DeepHash-style lists (root: train.txt, test.txt = queries, database.txt; lines "
                        "'relative/path.jpg 0 1 0 ...', multi-label; optional classes.txt), images read lazily")
def load_image_list(root: str | None, *, seed: int = 0, image_size: int | None = None, data_path: str | None = None,
                    max_queries: int | None = None) -> RetrievalDataset:
    """Image paths are relative to `data_path` (default: root), as DeepHash-pytorch's config["data_path"]."""
    folder = dataset_root(root, "image-list", "the folder holding train.txt, test.txt, database.txt")
    base = Path(data_path) if data_path is not None else folder
    size = image_size or DEFAULT_IMAGE_SIZE
    width, splits = None, {}
    for split_name, file_name in LIST_FILES.items():
        paths, labels = _read_list(folder / file_name, base, width)
        width = labels.shape[1]
        splits[split_name] = FileSplit(paths, labels, size)
    class_names = _read_class_names(folder, width)
    check_all_classes_present(splits["train"].labels, class_names, str(folder / LIST_FILES["train"]))
    ds = RetrievalDataset(folder.name, class_names, splits["train"], splits["query"], splits["database"])
    return with_query_cap(ds, max_queries, seed)


@register("image-folder", "class folders (root/<class>/*.png|jpg); seeded per-class split: query_fraction "
                          "queries, the rest database = train (or train_per_class from it), images read lazily")
def load_image_folder(root: str | None, *, seed: int = 0, image_size: int | None = None, preset: str | None = None,
                      query_fraction: float = 0.1, train_per_class: int | None = None,
                      max_queries: int | None = None) -> RetrievalDataset:
    folder = dataset_root(root, "image-folder", "a folder with one sub-folder of images per class")
    check_preset("image-folder", preset, ("paper",))
    class_dirs = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not class_dirs:
        raise PadhashError(f"{folder}: no class sub-folders")
    paths, classes = [], []
    for c, class_dir in enumerate(class_dirs):
        files = sorted(p for p in class_dir.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise PadhashError(f"{class_dir}: no images (expected {', '.join(IMAGE_SUFFIXES)} files)")
        paths += files
        classes += [c] * len(files)
    labels = torch.nn.functional.one_hot(torch.tensor(classes), len(class_dirs)).float()
    everything = FileSplit(paths, labels, image_size or DEFAULT_IMAGE_SIZE)
    train, query, database = split_queries(everything, query_fraction, train_per_class, seed, str(folder))
    ds = RetrievalDataset(folder.name, [d.name for d in class_dirs], train, query, database)
    return with_query_cap(ds, max_queries, seed)
