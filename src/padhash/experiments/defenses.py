"""Defenses against a poisoned training set, measured the way the CIBA paper measures them (Table 3, Fig. 5):

- `spectral`:   spectral signatures on the backdoored model's features; remove ⌈1.5 × budget⌉ per class; retrain.
- `dp`:         retrain on the poisoned set with per-sample (micro-batch) clipping + Gaussian noise, per noise scale.
- `prune`:      cut the most dormant feature channels of the backdoored model; MAP and t-MAP per count.
- `preprocess`: JPEG / Gaussian noise on the queries of the backdoored model.

Every row reports the clean MAP the defense leaves (`map_poisoned` = MAP of the defended model on clean queries)
beside the attack's t-MAP / ASR, with the undefended backdoored model as the `undefended` row.

Poisons come from the CIBA pipeline (`padhash.experiments.backdoor`, one target label per trial) or from the
PADHASH pipeline (`padhash.experiments.poisoning`): the defenses only see (model, training Split, poison indices),
and the poison indices are used to count what the spectral filter removed, never to decide.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from padhash.attacks.backdoor import apply_trigger
from padhash.config import from_dict, load_yaml, to_dict
from padhash.defenses.dp import DPConfig
from padhash.defenses.preprocess import PreprocessDefense, gaussian_noise, jpeg
from padhash.defenses.prune import PruneDefense, pruning_curve
from padhash.defenses.spectral import SpectralDefense, spectral_filter
from padhash.errors import PadhashError
from padhash.hashing import train_hash_model
from padhash.models.features import backbone_features
from padhash.runs import owns_run_folder
from padhash.experiments.backdoor import (
    BackdoorEvalConfig,
    BackdoorRun,
    _digest,
    config_from_dict as backdoor_config_from_dict,
)
from padhash.metrics.backdoor import Evaluator, triggered_query_indices
from padhash.experiments.skeleton import trial_key
from padhash.records import ResultsFile
from padhash.rng import derive_seed

DEFENSES = ("spectral", "dp", "prune", "preprocess")
SOURCES = ("ciba", "padhash")


@dataclass
class DefenseConfig:
    source: str = "ciba"               # which poisons: "ciba" (the `attack` settings) or "padhash" (`padhash` config)
    attack: dict[str, Any] = field(default_factory=dict)     # a BackdoorConfig (configs/ciba-*.yaml) for source ciba
    padhash: dict[str, Any] = field(default_factory=dict)    # a PoisoningConfig (configs/padhash-*.yaml) for padhash
    spectral: SpectralDefense = field(default_factory=SpectralDefense)
    dp: DPConfig = field(default_factory=DPConfig)
    noise_scales: list[float] = field(default_factory=lambda: [0.0, 0.001, 0.01, 0.03])  # DP σ values (CIBA Fig. 5a)
    prune: PruneDefense = field(default_factory=PruneDefense)
    preprocess: PreprocessDefense = field(default_factory=PreprocessDefense)


def defense_config_from_dict(data: dict[str, Any], where: str = "config") -> DefenseConfig:
    cfg = from_dict(DefenseConfig, data, where)
    if cfg.source not in SOURCES:
        raise PadhashError(f"{where}.source: {cfg.source!r} is not one of {', '.join(SOURCES)}")
    for name in DEFENSES:  # each defense validates its own settings
        getattr(cfg, name).validate(f"{where}.{name}")
    if any(s < 0 for s in cfg.noise_scales) or not cfg.noise_scales:
        raise PadhashError(f"{where}.noise_scales: give non-negative noise scales")
    if cfg.source == "ciba":  # the poisons' config too, before anything trains
        backdoor_config_from_dict({**cfg.attack, "methods": ["ciba"]}, f"{where}.attack")
    else:
        from padhash.experiments import poisoning

        poisoning.config_from_dict({**cfg.padhash, "methods": ["padhash"]}, f"{where}.padhash")
    return cfg


def load_defense_config(path: str | Path) -> DefenseConfig:
    return defense_config_from_dict(load_yaml(path), Path(path).name)


@dataclass
class PoisonedSet:
    """What a defense faces: the poisoned training split, the poison indices (for counting only), the backdoored
    model, how to evaluate the attack on any model, and the clean queries."""

    name: str
    train: Any
    poison_idx: torch.Tensor
    backdoored: Any
    clean_map: float
    evaluate: Any          # model → {"t_map"/"asr": ..., "map_poisoned": ...}
    evaluate_queries: Any  # (model, triggered queries, clean queries) → same, for preprocessed queries
    triggered: torch.Tensor
    clean_queries: torch.Tensor
    train_recipe: Any
    num_classes: int
    defender_clean: torch.Tensor   # clean images the defender holds (database split) for pruning statistics


class DefenseRun:
    def __init__(self, cfg: DefenseConfig, out_dir: str | Path, *, victim_dir: str | Path | None = None,
                 progress: bool = True, executor=None):
        self.cfg = cfg
        self.executor = executor  # where the attack stage's trials run (padhash.executors; default: here)
        self.out = Path(out_dir)
        self.victim_dir = victim_dir
        self.progress = progress
        self.results = ResultsFile(self.out, to_dict(cfg), group_key="method")
        self.features = None  # the PADHASH run's FeatureCache: frozen-backbone retrainings reuse its features

    # -- the poisoned sets
    def poisoned_sets(self) -> list[PoisonedSet]:
        if self.cfg.source == "ciba":
            return self._ciba_sets()
        return self._padhash_sets()

    def _ciba_sets(self) -> list[PoisonedSet]:
        bcfg = backdoor_config_from_dict({**self.cfg.attack, "methods": ["ciba"]}, "attack")
        run = BackdoorRun(bcfg, self.out / "attack", victim_dir=self.victim_dir, progress=self.progress)
        run.run(self.executor)  # trains (or resumes) the backdoored victims the defenses face
        ds = run.dataset(bcfg.data)
        clean = run.clean_model(bcfg)
        ev = Evaluator(ds, bcfg.eval, bcfg.device)
        clean_map = ev.clean_map(clean, ev.codes(clean, ds.database))
        sets = []
        for target in run.targets(bcfg):
            target_vec = torch.zeros(ds.num_classes)
            target_vec[target] = 1.0
            idx = run.poison_indices(bcfg, target)
            patch = run.trigger(bcfg, target, [clean], "victim")
            poisons = run.poisons(bcfg, "ciba", target, idx, patch, [clean], "victim")
            train = ds.train.replace(idx, poisons)  # what the defenses inspect: the poisons carry the trigger
            split, hook = run.poisoned_split(bcfg, "ciba", target, idx, patch, [clean], "victim")
            key = trial_key("", f"target={target}", "ciba")  # the backdoor trial's key: reuse its victim
            model = run.train_backdoored(f"ciba-t{target}-{_digest(key, bcfg)}", bcfg, split, after_augment=hook)
            q_idx = triggered_query_indices(ds.query.labels, target_vec, bcfg.eval.max_queries,
                                            derive_seed(bcfg.seed, "queries", target))
            triggered = apply_trigger(ds.query.images(q_idx), patch, 1.0)
            sets.append(self._poisoned_set(f"ciba-t{target}", ds, ev, train, idx, model, clean_map, triggered,
                                           target_vec, run.recipe(bcfg), bcfg.device))
        return sets

    def _padhash_sets(self) -> list[PoisonedSet]:
        from padhash.experiments import poisoning as ph

        pcfg = ph.config_from_dict({**self.cfg.padhash, "methods": ["padhash"]}, "padhash")
        run = ph.PoisoningRun(pcfg, self.out / "attack", progress=self.progress)
        run.run(self.executor)
        self.features = run.features
        ds = run.dataset(pcfg.data)
        seed = pcfg.seeds[0]
        pcfg = run.with_public(pcfg, seed)  # a `public` model becomes the victim's init, as in the PADHASH runner
        victim = run.clean_victim(pcfg, seed)
        ev = Evaluator(ds, BackdoorEvalConfig(topk=pcfg.eval.map_topk, asr_topk=pcfg.eval.topk,
                                              asr_threshold=pcfg.eval.threshold, max_queries=None), pcfg.device)
        clean_map = ev.clean_map(victim, ev.codes(victim, ds.database))
        sets = []
        for record in ResultsFile.load(self.out / "attack")["trials"]:
            if record["method"] != "padhash" or record.get("seed") != seed:
                continue
            idx = torch.tensor(record["poison_indices"])
            poisons = run.trial_poisons(pcfg, seed, record)
            train, model, _ = run.poisoned_victim(pcfg, seed, record["key"], idx, poisons)
            target_vec = torch.zeros(ds.num_classes)
            target_vec[record["target_classes"]] = 1.0
            triggers = ds.query.images(record["trigger_indices"])
            # the poisoned victim searches what the PADHASH runner searches (the poisoned split under the paper preset)
            database = run.search_database(pcfg, train, idx, poisons)
            if len(database) != len(ds.database):  # the evaluator scores against ds.database's labels
                raise PadhashError("defenses against PADHASH poisons need the paper preset (train = database) "
                                   "or padhash.poisons_in_database: false")
            sets.append(self._poisoned_set(f"padhash-pair{record['pair_index']}", ds, ev, train, idx, model,
                                           clean_map, triggers, target_vec, run.victim_recipe(pcfg, seed),
                                           pcfg.device, database=database))
        if not sets:
            raise PadhashError("padhash: the PADHASH run produced no poisoned sets")
        return sets

    def _poisoned_set(self, name, ds, ev: Evaluator, train, idx, model, clean_map, triggered, target_vec, recipe,
                      device, database=None) -> PoisonedSet:
        database = ds.database if database is None else database

        def evaluate_queries(m, trig, clean_q):
            db = ev.codes(m, database)
            return {**ev.triggered(m, db, trig, target_vec), "map_poisoned": ev.clean_map(m, db, clean_q)}

        return PoisonedSet(
            name=name, train=train, poison_idx=idx, backdoored=model, clean_map=clean_map,
            evaluate=lambda m: evaluate_queries(m, triggered, None), evaluate_queries=evaluate_queries,
            triggered=triggered, clean_queries=ds.query.images(), train_recipe=dataclasses.replace(recipe, device=device),
            num_classes=ds.num_classes, defender_clean=ds.database.images())

    # -- the defenses
    def run(self, defenses: list[str]) -> dict:
        bad = [d for d in defenses if d not in DEFENSES]
        if bad:
            raise PadhashError(f"defenses: {bad} not in {', '.join(DEFENSES)}")
        for ps in self.poisoned_sets():
            self._add(ps, "undefended", "-", ps.evaluate(ps.backdoored))
            for name in defenses:
                getattr(self, f"_{name}")(ps)
        from padhash.reports.defenses import write_defense_report

        write_defense_report(self.out)
        return ResultsFile.load(self.out)

    def _add(self, ps: PoisonedSet, defense: str, setting: Any, metrics: dict, **extra) -> None:
        key = f"{ps.name}|{defense}|{setting}"
        if not self.results.has(key):
            self.results.add({"key": key, "method": f"{defense}:{setting}", "defense": defense, "setting": setting,
                              "poisoned_set": ps.name, "map": ps.clean_map, **metrics, **extra})

    def _done(self, ps: PoisonedSet, defense: str, setting: Any) -> bool:
        return self.results.has(f"{ps.name}|{defense}|{setting}")

    def _spectral(self, ps: PoisonedSet) -> None:
        budget = self.cfg.spectral.budget or len(ps.poison_idx)
        setting = f"{self.cfg.spectral.removal_factor}x{budget}"
        if self._done(ps, "spectral", setting):
            return
        feats = backbone_features(ps.backdoored, ps.train.images())
        res = spectral_filter(feats, ps.train.labels, budget, ps.poison_idx,
                              removal_factor=self.cfg.spectral.removal_factor)
        model = train_hash_model(ps.train.subset(res.kept), ps.num_classes, ps.train_recipe,
                                 checkpoint_dir=self.out / "models" / f"spectral-{ps.name}-{setting}",
                                 progress=self.progress, feature_cache=self.features).eval()
        self._add(ps, "spectral", setting, ps.evaluate(model), poisons=len(ps.poison_idx),
                  removed=len(res.removed), poisons_removed=res.poisons_removed, clean_removed=res.clean_removed,
                  poisons_kept=res.poisons_kept, clean_kept=res.clean_kept)

    def _dp(self, ps: PoisonedSet) -> None:
        for sigma in self.cfg.noise_scales:
            setting = f"clip={self.cfg.dp.clip},sigma={sigma}"
            if self._done(ps, "dp", setting):
                continue
            dp = dataclasses.replace(self.cfg.dp, noise=sigma)
            model = train_hash_model(ps.train, ps.num_classes, ps.train_recipe, progress=self.progress,
                                     feature_cache=self.features, dp=dp)
            self._add(ps, "dp", setting, ps.evaluate(model), clip=self.cfg.dp.clip, noise=sigma)

    def _prune(self, ps: PoisonedSet) -> None:
        width = backbone_features(ps.backdoored, ps.defender_clean[:2]).shape[1]
        counts = sorted({int(round(f * width)) for f in self.cfg.prune.fractions})
        todo = [n for n in counts if not self._done(ps, "prune", n)]
        if not todo:
            return
        device = next(ps.backdoored.parameters()).device
        for row in pruning_curve(ps.backdoored, ps.defender_clean, todo, ps.evaluate, device=device):
            n = row.pop("pruned")
            self._add(ps, "prune", n, row, pruned=n, channels=width)

    def _preprocess(self, ps: PoisonedSet) -> None:
        p = self.cfg.preprocess
        for q in p.jpeg_quality:
            if not self._done(ps, "jpeg", q):
                self._add(ps, "jpeg", q, ps.evaluate_queries(ps.backdoored, jpeg(ps.triggered, q),
                                                             jpeg(ps.clean_queries, q)))
        for std in p.noise_std:
            setting = f"{std * 255:.1f}/255"
            if not self._done(ps, "gaussian", setting):
                gen = torch.Generator().manual_seed(derive_seed(0, "gaussian", ps.name, setting))
                self._add(ps, "gaussian", setting, ps.evaluate_queries(
                    ps.backdoored, gaussian_noise(ps.triggered, std, gen), gaussian_noise(ps.clean_queries, std, gen)))


@owns_run_folder()
def run_defense(cfg: DefenseConfig, out_dir: str | Path, defenses: list[str], *,
                victim_dir: str | Path | None = None, progress: bool = True, executor=None) -> dict:
    return DefenseRun(cfg, out_dir, victim_dir=victim_dir, progress=progress, executor=executor).run(defenses)
