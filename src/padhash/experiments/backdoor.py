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
Trials run on padhash.executors: the parent trains the clean models, `backdoor_trial` does the rest from them (the
first trial that needs a trigger or a shared poison set crafts it, the others wait for it); scores:
padhash.metrics.backdoor.
"""
from __future__ import annotations

import dataclasses
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
from padhash.metrics.backdoor import Evaluator, code_spread, triggered_query_indices
from padhash.runs import artifact_lock, owns_run_folder
from padhash.records import ResultsFile
from padhash.experiments.skeleton import DatasetCache, apply_point, sweep_points, trial_key
from padhash.reports.grids import backdoor_grid
from padhash.io import load_tensors, save_tensors
from padhash.models import FeatureCache
from padhash.rng import derive_seed

from padhash.experiments.backdoor_config import (  # noqa: F401  (config_from_dict etc. re-exported)
    METHODS, BackdoorConfig, BackdoorEvalConfig, _digest, config_from_dict, load_backdoor_config, with_value,
)
from padhash.executors import TrialSpec, per_process


# ---------------------------------------------------------------------------------------------------- the runner
class BackdoorRun:
    """One run folder: clean models, triggers and poisons are cached on disk, so a killed run resumes."""

    def __init__(self, cfg: BackdoorConfig, out_dir: str | Path, *, victim_dir: str | Path | None = None,
                 progress: bool = True, results: bool = True):
        self.cfg = cfg
        self.out = Path(out_dir)
        self.victim_dir = Path(victim_dir) if victim_dir else None
        self.progress = progress
        self.results = ResultsFile(self.out, {**to_dict(cfg), "victim_run": str(victim_dir) if victim_dir else None}) \
            if results else None
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
            run_dir = self.out / ("victim" if backbone is None else f"clean-{backbone}") / key
            if self.victim_dir is not None and backbone is None:
                run_dir = self.victim_dir
            elif not (run_dir / "metrics.json").is_file():  # trained by the parent: workers only load it (no lock)
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
        perturbed = self.perturbed(cfg, method, target, tag)
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
        path = self.out / "triggers" / f"{tag}-t{target}-{_digest(cfg.data, cfg.victim, cfg.trigger, cfg.seed)}.safetensors"
        with artifact_lock(path):  # the trials of one target all need it: the first makes it, the others wait
            if path.exists():
                return load_tensors(path)["patch"]
            return self._make_trigger(cfg, target, models, tag, path)

    def _make_trigger(self, cfg: BackdoorConfig, target: int, models: list, tag: str, path: Path) -> torch.Tensor:
        from padhash.attacks.anchor import anchor_code

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
        with artifact_lock(path):  # the transfer study's victims of every backbone share the ensemble's poisons
            if path.exists():
                return load_tensors(path)["poisons"]
            return self._make_poisons(cfg, method, target, idx, patch, models, tag, path)

    def _make_poisons(self, cfg: BackdoorConfig, method: str, target: int, idx: torch.Tensor, patch: torch.Tensor,
                      models: list, tag: str, path: Path) -> torch.Tensor:
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

    def perturbed(self, cfg: BackdoorConfig, method: str, target: int, tag: str) -> torch.Tensor:
        """The crafted images before the trigger, saved beside the poisons by `poisons`."""
        return load_tensors(self._poison_path(cfg, method, target, tag))["perturbed"]

    def code_tsne(self, cfg: BackdoorConfig, target: int) -> None:
        """CIBA Fig. 3: t-SNE of the clean model's codes of the target class's poison images under each perturbation
        (None / Noise / Adversarial / Confusing, before the trigger) beside four other classes' clean query images."""
        from padhash.reports.embedding import save_code_tsne

        path = self.out / "figures" / f"tsne-target{target}.png"
        if path.exists():
            return
        ds, model = self.dataset(cfg.data), self.clean_model(cfg)
        ev = Evaluator(ds, cfg.eval, cfg.device)
        idx = self.poison_indices(cfg, target)
        classes = ds.query.labels.argmax(1)
        others = [c for c in range(ds.num_classes) if c != target][:4]
        picks = torch.cat([torch.nonzero(classes == c).flatten()[: len(idx)] for c in others])
        panels = {"None": ds.train.images(idx)}
        for method, name in (("tri_noise", "Noise"), ("tri_adv", "Adversarial"), ("ciba", "Confusing")):
            if method in cfg.methods:
                panels[name] = self.perturbed(cfg, method, target, "victim")
        save_code_tsne(path, ev.codes(model, ds.query.images(picks)), classes[picks],
                       {name: ev.codes(model, images) for name, images in panels.items()}, seed=cfg.seed)

    def _poison_path(self, cfg: BackdoorConfig, method: str, target: int, tag: str) -> Path:
        # v2: the file also holds the perturbed images before the trigger (for pasting after augmentation)
        digest = _digest(cfg.data, cfg.victim, cfg.trigger, cfg.perturb, cfg.blend, cfg.poison_count, cfg.seed)
        return self.out / "poisons" / f"{tag}-{method}-t{target}-{digest}-v2.safetensors"

    def crafters(self, cfg: BackdoorConfig, column: str | None, setting: str) -> tuple[str, list]:
        """(tag, backbones) of the clean models that craft a trial's trigger and poisons: the victim's own (None) in
        Table 1; in the transfer study the ensemble, less the victim's backbone when it is held out."""
        if column is None:
            return "victim", [None]
        names = [b for b in cfg.transfer.backbones if setting != "holdout" or b != column]
        return "ens-" + "+".join(names), names

    # -- the experiment: plan the trials, prepare what they share here, run them on the executor
    def run(self, executor=None) -> dict:
        from padhash.executors import ExecutorConfig, gpus_per_trial, run_trials
        from padhash.reports.backdoor import write_backdoor_report

        cfg = self.cfg
        for axis in cfg.sweep:
            if self.victim_dir is not None and axis.split(".")[0] in ("victim", "data"):
                raise PadhashError(f"sweep.{axis}: a sweep over the victim or the data needs its own victims; "
                                   "drop --victim")
        trials = [t for point, label in sweep_points(cfg) for t in self._plan(apply_point(cfg, point, with_value), label)]
        run_trials(trials, backdoor_trial, executor or ExecutorConfig(), self.results, progress=self.progress,
                   gpus_per_trial=gpus_per_trial(cfg.device))
        if not cfg.sweep and not cfg.transfer.backbones:
            for target in self.targets(cfg):
                self.code_tsne(cfg, target)
        write_backdoor_report(self.out)
        return ResultsFile.load(self.out)

    def _plan(self, cfg: BackdoorConfig, point: str) -> list[TrialSpec]:
        """One sweep point's trials in results order (row, [victim backbone,] target): consecutive trials need
        different triggers and poisons, so workers craft them side by side. The clean models are trained here, once,
        for the pending ones."""
        columns = cfg.transfer.backbones or [None]
        rows = ["none", *cfg.transfer.settings] if cfg.transfer.backbones else cfg.methods
        trials = []
        for row in rows:
            for column in columns:
                for target in self.targets(cfg):
                    key = trial_key(point, f"target={target}", *([f"victim={column}"] if column else []), row)
                    if not self.results.has(key):
                        for backbone in dict.fromkeys([*self.crafters(cfg, column, row)[1], column]):
                            self.clean_model(cfg, backbone)
                    victim = self.victim_dir and str(self.victim_dir)
                    trials.append(TrialSpec(key, BackdoorTrial(cfg, str(self.out), victim, target, row, column,
                                                               point)))
        return trials


