"""The victim behind the HTTP API: the served model, the codes of every stored item, ingestion and retraining.

State folder (default RUN/service): `store/` (ItemStore), `catalogue.json` (tag names, image size), `current.json`
(which model generation is served), `models/gen-NNNN/` (retrained models, each a config.yaml + model.safetensors
that `load_victim` reads, as RUN itself is generation 0) and `jobs/<id>.json` (retraining jobs). The model and its
codes are one immutable `Snapshot`: a search sees either the old model with the old codes or the new model with
the new ones, never a mix. A retrain trains on the whole database with the served run's own training config
(backbone, weights, method, recipe, seed), so any victim `padhash train` can produce is served unchanged.

Ties (`ties`): items at the same Hamming distance come in an order the client cannot choose. `random` (the default)
ranks them by a fixed pseudo-random key of the item id (splitmix64 of id and a salt from the run's seed): arbitrary
as in a real index (FAISS, sharded search) yet reproducible, and the same for an item in every generation.
`oldest` ranks them by id, which puts every upload after all earlier items of its distance: an ingested poison
then loses every tie, so a hashing victim whose classes collapse onto a few codes hides uploads behind its
originals. Frozen backbones: stored items' features are cached in the run's feature cache (RUN/features or its
config's feature_cache; content-addressed by the image's bytes, so it holds the database already when the data set
is 8-bit, not for the digits' resized floats), so a retrain, the re-encode after it and a restart pass only new
images through the backbone; search queries never enter it.
"""
from __future__ import annotations

import dataclasses
import shutil
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import numba
import numpy as np
import torch

from padhash.data import TensorSplit, load_dataset_from
from padhash.errors import PadhashError
from padhash.experiments.retrieval import load_run_config, load_victim
from padhash.hashing import encode, train_hash_model
from padhash.io import atomic_write_json, atomic_write_text, read_json, save_tensors
from padhash.retrieval import HammingIndex
from padhash.service.store import ItemStore, to_images, to_pixels


TIE_ORDERS = ("random", "oldest")


def tie_keys(ids: np.ndarray, salt: int) -> np.ndarray:
    """uint64 splitmix64 of (id + salt): the rank of each item among items at the same distance (`random` ties)."""
    z = (ids.astype(np.uint64) + np.uint64(salt % 2**64)) * np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


@dataclass(frozen=True)
class Snapshot:
    model: torch.nn.Module
    codes: torch.Tensor          # int8 ±1 (N, bits), row i = item id i
    index: HammingIndex          # over codes[order]: the index's ties by row are the service's tie order
    generation: int
    order: torch.Tensor          # int64 (N,): index row -> item id


