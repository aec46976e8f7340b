"""`RetrievalDataset`, the loader registry and `load_dataset` / `load_dataset_from`."""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from padhash.data.sampling import cap_queries, check_train_part, split_per_class, train_part_indices
from padhash.data.splits import Split
from padhash.errors import PadhashError
from padhash.rng import derive_seed

# loader name -> one-line description (printed by `padhash datasets`)
DATASETS: dict[str, str] = {}
_LOADERS: dict[str, Callable[..., "RetrievalDataset"]] = {}


@dataclass
class RetrievalDataset:
    """Train / query / database splits of one data set. With the `paper` presets `train is database`:
    poisons added to the training set are also in the database the victim searches."""

    name: str
    class_names: list[str]
    train: Split
    query: Split
    database: Split

    def __post_init__(self) -> None:
        for split_name in ("train", "query", "database"):
            split = getattr(self, split_name)
            if split.num_classes != len(self.class_names):
                raise PadhashError(f"{self.name}: {split_name} labels have {split.num_classes} classes, "
                                   f"but there are {len(self.class_names)} class names")
        # no split may be empty, and training needs two images (BatchNorm): else every metric is meaningless
        for split_name, least in (("train", 2), ("query", 1), ("database", 1)):
            if len(getattr(self, split_name)) < least:
                raise PadhashError(f"{self.name}: the {split_name} split has {len(getattr(self, split_name))} "
                                   f"image(s); at least {least} needed")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def summary(self) -> str:
        """One line: sizes, classes, image size and whether train is the database."""
        shared = " (train = database)" if self.train is self.database else ""
        return (f"{self.name}: {self.num_classes} classes, train {len(self.train)}, query {len(self.query)}, "
                f"database {len(self.database)}{shared}, images {self.train.image_size}x{self.train.image_size}")


@dataclass
class DataConfig:
    name: str = "digits"          # a key of DATASETS
    root: str | None = None       # file / folder for loaders that need one
    preset: str | None = None     # split preset (cifar10 / npz: "paper" | "deephash"); None = the loader's default
    seed: int = 0                 # split seed
    image_size: int | None = None  # resize (None = native; digits are 32, image files 224)
    options: dict[str, Any] = field(default_factory=dict)  # further loader options, e.g. max_queries, and for
                                                            # every loader train_part: [lo, hi] (see with_train_part)


def register(name: str, description: str):
    """Decorator: add a loader `fn(root, *, seed, image_size, preset, **options)` under `name`."""
    def add(fn):
        DATASETS[name] = description
        _LOADERS[name] = fn
        return fn
    return add


def load_dataset(name: str, root: str | None = None, **options: Any) -> RetrievalDataset:
    """Load data set `name` (a key of DATASETS). Options: seed (split seed), image_size, preset, train_part
    (any loader: `with_train_part`) and the loader's own options; an unknown name or option raises PadhashError
    listing the allowed ones."""
    loader = _LOADERS.get(name)
    if loader is None:
        raise PadhashError(f"unknown dataset {name!r} (known: {', '.join(sorted(_LOADERS))})")
    train_part = options.pop("train_part", None)
    allowed = [p for p in inspect.signature(loader).parameters if p != "root"] + ["train_part"]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise PadhashError(f"dataset {name!r}: unknown option(s) {', '.join(unknown)} (allowed: {', '.join(allowed)})")
    seed = options.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise PadhashError(f"dataset {name!r}: seed must be a non-negative integer, got {seed!r}")
    image_size = options.get("image_size")
    if image_size is not None and (isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1):
        raise PadhashError(f"dataset {name!r}: image_size must be a positive integer, got {image_size!r}")
    if root is not None and not Path(root).is_absolute() and not Path(root).exists():
        # the shipped configs' roots (../shared/data/...) hold only from a checkout beside ../shared
        raise PadhashError(f"{root}: no such file or folder (a relative data root is read from the working "
                           f"directory, {Path.cwd()}; give an absolute path or run from where it holds)")
    if train_part is None:
        return loader(root, **options)
    check_train_part(train_part)  # before loading: a bad range fails at once
    return with_train_part(loader(root, **options), train_part, seed)


