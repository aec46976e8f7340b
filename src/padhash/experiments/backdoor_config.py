"""The CIBA experiment's configs: data, victim, trigger, perturbations, evaluation, sweeps; validated on load."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from padhash.attacks.backdoor import PerturbConfig, PLACEMENTS, TriggerConfig
from padhash import registry
from padhash.config import OMIT_AT_DEFAULT
from padhash.errors import PadhashError
from padhash.experiments import skeleton
from padhash.experiments.skeleton import build_config, check_sweep, data_config, train_config
from padhash.validate import check_device, check_recipe

METHODS = registry.names("backdoor")   # from the registry (padhash.experiments.methods)
TRANSFER_SETTINGS = ("ensemble", "holdout")


@dataclass
class BackdoorEvalConfig:
    topk: int | None = 100         # t-MAP@K and MAP@K (CIBA: K = 1,000 of a ≈10k database); None = all
    drop_empty: bool = False       # True = DHTA/CIBA convention (queries with no relevant item in the top K dropped)
    asr_topk: int = 40             # PADHASH ASR@K
    asr_threshold: float = 0.3
    max_queries: int | None = 500  # triggered queries per target (a seeded subset); None = all non-target queries


@dataclass
class TransferConfig:
    backbones: list[str] = field(default_factory=list)   # CIBA Table 4 columns; empty = no transfer study
    settings: list[str] = field(default_factory=lambda: list(TRANSFER_SETTINGS))


@dataclass
class BackdoorConfig:
    data: Any = field(default_factory=data_config)       # padhash.data.DataConfig
    victim: Any = field(default_factory=train_config)    # padhash.hashing.TrainConfig (the victim's recipe)
    methods: list[str] = field(default_factory=lambda: registry.ladder("backdoor", "ciba"))
    targets: list[int] = field(default_factory=list)      # target classes; empty = `num_targets` drawn with seed
    num_targets: int = 3                                   # CIBA: five target labels, averaged
    poison_count: int = 30                                 # CIBA: 60 of ≈10,000 training images
    blend: float = 1.0                                     # β for the poisons (Appendix C); queries always use 1
    trigger: TriggerConfig = field(default_factory=TriggerConfig)
    perturb: PerturbConfig = field(default_factory=PerturbConfig)
    eval: BackdoorEvalConfig = field(default_factory=BackdoorEvalConfig)
    transfer: TransferConfig = field(default_factory=TransferConfig)
    sweep: dict[str, list] = field(default_factory=dict)  # one or two axes, e.g. {"perturb.lam": [0, 0.5, 1]}
    seed: int = 0
    device: str = "cpu"
    trigger_placement: str = "after_augment"  # padhash.attacks.backdoor.placement (CIBA's code: after)
    feature_cache: str | None = field(default=None, metadata=OMIT_AT_DEFAULT)  # frozen features; None = RUN/features


def config_from_dict(data: dict[str, Any], where: str = "config") -> BackdoorConfig:
    """Build and check a BackdoorConfig; `data` and `victim` use the foundation's DataConfig / TrainConfig."""
    cfg = build_config(BackdoorConfig, data, where)
    _validate(cfg, where)
    return cfg


def load_backdoor_config(path: str | Path, overrides: dict[str, Any] | None = None) -> BackdoorConfig:
    return skeleton.load_config_file(path, config_from_dict, overrides)


def _validate(cfg: BackdoorConfig, where: str) -> None:
    registry.check_methods("backdoor", cfg.methods, where)
    if cfg.poison_count < 1 or cfg.num_targets < 1:
        raise PadhashError(f"{where}: poison_count and num_targets must be ≥ 1")
    if cfg.trigger_placement not in PLACEMENTS:
        raise PadhashError(f"{where}.trigger_placement: {cfg.trigger_placement!r} not in {', '.join(PLACEMENTS)}")
    if not 0.0 < cfg.blend <= 1.0:
        raise PadhashError(f"{where}.blend: must be in (0, 1], got {cfg.blend}")
    check_recipe(cfg.victim, f"{where}.victim")
    check_device(cfg.device, f"{where}.device")
    cfg.trigger.validate(where=f"{where}.trigger")
    cfg.perturb.validate(where=f"{where}.perturb")
    e = cfg.eval
    if (e.topk is not None and e.topk < 1) or e.asr_topk < 1 or not 0 < e.asr_threshold <= 1:
        raise PadhashError(f"{where}.eval: topk and asr_topk must be ≥ 1, asr_threshold in (0, 1]")
    bad = [s for s in cfg.transfer.settings if s not in TRANSFER_SETTINGS]
    if bad:
        raise PadhashError(f"{where}.transfer.settings: {bad} not in {', '.join(TRANSFER_SETTINGS)}")
    if cfg.transfer.backbones and len(cfg.transfer.backbones) < 2 and "holdout" in cfg.transfer.settings:
        raise PadhashError(f"{where}.transfer.backbones: hold-out needs at least two backbones")
    check_sweep(cfg, where, max_axes=2, point=with_value)  # every point built and checked (with_value) before anything trains


def with_value(cfg: BackdoorConfig, axis: str, value: Any, where: str = "config") -> BackdoorConfig:
    """cfg at one sweep point (the dotted key `axis`, e.g. perturb.lam, victim.bits, poison_count, set to `value`):
    the skeleton's copy, without the sweep itself, validated as a whole."""
    out = skeleton.with_value(cfg, axis, value, where)
    out.sweep = {}
    _validate(out, f"{where}.sweep[{axis}={value}]")
    return out


_digest = skeleton.digest
