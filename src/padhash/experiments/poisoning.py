"""The PADHASH experiment: threat model, surrogate, poisons, victim retraining, evaluation, the sanity ladder.

Roles are kept apart. The *victim* owns the data set, its hash method, backbone, code length, initial weights and
training recipe; it trains with a seed derived from (seed, "victim"). The *attacker* sees only a stolen stratified
fraction of the victim's training split (or another data set), trains its own surrogate(s) with seeds derived from
(seed, "attacker"), and crafts poisons from target-class images of its stolen share (Alg. 1 line 4; `attack.bases_from:
train` draws them from the victim's whole training split instead); it never touches victim weights. The surrogate
defaults to the victim's backbone and public weights (gray-box). The victim retrains with the poisons swapped in.

The ladder, on the same (trigger, target) pairs: `none` (the bases unperturbed: the training set is unchanged, so
this is the clean victim itself, trained once per seed), `witches_brew` (α = 0), `padhash` (α = attack.alpha) and
`label_flip` (the dirty-label upper bound: copies of the trigger itself, labelled y_t, in place of the poisons).

Study levers (each off by default, the faithful setting): `public` (a "public" model pretrained on a disjoint
`data.options.train_part`), `surrogate.checkpoints` (an ensemble of training points), `attack.project_out`.

Where the victim searches (`poisons_in_database`): PADHASH Section IV retrains the victim because many new images
entered its database, so when the training split IS the database (the "paper" presets) the poisoned victim encodes
and searches the poisoned split, for ASR and MAP* alike ("auto", the default). `true` with a separate database
appends every rung's poisons (label_flip's copies too) to it; `false` searches the clean database as loaded.
Every rung also reports `asr_clean_db`: the poisoned victim searching the clean database as loaded (the unpoisoned
training split under the paper presets): did the trigger's own code move, or only the poisons next to it?

Frozen backbones: one FeatureCache (RUN/features, or `feature_cache`) serves victims and surrogates, so only new
images (poisons, triggers) pass the backbone. Configs: poisoning_config; one trial: poisoning_trial; scores:
padhash.metrics.poisoning.
"""
from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from padhash.attacks.poisoning import craft_poisons
from padhash.attacks.poisoning.bases import base_pool, choose_bases
from padhash.attacks.poisoning.pairs import target_vector
from padhash.config import to_dict
from padhash.errors import PadhashError
from padhash.experiments.poisoning_config import (  # noqa: F401  (re-exported: the experiment's public names)
    CRAFTED, DEMO_CONFIG, METHODS, PUBLIC_INIT, PoisoningConfig, config_from_dict, digest, load_poisoning_config,
    surrogate_members,
)
from padhash.experiments.skeleton import DatasetCache, trial_key
from padhash.records import ResultsFile
from padhash.io import atomic_write_json, load_tensors, save_tensors
from padhash.rng import derive_seed
from padhash.runs import owns_run_folder
from padhash.validate import available_device