def load_dataset_from(cfg: DataConfig) -> RetrievalDataset:
    options = dict(cfg.options)
    options.update(seed=cfg.seed, image_size=cfg.image_size)
    if cfg.preset is not None:
        options["preset"] = cfg.preset
    return load_dataset(cfg.name, cfg.root, **options)


def dataset_root(root: str | None, dataset: str, needs: str, folder: bool = True) -> Path:
    """A loader's `root` as a Path, or a one-line PadhashError: missing (saying what it `needs`), or not a folder."""
    if root is None:
        raise PadhashError(f"dataset {dataset!r} needs root: {needs}")
    path = Path(root)
    if folder and not path.is_dir():
        raise PadhashError(f"{path}: no such folder")
    return path


def check_preset(name: str, preset: str | None, allowed: tuple[str, ...]) -> str:
    """The preset to use (None = the first allowed), or PadhashError naming the allowed ones."""
    if preset is None:
        return allowed[0]
    if preset not in allowed:
        raise PadhashError(f"dataset {name!r}: unknown preset {preset!r} (allowed: {', '.join(allowed)})")
    return preset


def check_all_classes_present(labels: torch.Tensor, class_names: list[str], where: str) -> None:
    """Every class must have at least one item in `labels`, else PadhashError naming `where` and the class."""
    counts = (labels > 0).sum(dim=0)
    empty = torch.nonzero(counts == 0).flatten().tolist()
    if empty:
        names = ", ".join(f"{c} ({class_names[c]})" for c in empty[:5])
        raise PadhashError(f"{where}: no images for class(es) {names}")


def split_queries(everything: Split, query_fraction: float, train_per_class: int | None, seed: int,
                  where: str) -> tuple[Split, Split, Split]:
    """(train, query, database): per class a seeded `query_fraction` of the items are queries, the rest the
    database; train is the database itself, or a seeded `train_per_class` per-class sample of it."""
    if isinstance(query_fraction, bool) or not isinstance(query_fraction, (int, float)) or not 0 < query_fraction < 1:
        raise PadhashError(f"{where}: query_fraction must be in (0, 1), got {query_fraction!r}")
    query_idx, db_idx = split_per_class(everything.labels, [float(query_fraction)], seed, where)
    database = everything.subset(db_idx)
    train = database
    if train_per_class is not None:
        if isinstance(train_per_class, bool) or not isinstance(train_per_class, int) or train_per_class < 1:
            raise PadhashError(f"{where}: train_per_class must be a positive integer, got {train_per_class!r}")
        train_idx, _ = split_per_class(database.labels, [train_per_class], derive_seed(seed, "train"),
                                       f"{where} train_per_class", need_rest=False)
        train = database.subset(train_idx)
    return train, everything.subset(query_idx), database


def with_train_part(ds: RetrievalDataset, part, seed: int) -> RetrievalDataset:
    """`ds` training on the fraction range `part` = [lo, hi] of its training split (seeded by the split seed,
    stratified by first label: `train_part_indices`), so that two disjoint ranges give, e.g., a "public" model and
    a victim trained on disjoint halves. When train is the database (the paper presets) the database becomes the
    same part: a victim indexes what it trained on, so a victim trained on a part searches that part. A separate
    database and the queries are left as they are."""
    train = ds.train.subset(train_part_indices(ds.train.labels, part, derive_seed(seed, "train_part")))
    database = train if ds.train is ds.database else ds.database
    return RetrievalDataset(ds.name, ds.class_names, train, ds.query, database)


def with_query_cap(ds: RetrievalDataset, max_queries: int | None, seed: int) -> RetrievalDataset:
    """`ds` with its queries cut to a seeded stratified sample of max_queries (None or enough = unchanged)."""
    keep = cap_queries(ds.query.labels, max_queries, derive_seed(seed, "max_queries"))
    if keep is None:
        return ds
    return RetrievalDataset(ds.name, ds.class_names, ds.train, ds.query.subset(keep), ds.database)
