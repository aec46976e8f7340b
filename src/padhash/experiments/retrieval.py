"""The retrieval foundation run (`padhash train` / `padhash eval`): train a hash model on a data set, encode the
query and database splits, score the ranking, and keep everything an attack needs to load the victim again.

RUN/ holds config.yaml (the full RetrievalConfig), model.safetensors (HashModel weights; metadata names backbone,
bits, image size), codes.npz (query_codes, db_codes as ±1 int8; query_labels, db_labels multi-hot float32),
metrics.json, and checkpoint/ (the trainer's per-epoch checkpoint: a killed run resumes from it).
"""
from __future__ import annotations

import dataclasses
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from safetensors import safe_open

from padhash.config import OMIT_AT_DEFAULT, from_dict, load_yaml, to_dict
from padhash.data import DataConfig, load_dataset_from
from padhash.errors import PadhashError
from padhash.runs import owns_run_folder
from padhash.hashing import TrainConfig, encode, train_hash_model
from padhash.hashing.trainer import model_from_config
from padhash.io import atomic_write_json, atomic_write_npz, atomic_write_text, load_tensors, save_tensors
from padhash.metrics import map_at_k, precision_at_k
from padhash.models import PACKAGED, FeatureCache, HashModel
from padhash.retrieval import BACKENDS, hamming_topk
from padhash.rng import derive_seed
from padhash.validate import check_recipe, warn

DEFAULT_TOPK = 100        # k of map_at_k / precision_at_k when none is given (below a class size on digits and CIFAR)
NOT_MIRROR_INVARIANT = ("digits", "digits-mosaic", "digits-motion")  # data sets trained without horizontal flips
# (digits-motion: a flip turns a left-to-right class into right-to-left)


@dataclass
class RetrievalConfig:
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    topk: int | None = None   # k of map_at_k and precision_at_k; None = min(100, database size). `map` is @all
    index: str = "auto"       # Hamming search backend (padhash.retrieval.BACKENDS)
    # where a frozen backbone's features are cached; None = RUN/features (share one folder across runs to reuse)
    feature_cache: str | None = field(default=None, metadata=OMIT_AT_DEFAULT)


def config_from_dict(data: dict[str, Any], where: str = "config") -> RetrievalConfig:
    cfg = from_dict(RetrievalConfig, data, where)
    check_retrieval_config(cfg, where)
    return cfg


def load_retrieval_config(path: str | Path, overrides: dict[str, Any] | None = None) -> RetrievalConfig:
    data = load_yaml(path)
    for section, values in (overrides or {}).items():
        if isinstance(values, dict):
            data[section] = {**(data.get(section) or {}), **values}
        else:
            data[section] = values
    return config_from_dict(data, Path(path).name)


def check_retrieval_config(cfg: RetrievalConfig, where: str = "config") -> None:
    if cfg.topk is not None and cfg.topk < 1:
        raise PadhashError(f"{where}.topk: must be a positive integer, got {cfg.topk}")
    if cfg.index not in BACKENDS:
        raise PadhashError(f"{where}.index: {cfg.index!r} is not one of {', '.join(BACKENDS)}")
    check_recipe(cfg.train, f"{where}.train")


def resolved(cfg: RetrievalConfig) -> RetrievalConfig:
    """The config with the data-dependent defaults filled in (what config.yaml records)."""
    if cfg.train.hflip is not None:
        return cfg
    train = dataclasses.replace(cfg.train, hflip=cfg.data.name not in NOT_MIRROR_INVARIANT)
    return dataclasses.replace(cfg, train=train)


@owns_run_folder()
def run_training(cfg: RetrievalConfig, out_dir: Path, progress: bool = True) -> dict[str, Any]:
    """Train, encode, score; write RUN/{config.yaml, model.safetensors, codes.npz, metrics.json}. Running again on
    the same RUN resumes (or, when finished, only re-scores); a RUN holding another config is refused."""
    check_retrieval_config(cfg)
    cfg = resolved(cfg)
    out_dir = Path(out_dir)
    config_text = yaml.safe_dump(to_dict(cfg), sort_keys=False)
    config_path = out_dir / "config.yaml"
    if config_path.is_file() and config_path.read_text(encoding="utf-8") != config_text:
        raise PadhashError(f"{config_path}: this run folder holds a different config; use another --out")
    ds = load_dataset_from(cfg.data)
    atomic_write_text(config_path, config_text)

    start = time.perf_counter()
    cache = FeatureCache(cfg.feature_cache or out_dir / "features", progress=progress)
    model = train_hash_model(ds.train, ds.num_classes, cfg.train, checkpoint_dir=out_dir / "checkpoint",
                             progress=progress, feature_cache=cache)
    seconds = time.perf_counter() - start
    save_tensors(out_dir / "model.safetensors", model.state_dict(),
                 metadata={"backbone": cfg.train.backbone, "bits": str(cfg.train.bits),
                           "image_size": str(ds.train.image_size)})

    device = cfg.train.device
    query_codes = encode(model, ds.query, device=device)
    db_codes = query_codes if ds.database is ds.query else encode(model, ds.database, device=device)
    codes = {"query_codes": query_codes.numpy(), "db_codes": db_codes.numpy(),
             "query_labels": ds.query.labels.numpy().astype(np.float32),
             "db_labels": ds.database.labels.numpy().astype(np.float32)}
    atomic_write_npz(out_dir / "codes.npz", codes)

    metrics = score_codes(codes, cfg.topk, cfg.index, seed=cfg.train.seed)
    metrics.update(dataset=ds.name, method=cfg.train.method, backbone=cfg.train.backbone, bits=cfg.train.bits,
                   finetune=cfg.train.finetune, resolution=model.resolution,
                   epochs=cfg.train.epochs, train_seconds_this_call=round(seconds, 1),
                   num_train=len(ds.train), num_query=len(ds.query), num_database=len(ds.database))
    atomic_write_json(out_dir / "metrics.json", metrics)
    return metrics


