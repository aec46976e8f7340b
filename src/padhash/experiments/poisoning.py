"""The PADHASH experiment: threat model, surrogate, poisons, victim retraining, evaluation, the sanity ladder.

Roles are kept apart. The *victim* owns the data set, its hash method, backbone, code length, initial weights and
training recipe; it trains with a seed derived from (seed, "victim"). The *attacker* sees only a stolen stratified
fraction of the victim's training split (or another data set), trains its own surrogate(s) with seeds derived from
(seed, "attacker"), and crafts poisons from target-class images of the victim's training split; it never touches
victim weights. The victim then retrains with the poisons swapped in (labels unchanged).

The ladder, on the same (trigger, target) pairs: `none` (the bases unperturbed: the training set is unchanged, so
this is the clean victim itself, trained once per seed), `witches_brew` (α = 0), `padhash` (α = attack.alpha) and
`label_flip` (the dirty-label upper bound: copies of the trigger itself, labelled y_t, in place of the poisons).

Study levers (issue 9; each off by default, the faithful setting): `public` trains a "public" model on a disjoint
part of the training split (`data.options.train_part`) that victim and surrogate then fine-tune; `surrogate.checkpoints`
crafts against several points of one surrogate training; `attack.project_out` (padhash.attacks.poisoning.craft).

Where the victim searches (`poisons_in_database`): PADHASH Section IV retrains the victim because many new images
entered its database, so when the training split IS the database (the "paper" presets) the poisoned victim encodes
and searches the poisoned split, for ASR and MAP* alike ("auto", the default). `true` with a separate database
appends every rung's poisons (label_flip's copies too) to it; `false` searches the clean database as loaded.
"""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from padhash.attacks.poisoning import CraftConfig, craft_poisons, gradient_norm, matched_parameters, parameter_gradient
from padhash.config import OMIT_AT_DEFAULT, convert_field, from_dict, load_yaml, to_dict
from padhash.defenses.preprocess import gaussian_noise, jpeg
from padhash.errors import PadhashError
from padhash.runs import owns_run_folder
from padhash.validate import available_device, check_device, check_range, check_recipe
from padhash.experiments.records import ResultsFile
from padhash.io import atomic_write_json, load_tensors, save_tensors
from padhash.rng import derive_seed

METHODS = ("none", "witches_brew", "padhash", "label_flip")
CRAFTED = ("witches_brew", "padhash")
BASES_FROM = ("train", "stolen")
BASE_SELECTIONS = ("random", "gradient_norm")
THRESHOLDS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
POISONS_IN_DATABASE = ("auto", True, False)
PUBLIC_INIT = "public:"  # an init naming this run's public model: RUN/models/<name>/weights.safetensors


def _data_config():
    from padhash.data import DataConfig

    return DataConfig()


def _train_config():
    from padhash.hashing import TrainConfig

    return TrainConfig()


@dataclass
class SurrogateConfig:
    backbones: list[str] = field(default_factory=lambda: ["smallcnn"])  # more than one = ensemble (black-box)
    method: str | None = None          # None = the victim's hash method (gray-box)
    bits: int | None = None            # None = the victim's code length
    stolen_fraction: float = 0.1       # stratified share of the victim's training split the attacker holds
    data: Any = None                   # a DataConfig: train the surrogate on another data set instead (Table X)
    epochs: int | None = None          # None = the victim's recipe
    lr: float | None = None
    weights: list[str] = field(default_factory=list)  # local backbone weight files, one per backbone (or none)
    init: str | None = None            # a HashModel .safetensors both sides start from (the "public" model)
    # epochs of the surrogate's training whose weights are ensemble members (one training per backbone, one member
    # per listed epoch: poisons matched against early and late surrogates); [] = the trained surrogate only
    checkpoints: list[int] = field(default_factory=list, metadata=OMIT_AT_DEFAULT)


@dataclass
class PublicConfig:
    """A "public" model pretrained by the project on a part of the training split disjoint from the victim's
    (`data.options.train_part`); victim and surrogate fine-tune it (the papers' shared pretrained start)."""
    train_part: list[float] = field(default_factory=lambda: [0.0, 0.5])
    epochs: int = 15
    lr: float | None = None            # None = the trainer's default for the victim's optimizer (Adam 1e-3)


