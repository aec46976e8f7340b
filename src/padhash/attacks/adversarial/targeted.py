"""DHTA (point-to-set), P2P (n_t = 1), HAG (untargeted) and the uniform-noise floor, batched over queries.

DHTA (Bai et al., Eq. 9) minimises  -(1/K) h_aᵀ tanh(α f(x'))  subject to ‖x' − x‖∞ ≤ ε, x' ∈ [0, 1]. The official
code (jiawangbai/DHTA-master) starts from δ = 0, steps δ ← δ − lr·g/‖g‖₂ with lr = 1 for 2000 iterations, one
query at a time, and raises α from 0.1 to 1 (`tanh_scale_schedule`; α is `tanh_scale` here, since `alpha` is
PADHASH's matching weight). Differences, on purpose:
- ε lives in [0, 1] pixel space (DESIGN.md); the official ε = 0.032 is in ImageNet-normalised space ≈ 1.8/255.
- Queries are attacked in batches, so the gradient is normalised per image (the official global norm over a batch
  of one is the same thing).
- The step is given as a per-pixel RMS, a fraction of ε (`step_fraction`): the official unit-L2 step on a
  3×224×224 normalised image is 1/√150528 ≈ 0.00258 per pixel, i.e. 0.08 of its ε = 0.032, and the same fraction
  keeps the schedule meaningful at any resolution and ε.
HAG (Yang et al.) pushes the code away from the query's own clean code: it is the same objective with the target
code −sign(f(x)), which is exactly minimising +(1/K) h_xᵀ tanh(α f(x')).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn
from tqdm.auto import tqdm

from padhash.attacks.anchor import anchor_loss
from padhash.errors import PadhashError

# tanh α for the first half of the iterations, then one value per equal block of the second half (DHTA §4.2).
SCALE_FIRST_HALF = 0.1
SCALE_BLOCKS = (0.2, 0.3, 0.5, 0.7, 1.0)
OPTIMIZERS = ("normalized", "sign", "sgd")


@dataclass
class TargetedAttackConfig:
    eps: float = 8 / 255           # L∞ budget in [0,1] pixel space (DHTA official ≈ 1.8/255, see module doc)
    steps: int = 2000             # DHTA: 2000 (image hashing)
    step_fraction: float = 0.08        # per-pixel RMS step as a fraction of ε (official: 0.00258 / 0.032)
    optimizer: str = "normalized"      # "normalized" (official: g/‖g‖₂), "sign" (PGD), "sgd" (raw gradient, lr 1)
    tanh_scale: float | None = None    # a fixed tanh α instead of the schedule (DHTA video setting: 0.1)
    RENAMED: ClassVar[dict[str, str]] = {"alpha": "tanh_scale"}  # `alpha` is PADHASH's matching weight

    def validate(self, where: str = "attack") -> None:
        if not 0 < self.eps <= 1:
            raise PadhashError(f"{where}.eps: must be in (0, 1] (pixel space), got {self.eps}")
        if self.steps < 1:
            raise PadhashError(f"{where}.steps: must be ≥ 1, got {self.steps}")
        if self.step_fraction <= 0:
            raise PadhashError(f"{where}.step_fraction: must be > 0, got {self.step_fraction}")
        if self.optimizer not in OPTIMIZERS:
            raise PadhashError(f"{where}.optimizer: {self.optimizer!r} is not one of {', '.join(OPTIMIZERS)}")
        if self.tanh_scale is not None and not 0 < self.tanh_scale <= 1:
            raise PadhashError(f"{where}.tanh_scale: must be in (0, 1], got {self.tanh_scale}")


def tanh_scale_schedule(iteration: int, iterations: int) -> float:
    """DHTA's tanh scale at `iteration` (0-based) of `iterations`: 0.1 for the first half, then 0.2, 0.3, 0.5,
    0.7, 1.0 in equal blocks of the second half (2000 iterations: switches at 1000, 1200, 1400, 1600, 1800)."""
    half = iterations // 2
    if iteration < half:
        return SCALE_FIRST_HALF
    block = (iteration - half) * len(SCALE_BLOCKS) // max(iterations - half, 1)
    return SCALE_BLOCKS[min(block, len(SCALE_BLOCKS) - 1)]


def project(adv: torch.Tensor, clean: torch.Tensor, eps: float) -> torch.Tensor:
    """Clip adv into the L∞ ball of radius ε around clean and into the valid image range [0, 1]."""
    return torch.min(torch.max(adv, clean - eps), clean + eps).clamp(0, 1)


def targeted_attack(
    model: nn.Module,
    images: torch.Tensor,
    target_codes: torch.Tensor,
    cfg: TargetedAttackConfig,
    *,
    batch_size: int = 128,
    progress: bool = False,
) -> torch.Tensor:
    """DHTA / P2P: adversarial versions of `images` (N,3,H,W in [0,1]) whose codes approach `target_codes` (N,K) ±1.

    The model is put in eval mode; its parameters are left untouched (only δ is differentiated)."""
    cfg.validate()
    if target_codes.shape[0] != images.shape[0]:
        raise PadhashError(f"targeted_attack: {images.shape[0]} images but {target_codes.shape[0]} target codes")
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    out = []
    try:
        for start in range(0, len(images), batch_size):
            x = images[start:start + batch_size].to(device)
            t = target_codes[start:start + batch_size].to(device, torch.float32)
            out.append(_attack_batch(model, x, t, cfg, progress).cpu())
    finally:
        model.train(was_training)
    return torch.cat(out)


def _attack_batch(model, clean, target, cfg: TargetedAttackConfig, progress: bool) -> torch.Tensor:
    n_pixels = clean[0].numel()
    step = cfg.step_fraction * cfg.eps
    adv = clean.clone()
    for i in tqdm(range(cfg.steps), desc="attack", leave=False, disable=not progress):
        scale = cfg.tanh_scale if cfg.tanh_scale is not None else tanh_scale_schedule(i, cfg.steps)
        adv.requires_grad_(True)
        loss = anchor_loss(model(adv), target, scale).sum()
        (grad,) = torch.autograd.grad(loss, adv)
        with torch.no_grad():
            if cfg.optimizer == "normalized":
                # one norm per query: an image, or a whole clip (every frame shares the clip's step and ε)
                norm = grad.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *[1] * (grad.dim() - 1))
                update = step * n_pixels ** 0.5 * grad / norm
            elif cfg.optimizer == "sign":
                update = step * grad.sign()
            else:
                update = grad  # ProS-GAN's dhta.py: raw gradient, lr 1
            adv = project(adv - update, clean, cfg.eps)
    return adv.detach()


def hag_attack(model: nn.Module, images: torch.Tensor, cfg: TargetedAttackConfig, **kwargs) -> torch.Tensor:
    """HAG (untargeted): push each query's code away from its own clean code, same budget and schedule as DHTA."""
    model.eval()
    device = next(model.parameters()).device
    with torch.no_grad():
        clean_codes = torch.cat([_sign(model(images[s:s + 256].to(device))).cpu() for s in range(0, len(images), 256)])
    return targeted_attack(model, images, -clean_codes, cfg, **kwargs)


def uniform_noise(images: torch.Tensor, eps: float, generator: torch.Generator) -> torch.Tensor:
    """The noise floor: x + U(−ε, ε) per pixel, clamped to [0, 1] (DHTA's 'Noise' row)."""
    noise = (torch.rand(images.shape, generator=generator) * 2 - 1) * eps
    return (images + noise.to(images)).clamp(0, 1)


def _sign(u: torch.Tensor) -> torch.Tensor:
    return torch.where(u >= 0, 1.0, -1.0)