def score_codes(codes: dict[str, np.ndarray], topk: int | None = None, index: str = "auto",
                seed: int = 0) -> dict[str, Any]:
    """mAP@all, mAP@k and precision@k of the stored codes, and mAP@all of random codes of the same shape (the
    floor every method must clear)."""
    q, db = torch.as_tensor(codes["query_codes"]), torch.as_tensor(codes["db_codes"])
    ql, dbl = torch.as_tensor(codes["query_labels"]), torch.as_tensor(codes["db_labels"])
    k = min(topk or DEFAULT_TOPK, len(db))
    if topk is not None and topk > k:
        warn(f"topk {topk} is beyond the database size; clipped to {k}")
    _, ranked = hamming_topk(q, db, k, backend=index)
    g = torch.Generator().manual_seed(derive_seed(seed, "random-codes"))
    rand_q = torch.randint(0, 2, q.shape, generator=g).to(torch.int8) * 2 - 1
    rand_db = torch.randint(0, 2, db.shape, generator=g).to(torch.int8) * 2 - 1
    return {"map": map_at_k(q, db, ql, dbl, None, backend=index),
            "map_at_k": map_at_k(q, db, ql, dbl, k, backend=index), "k": k,
            "precision_at_k": precision_at_k(ranked, ql, dbl),
            "map_random_codes": map_at_k(rand_q, rand_db, ql, dbl, None, backend=index)}


def load_codes(run_dir: Path) -> dict[str, np.ndarray]:
    path = Path(run_dir) / "codes.npz"
    if not path.is_file():
        raise PadhashError(f"{path}: no such file (is {run_dir} a finished `padhash train` run?)")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise PadhashError(f"{path}: not a readable codes file ({exc.__class__.__name__}: {exc})") from None
    missing = sorted({"query_codes", "db_codes", "query_labels", "db_labels"} - set(arrays))
    if missing:
        raise PadhashError(f"{path}: missing array(s) {', '.join(missing)}")
    return arrays


def evaluate_run(run_dir: Path, topk: int | None = None, index: str | None = None) -> dict[str, Any]:
    """Recompute the metrics of a finished run from its codes.npz (topk / index default to the run's config)."""
    run_dir = Path(run_dir)
    cfg = load_run_config(run_dir)
    if topk is not None and topk < 1:
        raise PadhashError(f"--topk must be a positive integer, got {topk}")
    if index is not None and index not in BACKENDS:
        raise PadhashError(f"--index {index!r} is not one of {', '.join(BACKENDS)}")
    return score_codes(load_codes(run_dir), topk or cfg.topk, index or cfg.index, seed=cfg.train.seed)


def load_run_config(run_dir: Path) -> RetrievalConfig:
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise PadhashError(f"{run_dir}: no such run folder")
    return config_from_dict(load_yaml(run_dir / "config.yaml"), str(run_dir / "config.yaml"))


def load_victim(run_dir: Path) -> tuple[HashModel, RetrievalConfig]:
    """The trained HashModel of a `padhash train` run (eval mode, CPU) and its config."""
    run_dir = Path(run_dir)
    cfg = load_run_config(run_dir)
    path = run_dir / "model.safetensors"
    state = load_tensors(path)
    with safe_open(str(path), framework="pt") as fh:
        image_size = (fh.metadata() or {}).get("image_size", "32")
    if not image_size.isdigit() or int(image_size) < 1:
        raise PadhashError(f"{path}: metadata image_size must be a positive integer, got {image_size!r}")
    # the state dict holds every weight: a local weights file is not read again; the packaged ones are (cheap), so
    # the model keeps their identity and a frozen victim finds its training's cached features
    weights = cfg.train.weights if cfg.train.weights == PACKAGED else None
    model = model_from_config(dataclasses.replace(cfg.train, weights=weights), int(image_size))
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise PadhashError(f"{run_dir / 'model.safetensors'}: does not fit a {cfg.train.backbone} "
                           f"{cfg.train.bits}-bit model ({str(exc).splitlines()[0]})") from None
    return model.eval(), cfg
