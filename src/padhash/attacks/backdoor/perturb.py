"""Perturbations added to the target-class poisons before the trigger (CIBA Eq. 2, 7–8, Algorithm 2).

- `noise`   (Tri+Noise): uniform U(−ε, ε) per pixel.
- `adv`     (Tri+Adv):   untargeted PGD maximising d_H(F'(x+η), F(x)) (Eq. 2) = confusing with λ = 0.
- `confusing` (CIBA):    PGD maximising λ·L_c + (1−λ)·mean L_a (Eq. 8), L_c the mean pairwise Hamming distance of
                          the batch's perturbed poisons (Eq. 7): it disperses the target class in Hamming space.

Hamming distances use tanh codes, d_H(a, b) = (K − a·b)/2. ε is an ℓ∞ bound in [0, 1] PIXEL space (DESIGN.md);
CIBA's code clamps its 0.032 in normalised (mean/std) space, which is ≈ 1.8/255 of the pixel range. η starts at 0,
batches are consecutive and fixed (as in CIBA's `enhance_backdoor_trigger`), and x + η stays in [0, 1].
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn
from tqdm.auto import tqdm

from padhash.attacks.backdoor.trigger import _as_list
from padhash.errors import PadhashError
from padhash.retrieval.codes import hamming_distance, paired_hamming

PERTURBATIONS = ("none", "noise", "adv", "confusing")


@dataclass
class PerturbConfig:
    eps: float = 8 / 255           # ℓ∞ bound in pixel space (CIBA: 0.032 in normalised space)
    steps: int = 20                # PGD epochs over the poisons (CIBA: 20)
    step_size: float = 1 / 255     # sign-step size (CIBA: 0.003 in normalised space)
    batch_size: int = 20           # poisons per L_c batch (CIBA: 20)
    lam: float = 0.8               # λ of Eq. 8 for CIBA (paper: 0.8; Fig. 7 best 0.8–1.0)

    def validate(self, where: str = "perturb") -> None:
        if not 0.0 <= self.eps <= 1.0:
            raise PadhashError(f"{where}.eps: must be in [0, 1] (pixel space), got {self.eps}")
        if self.steps < 0 or self.step_size <= 0 or self.batch_size < 1:
            raise PadhashError(f"{where}: steps ≥ 0, step_size > 0 and batch_size ≥ 1 required")
        if not 0.0 <= self.lam <= 1.0:
            raise PadhashError(f"{where}.lam: must be in [0, 1], got {self.lam}")


def confusing_loss(u: torch.Tensor) -> torch.Tensor:
    """L_c (Eq. 7): mean over ordered pairs i ≠ j of d_H(tanh(u_i), tanh(u_j)); 0 for a single image."""
    n = u.shape[0]
    if n < 2:
        return u.sum() * 0.0
    t = torch.tanh(u)
    d = hamming_distance(t, t)
    return (d.sum() - d.diagonal().sum()) / (n * (n - 1))


def adversarial_loss(u: torch.Tensor, clean_codes: torch.Tensor) -> torch.Tensor:
    """L_a (Eq. 2) per image: d_H(tanh(u_i), h_i) with h_i = sign of the clean image's output, shape (N,)."""
    return paired_hamming(torch.tanh(u), clean_codes)


def _sign_codes(u: torch.Tensor) -> torch.Tensor:
    return torch.where(u >= 0, 1.0, -1.0)  # sign(0) = +1 (DESIGN.md)


def perturb(
    kind: str,
    models: nn.Module | Sequence[nn.Module],
    images: torch.Tensor,
    cfg: PerturbConfig,
    *,
    generator: torch.Generator,
    lam: float | None = None,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> torch.Tensor:
    """Return `images` + η for `kind` in PERTURBATIONS, with ‖η‖∞ ≤ ε and values in [0, 1].

    `lam` overrides cfg.lam (kind "adv" forces λ = 0). Several models (transfer) average the objective.
    """
    if kind not in PERTURBATIONS:
        raise PadhashError(f"unknown perturbation {kind!r}; one of {', '.join(PERTURBATIONS)}")
    if kind == "none" or cfg.eps == 0:
        return images.clone()
    if kind == "noise":
        noise = (torch.rand(images.shape, generator=generator) * 2 - 1) * cfg.eps
        return (images + noise.to(images)).clamp(0.0, 1.0)
    lam = 0.0 if kind == "adv" else (cfg.lam if lam is None else lam)
    models = _as_list(models)
    states = [m.training for m in models]
    for m in models:
        m.eval()
    out = []
    try:
        batches = torch.arange(len(images)).split(cfg.batch_size)
        for idx in tqdm(batches, desc=f"perturb:{kind}", disable=not progress, leave=False):
            out.append(_pgd_batch(models, images[idx].to(device), cfg, lam).cpu())
    finally:
        for m, state in zip(models, states):
            m.train(state)
    return torch.cat(out) if out else images.clone()


def _pgd_batch(models: list[nn.Module], x: torch.Tensor, cfg: PerturbConfig, lam: float) -> torch.Tensor:
    with torch.no_grad():
        clean = [_sign_codes(m(x)) for m in models]
    eta = torch.zeros_like(x)
    for _ in range(cfg.steps):
        with torch.enable_grad():
            eta.requires_grad_(True)
            objective = 0.0
            for m, codes in zip(models, clean):
                u = m(x + eta)
                objective = objective + lam * confusing_loss(u) + (1 - lam) * adversarial_loss(u, codes).mean()
            (grad,) = torch.autograd.grad(objective / len(models), eta)
        with torch.no_grad():  # ascent, then project onto the ε-ball and the valid image range
            eta = (eta + cfg.step_size * grad.sign()).clamp(-cfg.eps, cfg.eps)
            eta = (x + eta).clamp(0.0, 1.0) - x
    return (x + eta).detach()
