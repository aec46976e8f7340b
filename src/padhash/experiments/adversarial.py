"""Adversarial-query experiments: DHTA / P2P / HAG / noise on a white-box victim, and the black-box transfer attack.

Query attack (`run_query_attack`, DHTA Tables 1, 3, 5, 6 and Fig. 7): `queries` random query images (from classes
the victim was trained on), each with a random target label ≠ its own among the database labels with more than n_t
items (DHTA-master's rule), and n_t database items of that label drawn without replacement; their codes on the victim
give the anchor (component voting). P2P uses the first of those n_t items, so DHTA and P2P share targets. Methods:
`none` (the benign query: the floor), `noise` (U(−ε, ε)), `p2p`, `dhta`, `hag` (untargeted) and `anchor` — the
query's code replaced by the anchor code itself, an ε = ∞ ceiling no image-space attack within the threat model can
exceed on average. Open set (Table 6): the victim is trained without `open_set_classes`; targets come only from them
(anchor images are database items of those classes) and queries only from the other classes.

Transfer attack (`run_transfer_attack`, Xiao & Wang): white-box surrogate(s) of another backbone / method, trained on
the same training split with their own seeds; a black-box victim. (query, target class) pairs are `mined` (the
globally closest on the surrogate), `band` (the reference's distance band, e.g. 12–18 of 48 bits) or `random`; each
pair is attacked toward `targets_per_pair` target codes, each the anchor of n_t surrogate codes of its own
target-class database items (n_t = 1: one database item's code, as the reference). Methods: `none`, `pgd`, `di`,
`transfer` (noise-robust), `di_mi` / `transfer_mi` (with the reference's momentum) and `white_box` (PGD on the victim
itself: the ceiling that breaks the black-box threat model). Success on the victim follows DESIGN.md's ASR.
The runners live in `adversarial_query` / `adversarial_transfer`; this module holds configs and shared pieces.
Trials are keyed `<sweep point>|seed=<s>|<method>`; the method recorded is `<method>@<sweep point>` under a sweep.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from padhash.attacks.adversarial import TargetedAttackConfig, TransferAttackConfig
from padhash import registry
from padhash.config import OMIT_AT_DEFAULT, from_dict, to_dict
from padhash.data import DataConfig
from padhash.errors import PadhashError
from padhash.executors import per_process
from padhash.validate import available_device, check_device, check_range, check_recipe
from padhash.records import ResultsFile
from padhash.experiments.skeleton import (  # noqa: F401  (with_value, sweep_points re-exported)
    DatasetCache, apply_point as _apply, build_config, check_sweep, digest, sweep_points, trial_key, with_value,
)
from padhash.hashing import TrainConfig
from padhash.metrics import retrieval_metrics  # noqa: F401  (re-exported)
from padhash.rng import seed_everything

# The built-in methods, from the registry (padhash.experiments.methods); a config may list any registered one.
QUERY_METHODS = registry.names("query")
TRANSFER_METHODS = registry.names("transfer")  # _mi: + momentum
PAIR_SELECTIONS = ("mined", "band", "random")
REGION_NOISES = ("gaussian", "uniform")  # transfer.sample_noise
# `padhash attack ...` without --config: the embedded digits, sized to finish in minutes on two CPU cores (the
# dataclass defaults are the papers' settings: 100 queries, 2000 iterations, 30-epoch victims).
QUERY_DEFAULTS: dict[str, Any] = {"victim": {"epochs": 10}, "queries": 30, "attack": {"steps": 200}}
TRANSFER_DEFAULTS: dict[str, Any] = {"victim": {"epochs": 10}, "pairs": 32,
                                     "surrogates": [{"method": "dpsh", "epochs": 10, "seed": 1}]}



@dataclass
class QueryEvalConfig:
    topk: int | None = 1000            # t-MAP@K / MAP@K (DHTA ImageNet: 1000); clipped to the database; None = all
    drop_empty: bool = False           # True = DHTA/CIBA convention (queries with no relevant item left out of MAP)
    grid_queries: int = 3              # benign / adversarial query pairs drawn in the top-10 grid


@dataclass
class QueryAttackConfig:
    data: Any = field(default_factory=DataConfig)        # padhash.data.DataConfig
    victim: Any = field(default_factory=TrainConfig)     # padhash.hashing.TrainConfig (white-box victim's recipe)
    attack: TargetedAttackConfig = field(default_factory=TargetedAttackConfig)
    n_t: int = 9                       # target-label objects voting the anchor (DHTA: 9; P2P = 1)
    open_set_classes: list[int] = field(default_factory=list)  # held out of the victim's training; the only targets
    queries: int = 100                 # attacked queries per seed (DHTA: 100)
    methods: list[str] = field(default_factory=lambda: registry.ladder("query", "dhta"))
    eval: QueryEvalConfig = field(default_factory=QueryEvalConfig)
    seeds: list[int] = field(default_factory=lambda: [0])
    sweep: dict[str, list] = field(default_factory=dict)   # ≤ 2 axes, e.g. {"victim.bits": [16, 32, 64]}
    device: str = "cpu"
    batch_size: int = 128              # queries attacked at once
    feature_cache: str | None = field(default=None, metadata=OMIT_AT_DEFAULT)  # frozen features; None = RUN/features
    # True: seed s trains its own victim (and surrogates) with TrainConfig.seed + s, so the ± over seeds includes
    # the models' retraining (a `--victim RUN` model stays one for all seeds); False: one model for all seeds,
    # the seeds draw queries, targets and noise only
    retrain_per_seed: bool = field(default=False, metadata=OMIT_AT_DEFAULT)
    # hyper-parameters of registered methods with their own config class: {method name: {field: value}}
    options: dict[str, dict] = field(default_factory=dict, metadata=OMIT_AT_DEFAULT)


@dataclass
class TransferEvalConfig:
    topk: int | None = 1000            # t-MAP@K on the victim
    success_topk: int = 40             # ASR@K (DESIGN.md: 40)
    threshold: float = 0.3             # ASR threshold (DESIGN.md: 0.3)
    region_levels: list[float] = field(default_factory=lambda: [i / 255 for i in (2, 4, 8, 16, 24, 32, 48, 64)])
    region_noise: str = "gaussian"     # the reference estimates the region with additive Gaussian noise
    region_samples: int = 8            # noise draws per level
    region_radius: float = 0.1         # surviving = within this fraction of K bits of the target code (ref: 5 of 48)


@dataclass
class TransferConfig:
    data: Any = field(default_factory=DataConfig)
    victim: Any = field(default_factory=TrainConfig)     # the black-box victim
    surrogates: list[Any] = field(default_factory=list)    # TrainConfigs of the attacker's white-box models
    attack: TransferAttackConfig = field(default_factory=TransferAttackConfig)
    diversity_prob: float = 0.5        # DI baseline's input-diversity probability (Xie et al.)
    n_t: int = 1                       # surrogate codes voting the target code (reference: 1 database item)
    pairs: int = 64                    # (query, target class) pairs per selection and seed (reference: 64)
    pair_selection: list[str] = field(default_factory=lambda: ["mined", "random"])
    # `band` pairs: mean distance inside (low, high) × bits (reference 12–18 of 48)
    pair_band: list[float] = field(default_factory=lambda: [0.25, 0.375], metadata=OMIT_AT_DEFAULT)
    # target codes per pair, each from its own n_t items (reference: 32)
    targets_per_pair: int = field(default=1, metadata=OMIT_AT_DEFAULT)
    momentum: float = field(default=1.0, metadata=OMIT_AT_DEFAULT)  # μ of the *_mi methods (reference miFGSM: 1.0)
    methods: list[str] = field(default_factory=lambda: registry.ladder("transfer", "transfer"))
    eval: TransferEvalConfig = field(default_factory=TransferEvalConfig)
    seeds: list[int] = field(default_factory=lambda: [0])
    sweep: dict[str, list] = field(default_factory=dict)
    device: str = "cpu"
    batch_size: int = 128
    feature_cache: str | None = field(default=None, metadata=OMIT_AT_DEFAULT)  # frozen features; None = RUN/features
    retrain_per_seed: bool = field(default=False, metadata=OMIT_AT_DEFAULT)  # as QueryAttackConfig's


# ------------------------------------------------------------------------------------------------------ configs
def query_config_from_dict(data: dict[str, Any], where: str = "config") -> QueryAttackConfig:
    cfg = build_config(QueryAttackConfig, data, where)
    _check_common(cfg, where)
    if any(c < 0 for c in cfg.open_set_classes):
        raise PadhashError(f"{where}.open_set_classes: class numbers are ≥ 0, got {cfg.open_set_classes}")
    cfg.attack.validate(f"{where}.attack")
    registry.check_methods("query", cfg.methods, where)
    unknown = sorted(set(cfg.options) - set(cfg.methods))
    if unknown:
        raise PadhashError(f"{where}.options: {', '.join(unknown)} not among the methods run ({', '.join(cfg.methods)})")
    for name in cfg.methods:  # every method's own options checked before anything trains
        if registry.get("query", name).section != "attack":
            registry.method_params(registry.get("query", name), cfg.options, where)
    if cfg.n_t < 1 or cfg.queries < 1 or not cfg.seeds or cfg.batch_size < 1:
        raise PadhashError(f"{where}: n_t, queries and batch_size must be ≥ 1 and seeds non-empty")
    if cfg.eval.topk is not None and cfg.eval.topk < 1:
        raise PadhashError(f"{where}.eval.topk: must be ≥ 1 or null, got {cfg.eval.topk}")
    check_sweep(cfg, where, max_axes=2)
    return cfg


def transfer_config_from_dict(data: dict[str, Any], where: str = "config") -> TransferConfig:
    from padhash.hashing import TrainConfig

    data = dict(data)
    surrogates = data.pop("surrogates", None) or [{"backbone": "smallcnn", "method": "dpsh"}]
    if not isinstance(surrogates, list):
        raise PadhashError(f"{where}.surrogates: expected a list of training recipes")
    cfg = build_config(TransferConfig, data, where)
    cfg.surrogates = [from_dict(TrainConfig, s or {}, f"{where}.surrogates[{i}]") for i, s in enumerate(surrogates)]
    _check_common(cfg, where)
    for i, s in enumerate(cfg.surrogates):
        check_recipe(s, f"{where}.surrogates[{i}]")
    if cfg.eval.region_noise not in REGION_NOISES:
        raise PadhashError(f"{where}.eval.region_noise: {cfg.eval.region_noise!r} is not one of "
                           f"{', '.join(REGION_NOISES)}")
    cfg.attack.validate(f"{where}.attack")
    registry.check_methods("transfer", cfg.methods, where)
    for i, s in enumerate(cfg.surrogates):
        if (s.backbone, s.method) == (cfg.victim.backbone, cfg.victim.method):
            raise PadhashError(f"{where}.surrogates[{i}]: same backbone and method as the victim "
                               f"({s.backbone}, {s.method}); a black-box surrogate must differ in at least one")
    bad = [p for p in cfg.pair_selection if p not in PAIR_SELECTIONS]
    if bad or not cfg.pair_selection:
        raise PadhashError(f"{where}.pair_selection: {bad or '[]'} not in {', '.join(PAIR_SELECTIONS)}")
    if cfg.n_t < 1 or cfg.pairs < 1 or cfg.targets_per_pair < 1 or not cfg.seeds or not 0 <= cfg.diversity_prob <= 1:
        raise PadhashError(f"{where}: n_t, pairs, targets_per_pair ≥ 1, seeds non-empty, diversity_prob in [0, 1]")
    if len(cfg.pair_band) != 2 or not 0 <= cfg.pair_band[0] < cfg.pair_band[1] <= 1:
        raise PadhashError(f"{where}.pair_band: [low, high] fractions of the bits, 0 ≤ low < high ≤ 1")
    e = cfg.eval
    if e.success_topk < 1 or not 0 < e.threshold <= 1 or not e.region_levels or not 0 <= e.region_radius < 1:
        raise PadhashError(f"{where}.eval: success_topk ≥ 1, threshold in (0, 1], region_levels non-empty, "
                           "region_radius in [0, 1)")
    check_sweep(cfg, where, max_axes=2)
    return cfg


def _check_common(cfg, where: str) -> None:
    """The victim's recipe and the run's device, before anything trains."""
    check_recipe(cfg.victim, f"{where}.victim")
    check_device(cfg.device, f"{where}.device")
    check_range(f"{where}.batch_size", cfg.batch_size, 1)


# ------------------------------------------------------------------------------------------------- shared pieces
class _Models:
    """Trains (or reuses) hash models inside the run folder; a model is cached by everything it depends on."""

    def __init__(self, out: Path, device: str, progress: bool, victim_run: str | Path | None,
                 feature_cache: str | None = None):
        from padhash.models import FeatureCache

        self.out, self.device, self.progress = out, available_device(device, "device"), progress
        self.feature_cache = FeatureCache(feature_cache or out / "features", progress=progress)
        self.victim_run = Path(victim_run) if victim_run else None
        self._models: dict[str, Any] = {}
        self._data = DatasetCache()
        self._codes: dict[tuple[str, str], torch.Tensor] = {}

    def dataset(self, data_cfg):
        return self._data.dataset(data_cfg)

    def trained(self, role: str, data_cfg, train_cfg, excluded: list[int] = ()) -> tuple[str, Any]:
        """(cache key, model in eval mode) of a model trained with `train_cfg` on the training split of `data_cfg`
        (minus `excluded` classes) in RUN/<role>s/<name>; the trainer's checkpoint there resumes a half-trained one."""
        from padhash.hashing import train_hash_model

        if train_cfg.hflip is None and data_cfg.name == "digits":
            train_cfg = dataclasses.replace(train_cfg, hflip=False)  # digits are not mirror-invariant
        key = f"{train_cfg.method}-{train_cfg.backbone}-{train_cfg.bits}b-{digest(data_cfg, train_cfg, list(excluded))}"
        if key in self._models:
            return key, self._models[key]
        ds = self.dataset(data_cfg)
        train = ds.train
        if excluded:
            train = train.subset(torch.nonzero(train.labels[:, list(excluded)].sum(dim=1) == 0).flatten())
        train_cfg = dataclasses.replace(train_cfg, device=str(self.device))
        folder = self.out / f"{role}s" / key
        model = train_hash_model(train, ds.num_classes, train_cfg, checkpoint_dir=folder, progress=self.progress,
                                 feature_cache=self.feature_cache)  # a stale checkpoint there: PadhashError
        self._models[key] = _frozen(model, self.device)
        return key, self._models[key]

    def given_victim(self) -> tuple[str, Any, Any]:
        """The `--victim RUN` model and its data config."""
        from padhash.experiments.retrieval import load_victim

        key = f"given-{digest(str(self.victim_run.resolve()))}"
        if key not in self._models:
            model, rcfg = load_victim(self.victim_run)
            model.feature_cache = self.feature_cache
            self._models[key] = (_frozen(model, self.device), rcfg)
        model, rcfg = self._models[key]
        return key, model, rcfg

    def codes(self, key: str, model, split, split_name: str) -> torch.Tensor:
        from padhash.hashing import encode

        if (key, split_name) not in self._codes:
            self._codes[(key, split_name)] = encode(model, split, device=self.device).to(torch.int8).cpu()
        return self._codes[(key, split_name)]