class RetrievalEngine:
    def __init__(self, run_dir: Path, state_dir: Path | None = None, device: str = "cpu", threads: int = 1,
                 ties: str = "random"):
        from padhash.models import FeatureCache
        from padhash.rng import derive_seed

        if ties not in TIE_ORDERS:
            raise PadhashError(f"ties: {ties!r} is not one of {', '.join(TIE_ORDERS)}")
        self.run_dir = Path(run_dir)
        self.threads = threads
        self.state = Path(state_dir) if state_dir else self.run_dir / "service"
        self.device = device
        self.cfg = load_run_config(self.run_dir)
        self.ties, self.tie_salt = ties, derive_seed(self.cfg.train.seed, "ties")
        # the run's own cache (content-addressed, safe to share between processes)
        self.features = FeatureCache(getattr(self.cfg, "feature_cache", None) or self.run_dir / "features",
                                     progress=False)
        catalogue_path = self.state / "catalogue.json"
        seed_db = None
        if catalogue_path.is_file():
            catalogue = read_json(catalogue_path)
        else:  # first start: the run's database split becomes the store's first chunk
            model, _ = load_victim(self.run_dir)
            ds = load_dataset_from(self.cfg.data)
            catalogue = {"tags": list(ds.class_names), "image_size": int(model.image_size)}
            seed_db = ds.database
        self.tags: list[str] = [str(t) for t in catalogue["tags"]]
        self.image_size = int(catalogue["image_size"])
        self.store = ItemStore(self.state / "store", self.image_size, len(self.tags))
        if seed_db is not None:
            with self.store.lock:  # continues where a killed first start stopped (whole chunks of 4096)
                for lo in range(len(self.store), len(seed_db), 4096):
                    idx = torch.arange(lo, min(lo + 4096, len(seed_db)))
                    self.store.append(to_pixels(seed_db.images(idx)), seed_db.labels[idx].numpy())
            atomic_write_json(catalogue_path, catalogue)  # after the items: a half-done first start redoes it
        self.jobs: dict[str, dict] = {}
        self._job_lock = threading.Lock()
        self._load_jobs()
        generation = int(read_json(self.state / "current.json")["generation"]) if (self.state / "current.json").is_file() else 0
        self.snapshot = self._snapshot(generation)

    # -- models
    def _model_dir(self, generation: int) -> Path:
        return self.run_dir if generation == 0 else self.state / "models" / f"gen-{generation:04d}"

    def _snapshot(self, generation: int, model=None) -> Snapshot:
        if model is None:
            model, _ = load_victim(self._model_dir(generation))
        model = model.eval().to(self.device)
        model.feature_cache = None  # searches run the whole model: an arbitrary query must not enter the cache
        return self._indexed(model, self._encode_stored(model, self.store.pixels), generation)

    def _encode_stored(self, model, pixels: np.ndarray) -> torch.Tensor:
        return encode(model, to_images(pixels), device=self.device, feature_cache=self.features)

    def _indexed(self, model, codes: torch.Tensor, generation: int) -> Snapshot:
        ids = np.arange(len(codes))
        order = torch.from_numpy(np.argsort(tie_keys(ids, self.tie_salt), kind="stable") if self.ties == "random"
                                 else ids).long()
        return Snapshot(model, codes, HammingIndex(codes[order]), generation, order)

    # -- the API's operations
    def search(self, image: torch.Tensor, k: int) -> tuple[int, list[tuple[int, int]]]:
        """(generation, [(item id, Hamming distance)]) of the k nearest items to one [0,1] (3, H, W) image."""
        # numba's thread count is per calling thread; its OpenMP workers spin for a while after each parallel
        # region, and beside torch on a busy 2-core machine that made one search 250 ms instead of 27 ms
        numba.set_num_threads(min(self.threads, numba.config.NUMBA_NUM_THREADS))
        snap = self.snapshot
        code = encode(snap.model, image[None], device=self.device)
        dist, rows = snap.index.search(code, min(k, len(snap.codes)))
        return snap.generation, list(zip(snap.order[rows[0]].tolist(), dist[0].tolist()))

    def item_tags(self, item_id: int) -> list[str] | None:
        if not 0 <= item_id < len(self.store):
            return None
        return [self.tags[c] for c in np.flatnonzero(self.store.labels[item_id] > 0)]

    def item_pixels(self, item_id: int) -> np.ndarray:
        return self.store.pixels[item_id]

    def labels_of(self, tags: list[str]) -> np.ndarray:
        unknown = [t for t in tags if t not in self.tags]
        if unknown or not tags:
            raise PadhashError(f"unknown tag(s) {', '.join(unknown) or '(none given)'}; known: {', '.join(self.tags)}")
        labels = np.zeros((1, len(self.tags)), np.float32)
        labels[0, [self.tags.index(t) for t in tags]] = 1.0
        return labels

    def ingest(self, image: torch.Tensor, labels: np.ndarray) -> int:
        """Store one item durably, encoded by the served model, and make it searchable; returns its id."""
        pixels = to_pixels(image[None])
        with self.store.lock:
            snap = self.snapshot
            # the code of the stored 8-bit pixels, which is what a later re-encode (retrain) will see
            code = self._encode_stored(snap.model, pixels)
            (item_id,) = self.store.append(pixels, labels)
            self.snapshot = self._indexed(snap.model, torch.cat([snap.codes, code]), snap.generation)
        return item_id

    # -- retraining
    def _load_jobs(self) -> None:
        for path in sorted((self.state / "jobs").glob("*.json")):
            job = read_json(path)
            if job["state"] in ("queued", "running"):  # the process that ran it is gone; the served model is intact
                job.update(state="interrupted", finished=time.time())
                atomic_write_json(path, job)
            self.jobs[job["job"]] = job

    def _save_job(self, job: dict) -> None:
        atomic_write_json(self.state / "jobs" / f"{job['job']}.json", job)

    def start_retrain(self) -> dict:
        """Start a background retrain on the current database, or return the one already running."""
        with self._job_lock:
            running = [j for j in self.jobs.values() if j["state"] in ("queued", "running")]
            if running:
                return dict(running[0])
            job = {"job": uuid.uuid4().hex, "state": "queued", "items": len(self.store),
                   "generation": None, "error": None, "created": time.time(), "finished": None}
            self.jobs[job["job"]] = job
            self._save_job(job)
        threading.Thread(target=self._retrain, args=(job,), daemon=True, name=f"retrain-{job['job'][:8]}").start()
        return dict(job)

    def job(self, job_id: str) -> dict | None:
        job = self.jobs.get(job_id)
        return dict(job) if job else None

    def _retrain(self, job: dict) -> None:
        try:
            with self._job_lock:
                job["state"] = "running"
                self._save_job(job)
            n = job["items"]
            split = TensorSplit(to_images(self.store.pixels[:n]), torch.from_numpy(self.store.labels[:n].copy()))
            generation = self.snapshot.generation + 1
            out = self._model_dir(generation)
            if out.exists():  # left by a retrain killed before it was served: never served, start it afresh
                shutil.rmtree(out)
            tcfg = dataclasses.replace(self.cfg.train, device=self.device)
            model = train_hash_model(split, len(self.tags), tcfg, checkpoint_dir=out / "checkpoint", progress=False,
                                     feature_cache=self.features)
            save_tensors(out / "model.safetensors", model.state_dict(),
                         metadata={"backbone": tcfg.backbone, "bits": str(tcfg.bits), "image_size": str(self.image_size)})
            atomic_write_text(out / "config.yaml", (self.run_dir / "config.yaml").read_text(encoding="utf-8"))
            with self.store.lock:  # no ingestion while the codes are rebuilt: every stored item gets a new code
                snapshot = self._snapshot(generation, model)
                atomic_write_json(self.state / "current.json", {"generation": generation})
                self.snapshot = snapshot
            shutil.rmtree(out / "checkpoint", ignore_errors=True)
            update = {"state": "done", "generation": generation}
        except Exception as exc:  # a failed job is reported through its status; the served model stays
            update = {"state": "failed", "error": f"{type(exc).__name__}: {exc}"}
        with self._job_lock:
            job.update(update, finished=time.time())
            self._save_job(job)