# ---------------------------------------------------------------------------------------------------- the runner
class PoisoningRun:
    """One run directory: shared models (clean victims, surrogates) are cached by the config pieces they depend on."""

    def __init__(self, cfg: PoisoningConfig, out_dir: str | Path, progress: bool = True, results: bool = True):
        self.cfg = cfg
        self.out = Path(out_dir)
        self.progress = progress
        self.results = ResultsFile(self.out, to_dict(cfg)) if results else None  # a worker's run writes no results
        self._models: dict[str, Any] = {}  # trained or loaded once per process
        self.device = available_device(cfg.device, "device")
        self._data = DatasetCache()
        self._codes_cache: dict[str, dict] = {}
        from padhash.models import FeatureCache
        self.features = FeatureCache(cfg.feature_cache or self.out / "features", progress=progress)

    # -- data and models
    def dataset(self, data_cfg):
        return self._data.dataset(data_cfg)

    def _init_path(self, init: str) -> Path:
        """The weight file of an init: a path, or PUBLIC_INIT + the name of this run's public model."""
        if init.startswith(PUBLIC_INIT):
            return self.out / "models" / init[len(PUBLIC_INIT):] / "weights.safetensors"
        return Path(init)

    def _init_model(self, tcfg, image_size: int, init: str):
        """A HashModel holding the weights of `init` (every parameter comes from the file, so no RNG is involved)."""
        from padhash.hashing.trainer import model_from_config

        model = model_from_config(dataclasses.replace(tcfg, weights=None), image_size)
        try:
            model.load_state_dict(load_tensors(self._init_path(init)))
        except RuntimeError as exc:
            raise PadhashError(f"{init}: does not fit a {tcfg.backbone} {tcfg.bits}-bit HashModel "
                               f"({str(exc).splitlines()[0]})") from None
        model.feature_cache = self.features
        return model.to(self.device)

    def _train(self, name: str, train_split, num_classes: int, tcfg, *, init: str | None, loss=None,
               snapshots: list[int] | None = None, keep: bool = False):
        """From scratch (the trainer seeds the initialisation from tcfg.seed) or fine-tuned from `init`; the weights
        after the `snapshots` epochs are kept beside the checkpoint (`_snapshot`)."""
        from padhash.hashing import train_hash_model

        if name in self._models:
            return self._models[name]
        model = self._init_model(tcfg, train_split.image_size, init) if init is not None else None
        model = train_hash_model(train_split, num_classes, tcfg, model=model, loss=loss,
                                 checkpoint_dir=self.out / "models" / name, progress=self.progress,
                                 feature_cache=self.features, snapshot_epochs=tuple(snapshots or ()))
        if keep:  # a model many trials share (the clean victim), kept in memory once per process
            self._models[name] = model.eval()
        return model.eval()

    def _snapshot(self, name: str, tcfg, image_size: int, epoch: int):
        """The model of training `name` after `epoch` (kept by `_train(..., snapshots=...)`)."""
        from padhash.hashing.trainer import snapshot_path

        return self._init_model(tcfg, image_size, str(snapshot_path(self.out / "models" / name, epoch))).eval()

    def with_public(self, cfg: PoisoningConfig, seed: int) -> PoisoningConfig:
        """cfg with victim_init and surrogate.init naming this seed's public model (trained and saved once), or
        cfg itself without `public` (or when already resolved: validation keeps victim_init empty beside it)."""
        if cfg.public is None or cfg.victim_init is not None:
            return cfg
        out = copy.deepcopy(cfg)
        out.victim_init = out.surrogate.init = PUBLIC_INIT + self.public_model(cfg, seed)
        return out

    def public_model(self, cfg: PoisoningConfig, seed: int) -> str:
        """Name of the public model: the victim's method, backbone and bits trained from scratch for public.epochs
        on public.train_part of the training split (disjoint from the victim's part), seeded by (seed, "public")."""
        p = cfg.public
        data = dataclasses.replace(cfg.data, options={**cfg.data.options, "train_part": list(p.train_part)})
        tcfg = dataclasses.replace(cfg.victim, seed=derive_seed(seed, "public"), epochs=p.epochs, lr=p.lr,
                                   device=cfg.device)
        name = f"public-{digest(data, tcfg)}"
        path = self._init_path(PUBLIC_INIT + name)
        if not path.is_file():  # the training itself resumes from its checkpoint
            ds = self.dataset(data)
            save_tensors(path, self._train(name, ds.train, ds.num_classes, tcfg, init=None).state_dict())
        return name

    def victim_recipe(self, cfg: PoisoningConfig, seed: int):
        return dataclasses.replace(cfg.victim, seed=derive_seed(seed, "victim"), device=cfg.device)

    def clean_victim(self, cfg: PoisoningConfig, seed: int):
        cfg = self.with_public(cfg, seed)
        ds = self.dataset(cfg.data)
        tcfg = self.victim_recipe(cfg, seed)
        name = f"victim-clean-{digest(cfg.data, tcfg, cfg.victim_init)}"
        return self._train(name, ds.train, ds.num_classes, tcfg, init=cfg.victim_init, keep=True)

    def surrogates(self, cfg: PoisoningConfig, seed: int) -> tuple[list, list]:
        """The attacker's model(s) and their own hashing losses, trained on the stolen subset (or another data set)."""
        cfg = self.with_public(cfg, seed)
        memo = f"surrogates-{seed}-{digest(cfg)}"  # the models with the losses they trained with, once per process
        if memo not in self._models:
            self._models[memo] = self._train_surrogates(cfg, seed)
        return self._models[memo]

    def _train_surrogates(self, cfg: PoisoningConfig, seed: int) -> tuple[list, list]:
        from padhash.data import stolen_subset
        from padhash.hashing import make_loss

        s, v = cfg.surrogate, cfg.victim
        attacker_seed = derive_seed(seed, "attacker")
        if s.data is not None:
            sur_ds = self.dataset(s.data)
            train = sur_ds.train
        else:
            sur_ds = self.dataset(cfg.data)
            train = sur_ds.train.subset(stolen_subset(sur_ds.train, s.stolen_fraction, attacker_seed))
        method, bits = s.method or v.method, s.bits or v.bits
        models, losses = [], []
        for i, (backbone, weights) in enumerate(surrogate_members(cfg)):
            member_seed = derive_seed(attacker_seed, "surrogate", i)
            tcfg = dataclasses.replace(v, method=method, bits=bits, backbone=backbone, seed=member_seed,
                                       epochs=s.epochs or v.epochs, lr=s.lr if s.lr is not None else v.lr,
                                       weights=weights, device=cfg.device)
            loss = make_loss(method, sur_ds.num_classes, bits, seed=member_seed, num_train=len(train), **tcfg.hparams)
            ckpts = [sorted(s.checkpoints)] if s.checkpoints else []  # absent by default: older cache names stay
            name = f"surrogate-{digest(s.data or cfg.data, s.stolen_fraction, tcfg, s.init, *ckpts)}"
            model = self._train(name, train, sur_ds.num_classes, tcfg, init=s.init, loss=loss, snapshots=s.checkpoints)
            # one member per checkpoint, latest first (models[0] is the one diagnostics and base selection use)
            members = [self._snapshot(name, tcfg, train.image_size, e)
                       for e in sorted(s.checkpoints, reverse=True)] or [model]
            models += members
            losses += [loss] * len(members)
        return models, losses

    def poisons_in_database(self, cfg: PoisoningConfig) -> bool:
        """Whether the poisoned victim searches its poisons: `auto` = the training split is the database."""
        if cfg.poisons_in_database == "auto":
            ds = self.dataset(cfg.data)
            return ds.train is ds.database
        return bool(cfg.poisons_in_database)

    def search_database(self, cfg: PoisoningConfig, poisoned_train, base_idx, poisons):
        """The split a victim trained on `poisoned_train` encodes and searches (for ASR and MAP*)."""
        ds = self.dataset(cfg.data)
        if not self.poisons_in_database(cfg):
            return ds.database
        if ds.train is ds.database:
            return poisoned_train
        return ds.database.append(poisons.cpu(), ds.train.labels[base_idx])

    def codes(self, name: str, model, images_or_split) -> torch.Tensor:
        from padhash.hashing import encode

        if name not in self._codes_cache:
            self._codes_cache[name] = encode(model, images_or_split, device=self.cfg.device).cpu()
        return self._codes_cache[name]

    # -- the experiment: plan the trials, prepare what they share here, run them on the executor
    def run(self, executor=None) -> dict:
        from padhash.executors import ExecutorConfig, gpus_per_trial, run_trials
        from padhash.experiments.poisoning_trial import plan_trials, poisoning_trial

        trials = plan_trials(self)
        run_trials(trials, poisoning_trial, executor or ExecutorConfig(), self.results, progress=self.progress,
                   gpus_per_trial=gpus_per_trial(self.cfg.device))
        return ResultsFile.load(self.out)

    def pairs(self, cfg: PoisoningConfig, seed: int) -> list[dict]:
        from padhash.attacks.poisoning.pairs import choose_pairs

        return choose_pairs(self.dataset(cfg.data).query.labels, cfg.pairs, cfg.attack.target_classes,
                            cfg.attack.triggers, np.random.default_rng(derive_seed(seed, "pairs")))

    def _trial_key(self, axis, value, seed, pair_no, method) -> str:
        return trial_key(f"{axis}={value}" if axis else "", f"seed={seed}", f"pair={pair_no}", method)

    def prepare(self, cfg: PoisoningConfig, seed: int, pairs: list[dict], pending: dict[int, list[str]]):
        """Trains what a seed's pending trials ({pair: methods}) share, once, into the run folder: the public model,
        the clean victim, the surrogates, each pair's bases; returns cfg with the public model resolved."""
        cfg = self.with_public(cfg, seed)
        ds = self.dataset(cfg.data)
        if any(m != "none" for m in cfg.methods):  # a budget the attacker cannot fill fails before any training
            for pair in pairs:
                self._base_pool(cfg, seed, target_vector(pair, ds.num_classes))
        self.clean_victim(cfg, seed)
        for p, methods in pending.items():
            if any(m in CRAFTED for m in methods):
                self.surrogates(cfg, seed)
            if any(self.needs_bases(cfg, m) for m in methods):
                self.bases(cfg, seed, p, target_vector(pairs[p], ds.num_classes))
        return cfg

    def needs_bases(self, cfg: PoisoningConfig, method: str) -> bool:
        """Every rung but `none` swaps bases; `none` appends them, unperturbed, to a separate searched database."""
        ds = self.dataset(cfg.data)
        return method != "none" or (self.poisons_in_database(cfg) and ds.train is not ds.database)

    # -- pieces of a trial
    def budget(self, cfg: PoisoningConfig) -> int:
        ds = self.dataset(cfg.data)
        return cfg.attack.poison_count or max(1, int(round(cfg.attack.poison_ratio * len(ds.train))))

    def poisoned_victim(self, cfg: PoisoningConfig, seed: int, key: str, base_idx, poisons):
        """(poisoned training split, victim retrained on it, its model name): the bases at ``base_idx`` swapped for
        ``poisons``; trained once per trial key, then loaded from the run's models."""
        ds = self.dataset(cfg.data)
        poisoned_train = ds.train.replace(base_idx, poisons.cpu())
        name = f"victim-{digest(key, cfg.data, self.victim_recipe(cfg, seed), cfg.victim_init, cfg.attack)}"
        model = self._train(name, poisoned_train, ds.num_classes, self.victim_recipe(cfg, seed), init=cfg.victim_init)
        return poisoned_train, model, name

    def trial_poisons(self, cfg: PoisoningConfig, seed: int, record: dict) -> torch.Tensor:
        """The poisons a finished trial (its results record) swapped in; crafted ones come from the run's store."""
        ds = self.dataset(cfg.data)
        base_idx = record["poison_indices"]
        poisons, _ = self._poisons(cfg, seed, record["key"], record["method"], ds.train.images(base_idx), base_idx,
                                   ds.query.images(record["trigger_indices"]), None, None)
        return poisons

    def _base_pool(self, cfg, seed, target) -> torch.Tensor:
        """The target-class images poisons may start from; one-line error when the poison budget exceeds them."""
        from padhash.data import stolen_subset

        ds, n = self.dataset(cfg.data), self.budget(cfg)
        stolen = None
        if cfg.attack.bases_from == "stolen":
            stolen = set(stolen_subset(ds.train, cfg.surrogate.stolen_fraction, derive_seed(seed, "attacker")).tolist())
        pool = base_pool(ds.train.labels, target, cfg.eval.match, stolen)
        if len(pool) < n:
            raise PadhashError(f"attack: budget of {n} poisons exceeds the {len(pool)} target-class images available "
                               f"(bases_from={cfg.attack.bases_from})")
        return pool

    def bases(self, cfg, seed, pair_no, target) -> list[int]:
        """The pair's bases (random, or by gradient norm on the first surrogate), chosen once and kept in RUN/bases
        so every rung of the pair, in any worker, swaps the same images."""
        path = self.out / "bases" / f"{digest(cfg, seed, pair_no)}.json"
        if path.exists():
            return json.loads(path.read_text())
        surrogate = self.surrogates(cfg, seed) if cfg.attack.base_selection == "gradient_norm" else None
        chosen = choose_bases(self._base_pool(cfg, seed, target), self.budget(cfg), cfg.attack.base_selection,
                              np.random.default_rng(derive_seed(seed, "bases", pair_no)),
                              surrogate and (surrogate[0][0], surrogate[1][0]), self.dataset(cfg.data).train,
                              cfg.attack.params, self.device)
        atomic_write_json(path, chosen)
        return chosen

    def _poisons(self, cfg, seed, key, method, bases, base_idx, triggers, target, surrogate):
        """The images swapped in for the bases; crafted ones are saved so a resumed run does not craft them again."""
        ds = self.dataset(cfg.data)
        if method == "label_flip":  # dirty label: the trigger itself, as many copies as poisons, keeping label y_t
            reps = [triggers[i % len(triggers)] for i in range(len(base_idx))]
            return torch.stack(reps), {}
        path = self.out / "poisons" / f"{digest(key, cfg.attack, cfg.surrogate)}.safetensors"
        if path.exists():
            saved = load_tensors(path, self.device)
            info = json.loads((path.with_suffix(".json")).read_text())
            return saved["poisons"], info
        ccfg = dataclasses.replace(cfg.attack, alpha=cfg.attack.alpha if method == "padhash" else 0.0)
        labels = ds.train.labels[base_idx].to(self.device)
        res = craft_poisons(surrogate[0], surrogate[1], bases, labels, triggers, target.to(self.device), ccfg,
                            generator=torch.Generator().manual_seed(derive_seed(seed, "craft", key)),
                            progress=self.progress)
        info = {"grad_cosine_before": res.grad_cosine_before, "grad_cosine": res.grad_cosine_after,
                "grad_norm_ratio_before": res.grad_norm_ratio_before, "grad_norm_ratio": res.grad_norm_ratio_after,
                "matching_loss": res.loss, "matching_loss_start": res.loss_history[0] if res.loss_history else None,
                "restart_losses": res.restart_losses}
        save_tensors(path, {"poisons": res.poisons})
        atomic_write_json(path.with_suffix(".json"), info)
        return res.poisons, info


@owns_run_folder()
def run_poisoning(cfg: PoisoningConfig, out_dir: str | Path, progress: bool = True, executor=None) -> dict:
    """Run (or resume) the experiment in out_dir; writes results.json, report.md and figures/. One trial per
    (sweep point, seed, pair, method), run on `executor` (padhash.executors.ExecutorConfig; default: here)."""
    from padhash.reports.poisoning import write_poisoning_report

    out_dir = Path(out_dir)
    results = PoisoningRun(cfg, out_dir, progress=progress).run(executor)
    write_poisoning_report(out_dir)
    return results