def _open_run(experiment: str, cfg, out: Path, victim_run, progress: bool) -> tuple[ResultsFile, _Models]:
    """The run's results file (resuming finished trials) and model cache; a given victim cannot be swept."""
    if victim_run and any(a.startswith(("victim.", "data.")) for a in cfg.sweep):
        raise PadhashError("--victim: the victim is fixed, so a sweep over victim.* or data.* is not possible")
    results = ResultsFile(out, {"experiment": experiment, **to_dict(cfg),
                                "victim_run": str(victim_run) if victim_run else None})
    return results, _Models(out, cfg.device, progress, victim_run, cfg.feature_cache)


@dataclass
class AttackTrial:
    """Everything one trial depends on besides the model checkpoints in the run folder (picklable)."""
    cfg: Any                           # the run's config with the sweep point applied
    point: dict[str, Any]
    label: str                         # the sweep point's label ('' without a sweep)
    seed: int
    method: str
    out: str
    victim_run: str | Path | None
    selection: str | None = None       # transfer: the pair selection


def worker_models(out: str, device: str, victim_run, feature_cache: str | None = None) -> _Models:
    """One model cache per process for the run it works for, so a worker loads each model once."""
    return per_process((out, device, str(victim_run), feature_cache),
                       lambda: _Models(Path(out), device, False, victim_run, feature_cache))


