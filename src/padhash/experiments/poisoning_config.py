"""The PADHASH experiment's configuration: threat model, attack, evaluation, sweeps; checked in one place.

The runner (padhash.experiments.poisoning) only reads a validated PoisoningConfig. DEMO_CONFIG is what
`padhash demo` runs.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from padhash import registry
from padhash.attacks.poisoning import CraftConfig
from padhash.config import OMIT_AT_DEFAULT, from_dict
from padhash.errors import PadhashError
from padhash.experiments.skeleton import (  # noqa: F401  (digest re-exported)
    build_config, data_config, digest, load_config_file, train_config, with_value,
)
from padhash.validate import check_device, check_range, check_recipe

METHODS = registry.names("poisoning")   # from the registry (padhash.experiments.methods)
CRAFTED = tuple(m.name for m in registry.methods("poisoning") if m.role == "attack")  # poisons by gradient matching
BASES_FROM = ("train", "stolen")
BASE_SELECTIONS = ("random", "gradient_norm")
POISONS_IN_DATABASE = ("auto", True, False)
# Pairwise losses: over the trigger alone their only pair is (trigger, trigger), so G_v = ∇θ L(f(x_v), y_t) does not
# depend on y_t at all (measured: identical G_v for targets 3 and 7); crafting against them is refused.
PAIRWISE = ("hashnet", "dch", "dpsh")
PUBLIC_INIT = "public:"  # an init naming this run's public model: RUN/models/<name>/weights.safetensors


@dataclass
class SurrogateConfig:
    # None = the victim's backbone and weights (gray-box: the attacker knows the architecture and its public
    # weights); a list = those backbones (more than one = ensemble, black-box), with `weights` one per backbone
    backbones: list[str] | None = None
    method: str | None = None          # None = the victim's hash method (gray-box)
    bits: int | None = None            # None = the victim's code length
    stolen_fraction: float = 0.1       # stratified share of the victim's training split the attacker holds
    data: Any = None                   # a DataConfig: train the surrogate on another data set instead (Table X)
    epochs: int | None = None          # None = the victim's recipe
    lr: float | None = None
    weights: list[str] = field(default_factory=list)  # `imagenet` or local files, one per listed backbone (or none)
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
    # "stolen" (Alg. 1 line 4): target-class images of the attacker's stolen share; "train": of the victim's whole
    # training split (an attacker holding more than it stole)
    bases_from: str = "stolen"
    base_selection: str = "random"     # "random" (Witches' Brew) | "gradient_norm" (largest surrogate gradient)


@dataclass
class EvalConfig:
    topk: int = 40                     # ASR@K (PADHASH: 40)
    threshold: float = 0.3             # a trigger succeeds when MORE than this share of its top-K carries y_t
    noise_std: float = 8 / 255         # Gaussian noise on the triggers (Table VIII)
    jpeg_quality: int = 85             # JPEG on the triggers (Table VIII)
    map_topk: int | None = None        # MAP / MAP* over the query split; None = mAP@all
    # when an item "carries" a multi-hot y_t (padhash.metrics.ASR_MATCHES): all = every label of y_t (the reading
    # of PADHASH Table VII, docs/results.md), any = >= 1 of them, exact = label vector y_t (Alg. 1's D_t). The same
    # rule picks the poisons' bases. One-hot targets on single-label data: all three agree.
    match: str = field(default="all", metadata=OMIT_AT_DEFAULT)


@dataclass
class PoisoningConfig:
    data: Any = field(default_factory=data_config)          # padhash.data.DataConfig
    victim: Any = field(default_factory=train_config)       # padhash.hashing.TrainConfig (victim's recipe)
    victim_init: str | None = None     # a HashModel .safetensors the victim fine-tunes from (None = from scratch)
    surrogate: SurrogateConfig = field(default_factory=SurrogateConfig)
    attack: AttackConfig = field(default_factory=AttackConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    methods: list[str] = field(default_factory=lambda: registry.ladder("poisoning", "padhash"))
    pairs: int = 5                     # (trigger, target) pairs per seed
    seeds: list[int] = field(default_factory=lambda: [0])
    sweep: dict[str, list] = field(default_factory=dict)     # one axis, e.g. {"attack.alpha": [0.0, 0.1, 0.2]}
    device: str = "cpu"
    poisons_in_database: bool | str = "auto"  # the poisoned victim searches the poisoned images too; auto = true
                                              # iff the training split is the database (PADHASH Section IV)
    # victim and surrogate fine-tune a public model trained on a disjoint part of the training split (PublicConfig)
    public: PublicConfig | None = field(default=None, metadata=OMIT_AT_DEFAULT)
    # folder of frozen-backbone features shared by victims and surrogates of one backbone (content-addressed, safe
    # to share between runs and processes); None = RUN/features
    feature_cache: str | None = field(default=None, metadata=OMIT_AT_DEFAULT)


def config_from_dict(data: dict[str, Any], where: str = "config") -> PoisoningConfig:
    """Build and check a PoisoningConfig (nested data / victim / surrogate.data use the foundation's dataclasses)."""
    from padhash.data import DataConfig

    data = dict(data)
    surrogate = dict(data.pop("surrogate", None) or {})
    sur_data = surrogate.pop("data", None)
    cfg = build_config(PoisoningConfig, {**data, "surrogate": surrogate}, where)
    if sur_data is not None:
        cfg.surrogate.data = from_dict(DataConfig, sur_data, f"{where}.surrogate.data")
    _validate(cfg, where)
    return cfg


def load_poisoning_config(path: str | Path, overrides: dict[str, Any] | None = None) -> PoisoningConfig:
    return load_config_file(path, config_from_dict, overrides)


def _validate(cfg: PoisoningConfig, where: str) -> None:
    registry.check_methods("poisoning", cfg.methods, where)
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
    if cfg.surrogate.backbones is not None and not cfg.surrogate.backbones:
        raise PadhashError(f"{where}.surrogate.backbones: give at least one backbone (or none: the victim's)")
    if cfg.surrogate.weights and len(cfg.surrogate.weights) != len(cfg.surrogate.backbones or []):
        raise PadhashError(f"{where}.surrogate.weights: give one file per backbone ({len(cfg.surrogate.backbones)})")
    from padhash.metrics import ASR_MATCHES

    if cfg.eval.match not in ASR_MATCHES:
        raise PadhashError(f"{where}.eval.match: {cfg.eval.match!r} is not one of {', '.join(ASR_MATCHES)}")
    if not 0 < cfg.eval.threshold <= 1 or cfg.eval.topk < 1:
        raise PadhashError(f"{where}.eval: topk must be ≥ 1 and threshold in (0, 1]")
    if cfg.poisons_in_database not in POISONS_IN_DATABASE:
        raise PadhashError(f"{where}.poisons_in_database: {cfg.poisons_in_database!r} is not one of auto, true, false")
    _validate_levers(cfg, where)
    if len(cfg.sweep) > 1:
        raise PadhashError(f"{where}.sweep: one axis at a time, got {', '.join(cfg.sweep)}")
    _check_surrogate_loss(cfg, where)
    _check_augmentation(cfg, where)
    for path, values in cfg.sweep.items():
        if not values:
            raise PadhashError(f"{where}.sweep.{path}: give at least one value")
        for value in values:  # every point checked before any training starts
            point = with_value(cfg, path, value, where)
            point.sweep = {}
            _validate(point, f"{where} (sweep {path}={value!r})")


def _check_augmentation(cfg: PoisoningConfig, where: str) -> None:
    """Crafting augments as the victim trains: frozen victims, and partial ones on a backbone run by stages (the
    EfficientNet-Lite family), train from cached features of flipped views only (no shifts); the others shift
    whole pixels, as crafting does (attack.shift)."""
    a, v = cfg.attack, cfg.victim
    cached = v.finetune == "frozen" or (v.finetune == "partial" and v.backbone.startswith("efficientnet"))
    if not cached or not a.augment:
        return
    victim_flips = v.augment and v.hflip is not False
    if a.shift > 0 or a.flip != victim_flips:
        raise PadhashError(f"{where}.attack: the {v.finetune} victim trains with "
                           f"{'flips only' if victim_flips else 'no augmentation'}"
                           f"; craft the same way (attack.shift: 0, attack.flip: {str(victim_flips).lower()})")


def surrogate_members(cfg: PoisoningConfig) -> list[tuple[str, str | None]]:
    """(backbone, weights) of each surrogate: the victim's by default (gray-box), else the listed ones."""
    s = cfg.surrogate
    if s.backbones is None:
        return [(cfg.victim.backbone, cfg.victim.weights)]
    return [(b, s.weights[i] if s.weights else None) for i, b in enumerate(s.backbones)]


def _check_surrogate_loss(cfg: PoisoningConfig, where: str) -> None:
    method = cfg.surrogate.method or cfg.victim.method
    if method in PAIRWISE and any(m in CRAFTED for m in cfg.methods):
        raise PadhashError(f"{where}: the surrogate's loss {method!r} is pairwise, so the trigger's target gradient "
                           "ignores the target label; craft with a csq or dpn surrogate (surrogate.method)")


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
    if any(b != v.backbone for b in s.backbones or []) or (s.bits or v.bits) != v.bits or s.weights:
        raise PadhashError(f"{where}.public: the surrogate fine-tunes the public model, so it needs the victim's "
                           "backbone and bits and no surrogate.weights")


# `padhash demo`: the ladder on the embedded digits in the pretrained frozen regime (public ImageNet
# EfficientNet-Lite0 shared by victim and surrogate, 64-px model input, CSQ 32 bits; the attacker holds 10 % of
# the training split and draws its 16 poisons (≈1 %) from it; ε 16/255, α 0.2, 100 signed-Adam steps, no flips:
# digits are not mirror-invariant and the frozen victim trains without shifts). Sized for ≤ 10 min on 2 cores.
DEMO_CONFIG: dict[str, Any] = {
    "data": {"name": "digits"},
    "victim": {"method": "csq", "bits": 32, "backbone": "efficientnet_lite0", "weights": "imagenet",
               "finetune": "frozen", "resolution": 64, "epochs": 30, "hflip": False},
    "surrogate": {"stolen_fraction": 0.1},
    "attack": {"alpha": 0.2, "eps": 16 / 255, "steps": 100, "poison_count": 16, "flip": False, "shift": 0},
    "pairs": 3,
    "seeds": [0],
}