# ------------------------------------------------------------------------------------------------------ one trial
@dataclasses.dataclass
class BackdoorTrial:
    """Everything one trial depends on besides the run folder's clean models, triggers and poisons (picklable)."""
    cfg: BackdoorConfig        # the run's config at the sweep point
    out: str
    victim_dir: str | None
    target: int
    row: str                   # a Table 1 method, or (transfer study) a setting; `none`: the clean model, the floor
    column: str | None = None  # the transfer study's victim backbone; None in Table 1
    point: str = ""            # the sweep point's label, "a=v" or "a=v,b=w" ("" without a sweep)


def worker_run(t: BackdoorTrial) -> BackdoorRun:
    """One BackdoorRun per process for the run folder it works for (no results file: only the parent writes it)."""
    return per_process((t.out, t.victim_dir, t.cfg.device, t.cfg.feature_cache),
                       lambda: BackdoorRun(t.cfg, t.out, victim_dir=t.victim_dir, progress=False, results=False))


def backdoor_trial(t: BackdoorTrial, key: str) -> dict:
    """The record of one row on one target: the clean model under the trigger (`none`), or a backdoored victim."""
    from padhash.metrics import psnr, ssim

    run, cfg, target, column = worker_run(t), t.cfg, t.target, t.column
    ds = run.dataset(cfg.data)
    ev = Evaluator(ds, cfg.eval, cfg.device)
    target_vec = torch.zeros(ds.num_classes)
    target_vec[target] = 1.0
    q_idx = triggered_query_indices(ds.query.labels, target_vec, cfg.eval.max_queries,
                                    derive_seed(cfg.seed, "queries", target))
    idx = run.poison_indices(cfg, target)
    tag, names = run.crafters(cfg, column, t.row)
    models = [run.clean_model(cfg, b) for b in names]
    patch = run.trigger(cfg, target, models, tag)
    queries = apply_trigger(ds.query.images(q_idx), patch, 1.0)
    clean = run.clean_model(cfg, column)
    clean_db = ev.codes(clean, ds.database)
    clean_map = ev.clean_map(clean, clean_db)
    suffix = f"@{t.point}" if t.point else ""
    if column is None:
        method, name = t.row, f"{t.row}-t{target}-{_digest(key, cfg)}"
        record = {"key": key, "method": method + suffix, "target_class": target, "poison_count": len(idx),
                  "map": clean_map, "queries": len(q_idx),
                  **({"sweep_point": t.point} if t.point else {})}
    else:  # CIBA Table 4: trigger and poisons from the ensemble of clean backbones, a victim of backbone `column`
        method = "none" if t.row == "none" else "ciba"
        name = f"transfer-{column}-{t.row}-t{target}-{_digest(key, cfg)}"
        record = {"key": key, "method": f"{method}@{t.row}:{column}{suffix}", "setting": t.row,
                  "victim_backbone": column, "target_class": target, "map": clean_map, "crafters": list(names)}
    if method == "none":
        record.update(map_poisoned=clean_map, **({"poison_count": 0} if column is None else {}),
                      **ev.triggered(clean, clean_db, queries, target_vec, curves=True))
        if column is None:  # CIBA Fig. 4's "None": the unperturbed target-class images under the crafting model
            record.update(_spread(ev, models[0], ds.train.images(idx)))
        return record
    split, hook = run.poisoned_split(cfg, method, target, idx, patch, models, tag)
    model = run.train_backdoored(name, cfg, split, backbone=column, after_augment=hook)
    db = ev.codes(model, ds.database)
    record.update(map_poisoned=ev.clean_map(model, db), **ev.triggered(model, db, queries, target_vec, curves=True))
    if column is not None:
        record["poison_count"] = len(idx)
    elif method != "label_flip":  # the ceiling's images are other pictures, not perturbed ones
        poisons, originals = run.poisons(cfg, method, target, idx, patch, models, tag), ds.train.images(idx)
        record.update(psnr=float(psnr(poisons, originals).mean()), ssim=float(ssim(poisons, originals).mean()))
        # CIBA Fig. 4: how far the perturbations (before the trigger) spread the poisons' codes apart
        record.update(_spread(ev, models[0], run.perturbed(cfg, method, target, tag)))
        if not t.point:
            backdoor_grid(Path(t.out), key, ds, originals, poisons, queries[:2], ev.codes(model, queries[:2]), db,
                          target)
    return record


def _spread(ev: Evaluator, model, images: torch.Tensor) -> dict:
    spread = code_spread(ev.codes(model, images))
    hist = spread["histogram"]
    return {"code_spread": spread["mean"], "code_spread_histogram": {"distance": list(range(len(hist))),
                                                                      "fraction": hist}}


@owns_run_folder()
def run_backdoor(cfg: BackdoorConfig, out_dir: str | Path, *, victim_dir: str | Path | None = None,
                 progress: bool = True, executor=None) -> dict:
    """Run (or resume) a backdoor experiment into `out_dir`, one trial per (sweep point, target, [victim backbone,]
    row) on `executor` (padhash.executors.ExecutorConfig; default: here); returns the results.json contents."""
    return BackdoorRun(cfg, out_dir, victim_dir=victim_dir, progress=progress).run(executor)