def _trial_keys(methods: list[str], label: str, trial: str) -> dict[str, str]:
    """method → results key `<sweep point>|<trial>|<method>` (no sweep point without a sweep)."""
    return {m: trial_key(label, trial, m) for m in methods}


def _seeded_victim(cfg, seed: int, models: _Models, excluded: list[int] = ()) -> tuple[str, Any, Any]:
    """Seeds the trial, then (cache key, victim, its data config): the `--victim RUN` model when given, else the
    victim trained from cfg.victim on cfg.data without the `excluded` classes."""
    seed_everything(seed)
    if models.victim_run:
        vkey, victim, rcfg = models.given_victim()
        return vkey, victim, rcfg.data
    vkey, victim = models.trained("victim", cfg.data, seed_recipe(cfg, cfg.victim, seed), list(excluded))
    return vkey, victim, cfg.data


def seed_recipe(cfg, recipe, seed: int):
    """The training recipe of one of the run's models for trial seed `seed` (a copy: trainers may not alias it)."""
    return dataclasses.replace(recipe, seed=recipe.seed + seed) if cfg.retrain_per_seed else dataclasses.replace(recipe)


def _frozen(model, device):
    """Eval mode, on `device`, parameters without gradients: attacks differentiate the input only."""
    model = model.to(device).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def _sweep_fields(point: dict[str, Any]) -> dict[str, Any]:
    return {"sweep": {a: v for a, v in point.items()}} if point else {}
