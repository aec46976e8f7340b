"""DP-noise training (Du, Jia & Song 2020), the defense of CIBA Fig. 5(a): clip each (micro-batch) gradient to
L2 norm ≤ `clip`, average, add Gaussian noise of standard deviation `noise` to every coordinate, step.

`train_hash_model` has no per-sample gradient hook, so the loop lives here, reusing the project's model builder,
hashing loss and the trainer's recipe (TrainConfig: method, bits, backbone, epochs, batch size, lr, seed). The
privacy unit is a micro-batch of `microbatch` images (as TF-Privacy's `num_microbatches`): 1 gives DP-SGD's
per-sample clipping; pairwise losses that only see in-batch pairs need ≥ 2. Noise is given directly as the std
added to the averaged clipped gradient (CIBA varies this "noise scale" at clipping bound 0.3).
"""
from __future__ import annotations

from dataclasses import dataclass
import torch
from torch import nn
from tqdm.auto import tqdm

from padhash.errors import PadhashError


@dataclass
class DPConfig:
    clip: float = 0.3          # L2 bound of each micro-batch gradient (CIBA: 0.3)
    noise: float = 0.0         # std of the Gaussian added to the averaged clipped gradient
    microbatch: int = 4        # images per clipped gradient (1 = per-sample DP-SGD)

    def validate(self, where: str = "dp") -> None:
        if self.clip <= 0 or self.noise < 0 or self.microbatch < 1:
            raise PadhashError(f"{where}: clip must be > 0, noise ≥ 0 and microbatch ≥ 1")


def dp_step(model: nn.Module, loss_fn, x: torch.Tensor, y: torch.Tensor, index: torch.Tensor | None,
            optimizer: torch.optim.Optimizer, dp: DPConfig, generator: torch.Generator, forward=None) -> float:
    """One step: clipped per-micro-batch gradients, averaged, plus N(0, noise²); returns the mean loss.
    `forward(x)` gives the codes u (default `model`; a frozen backbone's head on cached features)."""
    forward = forward or model
    params = [p for p in model.parameters() if p.requires_grad]
    total = [torch.zeros_like(p) for p in params]
    losses = []
    chunks = torch.arange(len(x)).split(dp.microbatch)
    for chunk in chunks:
        loss = loss_fn(forward(x[chunk]), y[chunk], None if index is None else index[chunk])
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        grads = [torch.zeros_like(p) if g is None else g for g, p in zip(grads, params)]
        norm = torch.sqrt(sum(g.pow(2).sum() for g in grads))
        scale = (dp.clip / (norm + 1e-12)).clamp(max=1.0)
        for t, g in zip(total, grads):
            t.add_(g * scale)
        losses.append(float(loss.detach()))
    for p, t in zip(params, total):
        noise = torch.randn(t.shape, generator=generator).to(t) * dp.noise if dp.noise > 0 else 0.0
        p.grad = t / len(chunks) + noise
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return sum(losses) / len(losses)


def dp_train_hash_model(train, num_classes: int, cfg, dp: DPConfig, *, progress: bool = True,
                        feature_cache=None) -> nn.Module:
    """Train a fresh HashModel of recipe `cfg` (a TrainConfig) on `train` with DP noise (seeded; a killed run
    retrains this model from the start, so its numbers do not depend on where it was interrupted). A frozen
    backbone trains as the trainer does: the hash layer on cached features (`feature_cache`, else a throwaway
    one), one view per image and epoch drawn from id / flip (flip only when augmenting with flips), no shifts."""
    from padhash.hashing import make_loss, resolve_recipe
    from padhash.hashing.trainer import (_cached_views, _from_cache, _head, augment_batch, check_config,
                                         make_optimizer, model_from_config)
    from padhash.rng import derive_seed

    dp.validate()
    check_config(cfg)
    recipe = resolve_recipe(cfg)
    with torch.random.fork_rng():
        torch.manual_seed(derive_seed(cfg.seed, "init"))  # the same initial weights as the undefended victim
        model = model_from_config(cfg, train.image_size)
    model = model.to(cfg.device)
    if feature_cache is not None:
        model.feature_cache = feature_cache
    loss_fn = make_loss(cfg.method, num_classes, cfg.bits, seed=cfg.seed, num_train=len(train),
                        **cfg.hparams).to(cfg.device)
    optimizer = make_optimizer(model.parameters(), recipe)
    data_gen = torch.Generator().manual_seed(derive_seed(cfg.seed, "data"))
    noise_gen = torch.Generator().manual_seed(derive_seed(cfg.seed, "dp-noise"))
    hflip = True if cfg.hflip is None else cfg.hflip
    images, labels = train.images(), train.labels
    cached, forward = None, None
    if _from_cache(model):  # the frozen part never changes: its outputs once, the head trains on them
        cached = _cached_views(model, train, ("id", "flip") if cfg.augment and hflip else ("id",))
        forward = lambda z: _head(model, z)  # noqa: E731
    for epoch in tqdm(range(cfg.epochs), desc=f"dp-train σ={dp.noise}", disable=not progress, leave=False):
        for group in optimizer.param_groups:
            group["lr"] = recipe.lr_at(epoch, cfg.epochs)
        model.train()
        loss_fn.start_epoch(epoch)
        order = torch.randperm(len(images), generator=data_gen)
        for batch in order.split(cfg.batch_size):
            if len(batch) < 2:  # BatchNorm needs two (as the trainer)
                continue
            if cached is not None:
                x = cached[batch, torch.randint(0, cached.shape[1], (len(batch),), generator=data_gen)]
            else:
                x = images[batch]
                if cfg.augment:
                    x = augment_batch(x, data_gen, hflip)
            dp_step(model, loss_fn, x.to(cfg.device), labels[batch].to(cfg.device), batch.to(cfg.device),
                    optimizer, dp, noise_gen, forward)
    return model.eval()
