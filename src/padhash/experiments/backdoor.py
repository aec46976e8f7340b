"""The CIBA experiment: clean victim → trigger → poisons → backdoored victim → t-MAP / MAP, per target label.

Roles. The victim owns the data set and the training recipe (`victim`, a TrainConfig). The attacker holds the
clean-trained model(s) — the victim's own clean model (white box on the architecture, as in CIBA §Threat Model and
CIBA's code), or, for the transfer study (CIBA Table 4), clean models of several backbones — and the training set
it poisons. The backdoored victim retrains from scratch on the poisoned set with the SAME recipe and seed as the
clean one, so poisons are the only difference.

Rows (CIBA Table 1) on the same target labels, poison indices and trigger: `none` (triggered queries on the clean
model: the floor), `tri`, `tri_noise`, `tri_adv`, `ciba`, and `label_flip` (the threat-model-breaking ceiling: the
poisons' slots filled with triggered images of other classes, so the trigger arrives under the target label).
Triggered queries are the query-split images that share no label with the target, with the full trigger (β = 1).
t-MAP@K ranks the database by the evaluated model's codes and scores against the target label; `map` is the clean
model's MAP@K on clean queries, `map_poisoned` the backdoored model's; `asr` is PADHASH's ASR (top-40, 30 %).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from padhash.attacks.backdoor import (
    TriggerAfterAugment,
    apply_trigger,
    craft_backdoor_poisons,
    dirty_label_poisons,
    generate_trigger,
)
from padhash.config import to_dict
from padhash.errors import PadhashError
from padhash.hashing import encode
from padhash.metrics import codes_map, triggered_scores
from padhash.runs import owns_run_folder
from padhash.records import ResultsFile
from padhash.experiments.skeleton import DatasetCache, trial_key
from padhash.reports.grids import backdoor_grid
from padhash.io import load_tensors, save_tensors
from padhash.models import FeatureCache
from padhash.rng import derive_seed

from padhash.experiments.backdoor_config import (  # noqa: F401  (config_from_dict etc. re-exported)
    METHODS, BackdoorConfig, BackdoorEvalConfig, _digest, config_from_dict, load_backdoor_config, with_value,
)


# ------------------------------------------------------------------------------------------------ evaluation
@dataclass
class Evaluator:
    """Scores one model: MAP@K of clean queries, t-MAP@K and ASR of triggered queries, against its own database codes."""

    dataset: Any
    eval: BackdoorEvalConfig
    device: str = "cpu"

    def codes(self, model, images_or_split) -> torch.Tensor:
        return encode(model, images_or_split, device=self.device).cpu()

    def clean_map(self, model, db_codes: torch.Tensor, queries: torch.Tensor | None = None) -> float:
        """MAP@K of the query split (or `queries`: the same images transformed, e.g. JPEG) vs their own labels."""
        ds, e = self.dataset, self.eval
        q_codes = self.codes(model, ds.query if queries is None else queries)
        return codes_map(q_codes, db_codes, ds.query.labels, ds.database.labels, e.topk, drop_empty=e.drop_empty)

    def triggered(self, model, db_codes: torch.Tensor, queries: torch.Tensor, target: torch.Tensor) -> dict:
        """t-MAP@K and ASR of `queries` (already carrying the trigger) towards the multi-hot `target`."""
        e = self.eval
        return triggered_scores(self.codes(model, queries), db_codes, self.dataset.database.labels, target,
                                topk=e.topk, asr_topk=e.asr_topk, asr_threshold=e.asr_threshold,
                                drop_empty=e.drop_empty)


def triggered_query_indices(query_labels: torch.Tensor, target: torch.Tensor, max_queries: int | None,
                            seed: int) -> torch.Tensor:
    """Queries sharing no label with the target (CIBA's selection), a seeded subset of at most `max_queries`."""
    pool = torch.nonzero(~(query_labels[:, target > 0] > 0).any(1)).flatten()
    if max_queries is not None and len(pool) > max_queries:
        rng = np.random.default_rng(seed)
        pool = pool[torch.as_tensor(np.sort(rng.choice(len(pool), max_queries, replace=False)))]
    return pool


# ---------------------------------------------------------------------------------------------------- the runner
class BackdoorRun:
    """One run folder: clean models, triggers and poisons are cached on disk, so a killed run resumes."""

    def __init__(self, cfg: BackdoorConfig, out_dir: str | Path, *, victim_dir: str | Path | None = None,
                 progress: bool = True):
        self.cfg = cfg
        self.out = Path(out_dir)
        self.victim_dir = Path(victim_dir) if victim_dir else None
        self.progress = progress
        self.results = ResultsFile(self.out, {**to_dict(cfg), "victim_run": str(victim_dir) if victim_dir else None})
        self._data = DatasetCache()
        self._models: dict[str, Any] = {}
        self.feature_cache = FeatureCache(cfg.feature_cache or self.out / "features", progress=progress)

    # -- data and models
    def dataset(self, data_cfg):
        return self._data.dataset(data_cfg)

    def clean_model(self, cfg: BackdoorConfig, backbone: str | None = None):
        """The clean-trained model of the victim's recipe (with `backbone` swapped in for the transfer study)."""
        return self._clean(cfg, backbone)[0]

    def recipe(self, cfg: BackdoorConfig, backbone: str | None = None):
        """The TrainConfig the clean model was trained with (as the retrieval runner resolved it, e.g. hflip)."""
        return self._clean(cfg, backbone)[1]

    def _clean(self, cfg: BackdoorConfig, backbone: str | None):
        from padhash.experiments.retrieval import RetrievalConfig, load_victim, run_training

        tcfg = dataclasses.replace(cfg.victim, device=cfg.device, **({"backbone": backbone} if backbone else {}))
        key = _digest(cfg.data, tcfg)
        if key not in self._models:
            if self.victim_dir is not None and backbone is None:
                run_dir = self.victim_dir
            else:
                run_dir = self.out / ("victim" if backbone is None else f"clean-{backbone}") / key
                run_training(RetrievalConfig(data=cfg.data, train=tcfg, feature_cache=str(self.feature_cache.root)),
                             run_dir, progress=self.progress)
            model, rcfg = load_victim(run_dir)
            model.feature_cache = self.feature_cache
            self._models[key] = (model.to(cfg.device).eval(), dataclasses.replace(rcfg.train, device=cfg.device))
        return self._models[key]

    def train_backdoored(self, name: str, cfg: BackdoorConfig, train_split, backbone: str | None = None,
                         after_augment=None):
        """Retrain from scratch on `train_split` with exactly the clean model's recipe and seed."""
        from padhash.hashing import train_hash_model

        ds = self.dataset(cfg.data)
        model = train_hash_model(train_split, ds.num_classes, self.recipe(cfg, backbone),
                                 checkpoint_dir=self.out / "models" / name, progress=self.progress,
                                 feature_cache=self.feature_cache, after_augment=after_augment)
        return model.to(cfg.device).eval()

    def poisoned_split(self, cfg: BackdoorConfig, method: str, target: int, idx: torch.Tensor, patch: torch.Tensor,
                       models: list, tag: str):
        """(training split, after-augmentation hook) the backdoored victim trains on, per cfg.trigger_placement."""
        poisons = self.poisons(cfg, method, target, idx, patch, models, tag)
        train = self.dataset(cfg.data).train
        if cfg.trigger_placement == "before_augment":
            return train.replace(idx, poisons), None
        perturbed = load_tensors(self._poison_path(cfg, method, target, tag))["perturbed"]
        blend = 1.0 if method == "label_flip" else cfg.blend  # the dirty-label ceiling carries the full trigger
        return train.replace(idx, perturbed), TriggerAfterAugment(idx, patch, blend)

    # -- attacker's pieces
    def targets(self, cfg: BackdoorConfig) -> list[int]:
        ds = self.dataset(cfg.data)
        if cfg.targets:
            bad = [t for t in cfg.targets if not 0 <= t < ds.num_classes]
            if bad:
                raise PadhashError(f"targets: {bad} outside 0..{ds.num_classes - 1}")
            return list(cfg.targets)
        rng = np.random.default_rng(derive_seed(cfg.seed, "targets"))
        return sorted(int(t) for t in rng.choice(ds.num_classes, min(cfg.num_targets, ds.num_classes), replace=False))

    def poison_indices(self, cfg: BackdoorConfig, target: int) -> torch.Tensor:
        """Random target-class training images to poison (CIBA: np.random.choice over the target class)."""
        ds = self.dataset(cfg.data)
        pool = torch.nonzero(ds.train.labels[:, target] > 0).flatten()
        if len(pool) < cfg.poison_count:
            raise PadhashError(f"poison_count: {cfg.poison_count} exceeds the {len(pool)} training images of "
                               f"target class {target}")
        rng = np.random.default_rng(derive_seed(cfg.seed, "poisons", target))
        return pool[torch.as_tensor(np.sort(rng.choice(len(pool), cfg.poison_count, replace=False)))]

    def trigger(self, cfg: BackdoorConfig, target: int, models: list, tag: str) -> torch.Tensor:
        """Algorithm 1 on the attacker's clean model(s), cached per (data, recipe, target, trigger settings)."""
        from padhash.attacks.anchor import anchor_code

        path = self.out / "triggers" / f"{tag}-t{target}-{_digest(cfg.data, cfg.victim, cfg.trigger, cfg.seed)}.safetensors"
        if path.exists():
            return load_tensors(path)["patch"]
        ds = self.dataset(cfg.data)
        evaluator = Evaluator(ds, cfg.eval, cfg.device)
        members = torch.nonzero(ds.train.labels[:, target] > 0).flatten()
        anchors = torch.stack([anchor_code(evaluator.codes(m, ds.train.images(members))).float() for m in models])
        gen = torch.Generator().manual_seed(derive_seed(cfg.seed, "trigger", target, tag))
        patch = generate_trigger(models, anchors, ds.train.images(), cfg.trigger, generator=gen, device=cfg.device,
                                 progress=self.progress)
        save_tensors(path, {"patch": patch, "anchors": anchors})
        return patch

    def poisons(self, cfg: BackdoorConfig, method: str, target: int, idx: torch.Tensor, patch: torch.Tensor,
                models: list, tag: str) -> torch.Tensor:
        path = self._poison_path(cfg, method, target, tag)
        if path.exists():
            return load_tensors(path)["poisons"]
        ds = self.dataset(cfg.data)
        gen = torch.Generator().manual_seed(derive_seed(cfg.seed, "craft", method, target))
        if method == "label_flip":
            others = torch.nonzero(ds.train.labels[:, target] == 0).flatten()
            pick = others[torch.randperm(len(others), generator=gen)[: len(idx)]]
            perturbed = ds.train.images(pick)
            poisons = dirty_label_poisons(perturbed, patch)
        else:
            perturbed, poisons = craft_backdoor_poisons(method, models, ds.train.images(idx), patch, cfg.perturb,
                                                        blend=cfg.blend, generator=gen, device=cfg.device,
                                                        progress=self.progress)
        save_tensors(path, {"poisons": poisons, "perturbed": perturbed, "indices": idx})
        return poisons

    def _poison_path(self, cfg: BackdoorConfig, method: str, target: int, tag: str) -> Path:
        # v2: the file also holds the perturbed images before the trigger (for pasting after augmentation)
        digest = _digest(cfg.data, cfg.victim, cfg.trigger, cfg.perturb, cfg.blend, cfg.poison_count, cfg.seed)
        return self.out / "poisons" / f"{tag}-{method}-t{target}-{digest}-v2.safetensors"

    # -- the experiment
    def run(self) -> dict:
        cfg = self.cfg
        axis, values = next(iter(cfg.sweep.items()), (None, [None]))
        if self.victim_dir is not None and axis and axis.split(".")[0] in ("victim", "data"):
            raise PadhashError(f"sweep.{axis}: a sweep over the victim or the data needs its own victims; drop --victim")
        for value in values:
            vcfg = with_value(cfg, axis, value) if axis else cfg
            if cfg.transfer.backbones:
                self._run_transfer(vcfg, axis, value)
            else:
                self._run_targets(vcfg, axis, value)
        from padhash.reports.backdoor import write_backdoor_report

        write_backdoor_report(self.out)
        return ResultsFile.load(self.out)

    def _key(self, axis, value, *parts) -> tuple[str, str]:
        label = f"{axis}={value}" if axis else ""
        return trial_key(label, *parts), (f"@{label}" if axis else "")

    def _run_targets(self, cfg: BackdoorConfig, axis, value) -> None:
        from padhash.metrics import psnr, ssim

        ds = self.dataset(cfg.data)
        for target in self.targets(cfg):
            keys = {m: self._key(axis, value, f"target={target}", m) for m in cfg.methods}
            if all(self.results.has(k) for k, _ in keys.values()):
                continue
            clean = self.clean_model(cfg)
            ev = Evaluator(ds, cfg.eval, cfg.device)
            clean_db = ev.codes(clean, ds.database)
            clean_map = ev.clean_map(clean, clean_db)
            target_vec = torch.zeros(ds.num_classes)
            target_vec[target] = 1.0
            q_idx = triggered_query_indices(ds.query.labels, target_vec, cfg.eval.max_queries,
                                            derive_seed(cfg.seed, "queries", target))
            patch = self.trigger(cfg, target, [clean], "victim")
            queries = apply_trigger(ds.query.images(q_idx), patch, 1.0)
            idx = self.poison_indices(cfg, target)
            base = {"target_class": target, "poison_count": len(idx), "map": clean_map, "queries": len(q_idx),
                    **({"sweep_axis": axis, "sweep_value": value} if axis else {})}
            for method in cfg.methods:
                key, suffix = keys[method]
                if self.results.has(key):
                    continue
                record = {"key": key, "method": method + suffix, **base}
                if method == "none":
                    record.update(map_poisoned=clean_map, poison_count=0,
                                  **ev.triggered(clean, clean_db, queries, target_vec))
                else:
                    poisons = self.poisons(cfg, method, target, idx, patch, [clean], "victim")
                    originals = ds.train.images(idx)
                    split, hook = self.poisoned_split(cfg, method, target, idx, patch, [clean], "victim")
                    model = self.train_backdoored(f"{method}-t{target}-{_digest(key, cfg)}", cfg, split,
                                                  after_augment=hook)
                    db = ev.codes(model, ds.database)
                    record.update(map_poisoned=ev.clean_map(model, db), **ev.triggered(model, db, queries, target_vec))
                    if method != "label_flip":  # the ceiling's images are other pictures, not perturbed ones
                        record.update(psnr=float(psnr(poisons, originals).mean()),
                                      ssim=float(ssim(poisons, originals).mean()))
                        if not axis:
                            backdoor_grid(self.out, key, ds, originals, poisons, queries[:2], ev.codes(model, queries[:2]), db, target)
                self.results.add(record)

    def _run_transfer(self, cfg: BackdoorConfig, axis, value) -> None:
        """CIBA Table 4: trigger and confusing perturbations from several clean backbones; victims of each backbone."""
        ds = self.dataset(cfg.data)
        backbones = cfg.transfer.backbones
        ev = Evaluator(ds, cfg.eval, cfg.device)
        for target in self.targets(cfg):
            target_vec = torch.zeros(ds.num_classes)
            target_vec[target] = 1.0
            q_idx = triggered_query_indices(ds.query.labels, target_vec, cfg.eval.max_queries,
                                            derive_seed(cfg.seed, "queries", target))
            idx = self.poison_indices(cfg, target)
            for column in backbones:
                for setting in ["none", *cfg.transfer.settings]:
                    key, suffix = self._key(axis, value, f"target={target}", f"victim={column}", setting)
                    if self.results.has(key):
                        continue
                    clean = self.clean_model(cfg, column)
                    clean_db = ev.codes(clean, ds.database)
                    record = {"key": key, "method": f"{'none' if setting == 'none' else 'ciba'}@{setting}:{column}{suffix}",
                              "setting": setting, "victim_backbone": column, "target_class": target,
                              "map": ev.clean_map(clean, clean_db)}
                    crafters = backbones if setting != "holdout" else [b for b in backbones if b != column]
                    record["crafters"] = list(crafters)  # which clean models made the trigger and poisons
                    tag = "ens-" + "+".join(crafters)
                    models = [self.clean_model(cfg, b) for b in crafters]
                    patch = self.trigger(cfg, target, models, tag)
                    queries = apply_trigger(ds.query.images(q_idx), patch, 1.0)
                    if setting == "none":  # the clean victim under the ensemble's trigger: the floor
                        record.update(map_poisoned=record["map"], **ev.triggered(clean, clean_db, queries, target_vec))
                    else:
                        split, hook = self.poisoned_split(cfg, "ciba", target, idx, patch, models, tag)
                        model = self.train_backdoored(f"transfer-{column}-{setting}-t{target}-{_digest(key, cfg)}",
                                                      cfg, split, backbone=column, after_augment=hook)
                        db = ev.codes(model, ds.database)
                        record.update(map_poisoned=ev.clean_map(model, db),
                                      **ev.triggered(model, db, queries, target_vec), poison_count=len(idx))
                    self.results.add(record)


@owns_run_folder()
def run_backdoor(cfg: BackdoorConfig, out_dir: str | Path, *, victim_dir: str | Path | None = None,
                 progress: bool = True) -> dict:
    """Run (or resume) a backdoor experiment into `out_dir`; returns the results.json contents."""
    return BackdoorRun(cfg, out_dir, victim_dir=victim_dir, progress=progress).run()