@dataclass
class AttackConfig(CraftConfig):
    poison_ratio: float = 0.0025       # poisons / victim training set (PADHASH CIFAR-10: 0.25%)
    poison_count: int | None = None    # overrides poison_ratio when given
    triggers: int = 1                  # trigger images per pair (same source class; their gradients are averaged)
    target_classes: int = 1            # classes in y_t (>1: a multi-hot target)
    bases_from: str = "train"          # "train": target-class images of the victim's training split; "stolen"
    base_selection: str = "random"     # "random" (Witches' Brew) | "gradient_norm" (largest surrogate gradient)


@dataclass
class EvalConfig:
    topk: int = 40                     # ASR@K (PADHASH: 40)
    threshold: float = 0.3             # a trigger succeeds when ≥ this share of its top-K carries y_t
    noise_std: float = 8 / 255         # Gaussian noise on the triggers (Table VIII)
    jpeg_quality: int = 85             # JPEG on the triggers (Table VIII)
    map_topk: int | None = None        # MAP / MAP* over the query split; None = mAP@all


@dataclass
class PoisoningConfig:
    data: Any = field(default_factory=_data_config)          # padhash.data.DataConfig
    victim: Any = field(default_factory=_train_config)       # padhash.hashing.TrainConfig (victim's recipe)
    victim_init: str | None = None     # a HashModel .safetensors the victim fine-tunes from (None = from scratch)
    surrogate: SurrogateConfig = field(default_factory=SurrogateConfig)
    attack: AttackConfig = field(default_factory=AttackConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    methods: list[str] = field(default_factory=lambda: list(METHODS))
    pairs: int = 5                     # (trigger, target) pairs per seed
    seeds: list[int] = field(default_factory=lambda: [0])
    sweep: dict[str, list] = field(default_factory=dict)     # one axis, e.g. {"attack.alpha": [0.0, 0.1, 0.2]}
    device: str = "cpu"
    poisons_in_database: bool | str = "auto"  # the poisoned victim searches the poisoned images too; auto = true
                                              # iff the training split is the database (PADHASH Section IV)
    # victim and surrogate fine-tune a public model trained on a disjoint part of the training split (PublicConfig)
    public: PublicConfig | None = field(default=None, metadata=OMIT_AT_DEFAULT)


def config_from_dict(data: dict[str, Any], where: str = "config") -> PoisoningConfig:
    """Build and check a PoisoningConfig (nested data / victim / surrogate.data use the foundation's dataclasses)."""
    from padhash.data import DataConfig
    from padhash.hashing import TrainConfig

    data = dict(data)
    nested = {"data": DataConfig, "victim": TrainConfig}
    built = {k: from_dict(cls, data.pop(k) or {}, f"{where}.{k}") for k, cls in nested.items() if k in data}
    surrogate = dict(data.pop("surrogate", None) or {})
    sur_data = surrogate.pop("data", None)
    cfg = from_dict(PoisoningConfig, {**data, "surrogate": surrogate}, where)
    for k, v in built.items():
        setattr(cfg, k, v)
    if sur_data is not None:
        cfg.surrogate.data = from_dict(DataConfig, sur_data, f"{where}.surrogate.data")
    _validate(cfg, where)
    return cfg


def load_poisoning_config(path: str | Path, overrides: dict[str, Any] | None = None) -> PoisoningConfig:
    data = load_yaml(path)
    data.update(overrides or {})
    return config_from_dict(data, Path(path).name)


def _validate(cfg: PoisoningConfig, where: str) -> None:
    bad = [m for m in cfg.methods if m not in METHODS]
    if bad or not cfg.methods:
        raise PadhashError(f"{where}.methods: {bad or '[]'} not in {', '.join(METHODS)}")
    if cfg.pairs < 1 or not cfg.seeds:
        raise PadhashError(f"{where}: pairs must be ≥ 1 and seeds non-empty")
    check_recipe(cfg.victim, f"{where}.victim")
    check_device(cfg.device, f"{where}.device")
    check_range(f"{where}.eval.jpeg_quality", cfg.eval.jpeg_quality, 1, 100)
    check_range(f"{where}.eval.noise_std", cfg.eval.noise_std, 0)
    a = cfg.attack
    a.validate()
    if a.bases_from not in BASES_FROM:
        raise PadhashError(f"{where}.attack.bases_from: {a.bases_from!r} is not one of {', '.join(BASES_FROM)}")
    if a.base_selection not in BASE_SELECTIONS:
        raise PadhashError(f"{where}.attack.base_selection: {a.base_selection!r} is not one of {', '.join(BASE_SELECTIONS)}")
    if a.poison_count is None and not 0 < a.poison_ratio < 1:
        raise PadhashError(f"{where}.attack.poison_ratio: must be in (0, 1), got {a.poison_ratio}")
    if a.poison_count is not None and a.poison_count < 1:
        raise PadhashError(f"{where}.attack.poison_count: must be ≥ 1, got {a.poison_count}")
    if a.triggers < 1 or a.target_classes < 1:
        raise PadhashError(f"{where}.attack: triggers and target_classes must be ≥ 1")
    if not 0 < cfg.surrogate.stolen_fraction <= 1:
        raise PadhashError(f"{where}.surrogate.stolen_fraction: must be in (0, 1], got {cfg.surrogate.stolen_fraction}")
    if not cfg.surrogate.backbones:
        raise PadhashError(f"{where}.surrogate.backbones: give at least one backbone")
    if cfg.surrogate.weights and len(cfg.surrogate.weights) != len(cfg.surrogate.backbones):
        raise PadhashError(f"{where}.surrogate.weights: give one file per backbone ({len(cfg.surrogate.backbones)})")
    if not 0 < cfg.eval.threshold <= 1 or cfg.eval.topk < 1:
        raise PadhashError(f"{where}.eval: topk must be ≥ 1 and threshold in (0, 1]")
    if cfg.poisons_in_database not in POISONS_IN_DATABASE:
        raise PadhashError(f"{where}.poisons_in_database: {cfg.poisons_in_database!r} is not one of auto, true, false")
    _validate_levers(cfg, where)
    if len(cfg.sweep) > 1:
        raise PadhashError(f"{where}.sweep: one axis at a time, got {', '.join(cfg.sweep)}")
    for path, values in cfg.sweep.items():
        if not values:
            raise PadhashError(f"{where}.sweep.{path}: give at least one value")
        for value in values:  # every point checked before any training starts
            point = _override(cfg, path, value, where)
            point.sweep = {}
            _validate(point, f"{where} (sweep {path}={value!r})")


def _validate_levers(cfg: PoisoningConfig, where: str) -> None:
    from padhash.data.sampling import check_train_part

    s, v = cfg.surrogate, cfg.victim
    epochs = s.epochs or v.epochs
    if len(set(s.checkpoints)) != len(s.checkpoints) or any(not 1 <= e <= epochs for e in s.checkpoints):
        raise PadhashError(f"{where}.surrogate.checkpoints: distinct epochs in 1..{epochs}, got {s.checkpoints}")
    if cfg.public is None:
        return
    p, own = cfg.public, cfg.data.options.get("train_part")
    if own is None:
        raise PadhashError(f"{where}.public: set data.options.train_part, the victim's part of the training split "
                           f"(disjoint from public.train_part {p.train_part})")
    try:
        (p_lo, p_hi), (v_lo, v_hi) = check_train_part(p.train_part), check_train_part(own)
    except PadhashError as exc:
        raise PadhashError(f"{where}.public: {exc}") from None
    if max(p_lo, v_lo) < min(p_hi, v_hi):
        raise PadhashError(f"{where}.public.train_part {p.train_part} overlaps the victim's data.options.train_part "
                           f"{own}: the public part must be disjoint")
    if p.epochs < 1:
        raise PadhashError(f"{where}.public.epochs: must be ≥ 1, got {p.epochs}")
    if cfg.victim_init is not None or s.init is not None:
        raise PadhashError(f"{where}.public: victim and surrogate start from the public model; drop victim_init "
                           "and surrogate.init")
    if any(b != v.backbone for b in s.backbones) or (s.bits or v.bits) != v.bits or s.weights:
        raise PadhashError(f"{where}.public: the surrogate fine-tunes the public model, so it needs the victim's "
                           "backbone and bits and no surrogate.weights")


def _override(cfg: PoisoningConfig, path: str, value: Any, where: str = "config") -> PoisoningConfig:
    """A deep copy of cfg with the dotted `path` (e.g. attack.alpha, victim.bits) set to value."""
    out = copy.deepcopy(cfg)
    *parents, leaf = path.split(".")
    obj = out
    for name in parents:
        if not hasattr(obj, name):
            raise PadhashError(f"{where}.sweep: unknown key {path!r}")
        obj = getattr(obj, name)
    if not dataclasses.is_dataclass(obj) or leaf not in {f.name for f in dataclasses.fields(obj)}:
        raise PadhashError(f"{where}.sweep: unknown key {path!r}")
    setattr(obj, leaf, convert_field(obj, leaf, value, f"{where}.sweep.{path}"))
    return out


def _digest(*parts: Any) -> str:
    text = json.dumps([to_dict(p) for p in parts], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:10]


# ---------------------------------------------------------------------------------------------------- the runner
class PoisoningRun:
    """One run directory: shared models (clean victims, surrogates) are cached by the config pieces they depend on."""

    def __init__(self, cfg: PoisoningConfig, out_dir: str | Path, progress: bool = True):
        from padhash.data import load_dataset_from

        self.cfg = cfg
        self.out = Path(out_dir)
        self.progress = progress
        self.results = ResultsFile(self.out, to_dict(cfg))
        self.device = available_device(cfg.device, "device")
        self._datasets: dict[str, Any] = {}
        self._load_dataset = load_dataset_from
        self._codes_cache: dict[str, dict] = {}

    # -- data and models
    def dataset(self, data_cfg):
        key = _digest(data_cfg)
        if key not in self._datasets:
            self._datasets[key] = self._load_dataset(data_cfg)
        return self._datasets[key]

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
        return model.to(self.device)

    def _train(self, name: str, train_split, num_classes: int, tcfg, *, init: str | None, loss=None,
               snapshots: list[int] | None = None):
        """From scratch (the trainer seeds the initialisation from tcfg.seed) or fine-tuned from `init`; the weights
        after the `snapshots` epochs are kept beside the checkpoint (`_snapshot`)."""
        from padhash.hashing import train_hash_model

        model = self._init_model(tcfg, train_split.image_size, init) if init is not None else None
        model = train_hash_model(train_split, num_classes, tcfg, model=model, loss=loss,
                                 checkpoint_dir=self.out / "models" / name, progress=self.progress,
                                 snapshot_epochs=tuple(snapshots or ()))
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
        name = f"public-{_digest(data, tcfg)}"
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
        name = f"victim-clean-{_digest(cfg.data, tcfg, cfg.victim_init)}"
        return self._train(name, ds.train, ds.num_classes, tcfg, init=cfg.victim_init)

    def surrogates(self, cfg: PoisoningConfig, seed: int) -> tuple[list, list]:
        """The attacker's model(s) and their own hashing losses, trained on the stolen subset (or another data set)."""
        from padhash.data import stolen_subset
        from padhash.hashing import make_loss

        cfg = self.with_public(cfg, seed)
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
        for i, backbone in enumerate(s.backbones):
            member_seed = derive_seed(attacker_seed, "surrogate", i)
            tcfg = dataclasses.replace(v, method=method, bits=bits, backbone=backbone, seed=member_seed,
                                       epochs=s.epochs or v.epochs, lr=s.lr if s.lr is not None else v.lr,
                                       weights=s.weights[i] if s.weights else None, device=cfg.device)
            loss = make_loss(method, sur_ds.num_classes, bits, seed=member_seed, num_train=len(train), **tcfg.hparams)
            ckpts = [sorted(s.checkpoints)] if s.checkpoints else []  # absent by default: older cache names stay
            name = f"surrogate-{_digest(s.data or cfg.data, s.stolen_fraction, tcfg, s.init, *ckpts)}"
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

    # -- the experiment
    def run(self) -> dict:
        cfg = self.cfg
        axis, values = next(iter(cfg.sweep.items()), (None, [None]))
        for value in values:
            vcfg = _override(cfg, axis, value) if axis else cfg
            for seed in cfg.seeds:
                self._run_seed(vcfg, seed, axis, value)
        return ResultsFile.load(self.out)

    def _pairs(self, cfg: PoisoningConfig, seed: int) -> list[dict]:
        """(trigger indices in the query split, target classes), drawn from a seeded RNG independent of the rungs."""
        ds = self.dataset(cfg.data)
        rng = np.random.default_rng(derive_seed(seed, "pairs"))
        qlabels = ds.query.labels.numpy() > 0
        pairs = []
        for _ in range(cfg.pairs):
            first = int(rng.integers(len(ds.query)))
            source = np.flatnonzero(qlabels[first])
            candidates = np.flatnonzero(~qlabels[first])
            if len(candidates) < cfg.attack.target_classes:
                raise PadhashError("data: a trigger carries too many labels to pick a target it lacks")
            targets = sorted(int(c) for c in rng.choice(candidates, cfg.attack.target_classes, replace=False))
            # further triggers: other queries sharing the first trigger's labels and carrying no target label
            same = np.flatnonzero((qlabels[:, source].all(1)) & (~qlabels[:, targets].any(1)))
            same = same[same != first]
            extra = rng.choice(same, min(cfg.attack.triggers - 1, len(same)), replace=False) if len(same) else []
            pairs.append({"triggers": [first, *map(int, extra)], "targets": targets})
        return pairs

    def _trial_key(self, axis, value, seed, pair_no, method) -> str:
        prefix = f"{axis}={value}|" if axis else ""
        return f"{prefix}seed={seed}|pair={pair_no}|{method}"

    def _run_seed(self, cfg: PoisoningConfig, seed: int, axis: str | None, value: Any) -> None:
        from padhash.metrics import map_at_k

        pairs = self._pairs(cfg, seed)
        keys = {(p, m): self._trial_key(axis, value, seed, p, m) for p in range(len(pairs)) for m in cfg.methods}
        if all(self.results.has(k) for k in keys.values()):
            return
        cfg = self.with_public(cfg, seed)
        ds = self.dataset(cfg.data)
        victim = self.clean_victim(cfg, seed)
        vtag = f"victim-clean-{_digest(cfg.data, self.victim_recipe(cfg, seed), cfg.victim_init)}"
        db_codes = self.codes(vtag + "/db", victim, ds.database)
        q_codes = self.codes(vtag + "/query", victim, ds.query)
        clean_map = map_at_k(q_codes, db_codes, ds.query.labels, ds.database.labels, cfg.eval.map_topk)
        in_db = self.poisons_in_database(cfg)
        surrogate = None
        for p, pair in enumerate(pairs):
            if all(self.results.has(keys[(p, m)]) for m in cfg.methods):
                continue
            triggers = ds.query.images(pair["triggers"]).to(self.device)
            target = torch.zeros(ds.num_classes)
            target[pair["targets"]] = 1.0
            before = self._evaluate(cfg, seed, p, victim, db_codes, ds.database, triggers, target)
            base_idx = None
            for method in cfg.methods:
                key = keys[(p, method)]
                if self.results.has(key):
                    continue
                record = {"key": key, "method": method, "seed": seed, "victim_seed": self.victim_recipe(cfg, seed).seed,
                          "attacker_seed": derive_seed(seed, "attacker"), "pair_index": p,
                          "trigger_index": pair["triggers"][0], "trigger_indices": pair["triggers"],
                          "target_class": pair["targets"][0], "target_classes": pair["targets"],
                          "source_classes": ds.query.labels[pair["triggers"][0]].nonzero().flatten().tolist(),
                          "map": clean_map, "trigger_dist_target_before": before["trigger_dist_target"],
                          "target_fraction_before": before["target_fraction"], "poisons_in_database": in_db}
                if axis:
                    record["sweep_axis"], record["sweep_value"] = axis, value
                needs_surrogate = method in CRAFTED or cfg.attack.base_selection == "gradient_norm"
                append_bases = method == "none" and in_db and ds.train is not ds.database
                if surrogate is None and needs_surrogate and (method != "none" or append_bases):
                    surrogate = self.surrogates(cfg, seed)
                if base_idx is None and (method != "none" or append_bases):
                    base_idx = self._choose_bases(cfg, seed, p, target, surrogate)
                if method == "none":
                    # the unperturbed bases leave the training set as it is: the clean victim, searching the clean
                    # database, or (poisons appended to a separate database) that database plus the bases
                    none_eval, database, none_map = before, ds.database, clean_map
                    if append_bases:
                        database = self.search_database(cfg, ds.train, base_idx, ds.train.images(base_idx))
                        codes = self.codes(f"{vtag}/db+bases-{key}", victim, database)
                        none_eval = self._evaluate(cfg, seed, p, victim, codes, database, triggers, target)
                        none_map = map_at_k(q_codes, codes, ds.query.labels, database.labels, cfg.eval.map_topk)
                    record.update(alpha=None, poison_count=0, map_poisoned=none_map, database_size=len(database),
                                  **none_eval)
                    self.results.add(record)
                    continue
                bases = ds.train.images(base_idx).to(self.device)
                poisons, craft_info = self._poisons(cfg, seed, key, method, bases, base_idx, triggers, target, surrogate)
                poisoned_train, pvictim, pv_name = self.poisoned_victim(cfg, seed, key, base_idx, poisons)
                database = self.search_database(cfg, poisoned_train, base_idx, poisons)
                p_db = self.codes(f"{pv_name}/db-{'poisoned' if in_db else 'clean'}", pvictim, database)
                p_query = self.codes(pv_name + "/query", pvictim, ds.query)
                after = self._evaluate(cfg, seed, p, pvictim, p_db, database, triggers, target)
                record.update(alpha=cfg.attack.alpha if method == "padhash" else (0.0 if method == "witches_brew" else None),
                              poison_count=len(base_idx), poison_indices=[int(i) for i in base_idx],
                              database_size=len(database),
                              map_poisoned=map_at_k(p_query, p_db, ds.query.labels, database.labels, cfg.eval.map_topk),
                              **after, **craft_info,
                              **self._poison_quality(bases, poisons),
                              **self._poison_codes(database, pvictim, p_db, poisons, record["source_classes"], target,
                                                   "victim"))
                if surrogate is not None and method in CRAFTED:
                    s_db = self.codes(f"surrogate-{seed}-{_digest(cfg.data, cfg.surrogate, cfg.victim)}/db", surrogate[0][0], ds.database)
                    record.update(self._poison_codes(ds.database, surrogate[0][0], s_db, poisons,
                                                     record["source_classes"], target, "surrogate"))
                self.results.add(record)
                self._save_images(key, bases, poisons, triggers, (ds.database, database), victim, pvictim, db_codes,
                                  p_db, target)

    # -- pieces of a trial
    def budget(self, cfg: PoisoningConfig) -> int:
        ds = self.dataset(cfg.data)
        return cfg.attack.poison_count or max(1, int(round(cfg.attack.poison_ratio * len(ds.train))))

    def poisoned_victim(self, cfg: PoisoningConfig, seed: int, key: str, base_idx, poisons):
        """(poisoned training split, victim retrained on it, its model name): the bases at ``base_idx`` swapped for
        ``poisons``; trained once per trial key, then loaded from the run's models."""
        ds = self.dataset(cfg.data)
        poisoned_train = ds.train.replace(base_idx, poisons.cpu())
        name = f"victim-{_digest(key, cfg.data, self.victim_recipe(cfg, seed), cfg.victim_init, cfg.attack)}"
        model = self._train(name, poisoned_train, ds.num_classes, self.victim_recipe(cfg, seed), init=cfg.victim_init)
        return poisoned_train, model, name

    def trial_poisons(self, cfg: PoisoningConfig, seed: int, record: dict) -> torch.Tensor:
        """The poisons a finished trial (its results record) swapped in; crafted ones come from the run's store."""
        ds = self.dataset(cfg.data)
        base_idx = record["poison_indices"]
        poisons, _ = self._poisons(cfg, seed, record["key"], record["method"], ds.train.images(base_idx), base_idx,
                                   ds.query.images(record["trigger_indices"]), None, None)
        return poisons

    def _choose_bases(self, cfg, seed, pair_no, target, surrogate) -> list[int]:
        """Target-class images of the victim's training split (or of the stolen part), random or by gradient norm."""
        from padhash.data import stolen_subset

        ds = self.dataset(cfg.data)
        carries = (ds.train.labels[:, target > 0] > 0).any(1)
        pool = torch.nonzero(carries).flatten()
        if cfg.attack.bases_from == "stolen":
            stolen = set(stolen_subset(ds.train, cfg.surrogate.stolen_fraction, derive_seed(seed, "attacker")).tolist())
            pool = torch.tensor([int(i) for i in pool if int(i) in stolen], dtype=torch.long)
        n = self.budget(cfg)
        if len(pool) < n:
            raise PadhashError(f"attack: budget of {n} poisons exceeds the {len(pool)} target-class images available "
                               f"(bases_from={cfg.attack.bases_from})")
        rng = np.random.default_rng(derive_seed(seed, "bases", pair_no))
        if cfg.attack.base_selection == "random":
            chosen = rng.choice(len(pool), n, replace=False)
        else:  # Witches' Brew's gradient-norm selection, on the first surrogate
            model, loss = surrogate[0][0], surrogate[1][0]
            params = matched_parameters(model, cfg.attack.params)
            norms = []
            for i in pool.tolist():
                x = ds.train.images([i]).to(self.device)
                norms.append(float(gradient_norm(parameter_gradient(model, loss, x, ds.train.labels[[i]].to(self.device), params))))
            chosen = np.argsort(-np.asarray(norms), kind="stable")[:n]
        return sorted(int(pool[int(i)]) for i in chosen)

    def _poisons(self, cfg, seed, key, method, bases, base_idx, triggers, target, surrogate):
        """The images swapped in for the bases; crafted ones are saved so a resumed run does not craft them again."""
        ds = self.dataset(cfg.data)
        if method == "label_flip":  # dirty label: the trigger itself, as many copies as poisons, keeping label y_t
            reps = [triggers[i % len(triggers)] for i in range(len(base_idx))]
            return torch.stack(reps), {}
        path = self.out / "poisons" / f"{_digest(key, cfg.attack, cfg.surrogate)}.safetensors"
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

    def _evaluate(self, cfg, seed, pair_no, model, db_codes, database, triggers, target) -> dict:
        """ASR@K over the triggers (clean, Gaussian noise, JPEG) and the trigger's distance to the target class,
        searching `database` (db_codes are its codes under `model`)."""
        from padhash.hashing import encode
        from padhash.metrics import asr_at_k
        from padhash.retrieval import hamming_topk

        e = cfg.eval
        noise_gen = torch.Generator().manual_seed(derive_seed(seed, "noise", pair_no))
        variants = {"": triggers, "_noise": gaussian_noise(triggers, e.noise_std, generator=noise_gen),
                    "_jpeg": jpeg(triggers, e.jpeg_quality)}
        out: dict[str, Any] = {}
        for suffix, images in variants.items():
            codes = encode(model, images, device=cfg.device).cpu()
            _, idx = hamming_topk(codes, db_codes, e.topk)
            asr, fractions = asr_at_k(idx, database.labels, target, threshold=e.threshold)
            out[f"asr{suffix}"] = float(asr)
            out[f"target_fraction{suffix}"] = [float(f) for f in fractions]
            if suffix == "":
                out["asr_at_threshold"] = {str(t): float((fractions >= t - 1e-9).float().mean()) for t in THRESHOLDS}
                target_db = (database.labels[:, target > 0] > 0).any(1)
                dists = hamming_distance(codes, db_codes[target_db])
                out["trigger_dist_target"] = float(dists.min(1).values.float().mean())
        return out

    def _poison_codes(self, database, model, db_codes, poisons, source_classes, target, where: str) -> dict:
        """Mean Hamming distance of the poisons' codes to the source class's and the target class's code
        (the majority vote of that class's codes in `database` under `model`)."""
        from padhash.hashing import encode

        codes = encode(model, poisons, device=self.cfg.device).cpu()
        out = {}
        for name, classes in (("source", source_classes), ("target", target.nonzero().flatten().tolist())):
            members = (database.labels[:, classes] > 0).any(1)
            class_code = torch.where(db_codes[members].float().mean(0) >= 0, 1, -1).to(torch.int8)
            out[f"poison_dist_{name}_{where}"] = float(hamming_distance(codes, class_code[None]).float().mean())
        if where == "victim":
            out["poison_dist_target"] = out["poison_dist_target_victim"]  # DESIGN.md's metric name
        return out

    def _poison_quality(self, bases, poisons) -> dict:
        from padhash.metrics import psnr, ssim

        return {"psnr": float(psnr(poisons.cpu(), bases.cpu()).mean()), "ssim": float(ssim(poisons.cpu(), bases.cpu()).mean()),
                "linf": float((poisons - bases).abs().max())}

    def _save_images(self, key, bases, poisons, triggers, databases, victim, pvictim, db_codes, p_db, target) -> None:
        """Clean vs poisoned grid and the trigger's top-K before/after (databases: the clean and the searched one),
        for the first pair of each method."""
        from padhash.experiments.report import save_image_grid
        from padhash.hashing import encode
        from padhash.retrieval import hamming_topk

        if "|pair=0|" not in key:
            return
        method = key.rsplit("|", 1)[1]
        tag = key.replace("|", "_").replace("=", "-")
        n = min(8, len(bases))
        diff = ((poisons[:n] - bases[:n]).abs() * 4).clamp(0, 1)
        save_image_grid([list(bases[:n].cpu()), list(poisons[:n].cpu()), list(diff.cpu())],
                        self.out / "figures" / f"poisons_{tag}.png", row_titles=["clean", method, "|δ|×4"])
        rows, marks = [], []
        for model, codes, database in ((victim, db_codes, databases[0]), (pvictim, p_db, databases[1])):
            _, idx = hamming_topk(encode(model, triggers[:1], device=self.cfg.device).cpu(), codes, 10)
            rows.append([triggers[0].cpu()] + list(database.images(idx[0].tolist())))
            hits = (database.labels[idx[0]][:, target > 0] > 0).any(1).tolist()
            marks.append([None] + hits)
        save_image_grid(rows, self.out / "figures" / f"topk_{tag}.png", row_titles=["clean victim", f"{method} victim"],
                        marks=marks, title="trigger and its top-10 (✓ = target label)")


def hamming_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(Q, N) Hamming distances between ±1 codes: (K − a·b)/2."""
    return ((a.shape[1] - a.float() @ b.float().T) / 2).round().to(torch.int64)


@owns_run_folder()
def run_poisoning(cfg: PoisoningConfig, out_dir: str | Path, progress: bool = True) -> dict:
    """Run (or resume) the experiment in out_dir; writes results.json, report.md and figures/."""
    from padhash.experiments.poisoning_report import write_poisoning_report

    out_dir = Path(out_dir)
    results = PoisoningRun(cfg, out_dir, progress=progress).run()
    write_poisoning_report(out_dir)
    return results


# `padhash demo`: the ladder on the embedded digits, sized for ≤ 10 minutes on 2 cores (CSQ 32 bits, small CNN,
# 1 % poisons, ε 16/255, α 0.2, 250 signed-Adam steps; the victim from scratch with its default recipe).
DEMO_CONFIG: dict[str, Any] = {
    "data": {"name": "digits"},
    "victim": {"method": "csq", "bits": 32, "backbone": "smallcnn", "epochs": 15, "hflip": False},
    "surrogate": {"stolen_fraction": 0.1},
    "attack": {"alpha": 0.2, "eps": 16 / 255, "steps": 250, "poison_count": 16, "flip": False},
    "pairs": 3,
    "seeds": [0],
}
