"""Crafting clean-label poisons by gradient matching (Witches' Brew and PADHASH's Strict Gradient-Matching).

Follows Witches' Brew's reference loop (REFERENCES.md §2): δ initialised as randn·ε and clipped, signed Adam
(Adam on sign(∇δ)), one step per pass over the poisons, step decay at 3/8, 5/8, 7/8 of the steps, projection on the
ε ℓ∞ ball in pixel space (and optionally an ℓ2 ball, PADHASH Algorithm 1 line 10) and on [0, 1], differentiable
flip + shift augmentation of the poisons, BatchNorm in eval mode, restarts keeping the lowest final loss, ensembles
averaging the matching loss over members. The shifts are whole-pixel and zero-padded, as the victim trains
(Witches' Brew shifts by bilinear resampling; matching the victim's own augmentation is what the poisons must survive). G_v is computed once, on the unaugmented trigger(s).

`project_out: target_mean` (a study option, not in either paper) removes from G_v and G_p their component along
the mean gradient of the clean bases, which are target-class images with their true labels. Why: under CSQ-like
losses the gradient of ANY target-class image pulls towards the target's hash centre, as the trigger's
target gradient does, so the cosine can be high while the poisons carry nothing of the trigger; matching what is
left after removing that shared direction asks the poisons for the trigger-specific part. Diagnostics
(grad_cosine, grad_norm_ratio) stay on the raw gradients, comparable across settings.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import ClassVar, Sequence

import torch
from torch import nn
from tqdm.auto import tqdm


from padhash.attacks.poisoning.matching import (
    PROJECTIONS,
    HashLossFn,
    gradient_cosine,
    gradient_norm,
    matched_parameters,
    parameter_gradient,
    project_out,
    strict_matching_loss,
)
from padhash.config import OMIT_AT_DEFAULT
from padhash.errors import PadhashError
from padhash.hashing.trainer import shift_images

BN_MODES = ("eval", "train")


@dataclass
class CraftConfig:
    alpha: float = 0.2             # PADHASH α (CIFAR-10 CSQ: 0.2, DPN: 0.05); 0 = Witches' Brew
    eps: float = 16 / 255          # ℓ∞ bound in pixel space (8/255 for larger images)
    eps_l2: float | None = None    # optional per-image ℓ2 bound in pixel space (Algorithm 1 line 10)
    steps: int = 250               # signed-Adam steps (passes over the poisons)
    step_size: float = 0.025       # Adam step in pixel units: Witches' Brew's τ=0.1 in CIFAR-normalised units ≈ 0.1·std
    schedule: bool = True          # ×0.1 at steps/2.667, /1.6, /1.142 (Witches' Brew)
    restarts: int = 1              # Witches' Brew's default is 8; the lowest final loss wins
    augment: bool = True           # differentiable random flip + shift while crafting
    flip: bool = True              # include horizontal flips (off for data that are not mirror-invariant: digits)
    shift: int = 4                 # max whole-pixel shift (the victim's: 1/8 of the side, 4 px at 32 px)
    batch_size: int | None = None  # poisons per matching batch; None = all at once (G_p over the whole poison set)
    bn_mode: str = "eval"          # BatchNorm during crafting: running stats ("eval", Witches' Brew) or batch stats
    params: str = "all"            # which parameters' gradients are matched: "all" | "hash_layer"
    magnitude: str = "paper"       # PADHASH magnitude term: "paper" (Eq. 5) | "relative" (‖G_p−G_v‖/‖G_v‖)
    # "none" (the papers) | "target_mean": match G_v, G_p minus their component along the clean bases' mean
    # gradient (module docstring)
    project_out: str = field(default="none", metadata=OMIT_AT_DEFAULT)
    RENAMED: ClassVar[dict[str, str]] = {"lr": "step_size"}  # old key → new: a config with the old one is refused

    def validate(self) -> None:
        if self.eps <= 0 or self.eps > 1:
            raise PadhashError(f"attack.eps: must be in (0, 1], got {self.eps}")
        if self.eps_l2 is not None and self.eps_l2 <= 0:
            raise PadhashError(f"attack.eps_l2: must be positive, got {self.eps_l2}")
        if self.steps < 0 or self.restarts < 1:
            raise PadhashError(f"attack: steps must be ≥ 0 and restarts ≥ 1 (got {self.steps}, {self.restarts})")
        if self.bn_mode not in BN_MODES:
            raise PadhashError(f"attack.bn_mode: {self.bn_mode!r} is not one of {', '.join(BN_MODES)}")
        if self.shift < 0 or self.shift != int(self.shift):
            raise PadhashError(f"attack.shift: a whole number of pixels ≥ 0, got {self.shift}")
        if not 0.0 <= self.alpha <= 1.0:
            raise PadhashError(f"attack.alpha: must be in [0, 1], got {self.alpha}")
        if self.project_out not in PROJECTIONS:
            raise PadhashError(f"attack.project_out: {self.project_out!r} is not one of {', '.join(PROJECTIONS)}")


@dataclass
class CraftResult:
    poisons: torch.Tensor                 # (n, 3, H, W) in [0, 1]
    delta: torch.Tensor                   # poisons − bases
    loss: float                           # final matching loss of the kept restart
    restart_losses: list[float]
    loss_history: list[float]             # per step, kept restart
    grad_cosine_before: float             # cos(G_p, G_v) of the unperturbed bases (mean over ensemble members)
    grad_cosine_after: float
    grad_norm_ratio_before: float         # ‖G_p‖ / ‖G_v‖
    grad_norm_ratio_after: float
    extra: dict = field(default_factory=dict)


def augment_batch(images: torch.Tensor, shift: float, generator: torch.Generator, flip: bool = True) -> torch.Tensor:
    """Random horizontal flip (p=0.5, if `flip`) and a whole-pixel, zero-padded shift by up to `shift` pixels per
    image: the augmentation family the victim trains with (hashing.trainer.augment_batch), differentiable in images.
    The shift draws are taken even when `shift` is 0, so the generator's stream does not depend on it."""
    n = images.shape[0]
    flips = (torch.rand(n, generator=generator) < 0.5) & flip
    draws = torch.rand(n, 2, generator=generator)
    pad = int(shift)
    if pad > 0:
        offsets = (draws * (2 * pad + 1)).long().clamp(max=2 * pad)  # uniform on 0..2·pad
        images = shift_images(images, offsets, pad)
    return torch.where(flips.to(images.device)[:, None, None, None], images.flip(-1), images)


def project(delta: torch.Tensor, bases: torch.Tensor, eps: float, eps_l2: float | None) -> torch.Tensor:
    """Onto {‖δ‖₂ ≤ eps_l2} ∩ {‖δ‖∞ ≤ eps} ∩ {0 ≤ base + δ ≤ 1}; each later clip only shrinks |δ| componentwise,
    so all three bounds hold after it."""
    if eps_l2 is not None:
        norms = delta.flatten(1).norm(dim=1).clamp_min(1e-12)
        delta = delta * (eps_l2 / norms).clamp(max=1.0).view(-1, 1, 1, 1)
    delta = delta.clamp(-eps, eps)
    return torch.max(torch.min(delta, 1 - bases), -bases)


class _Member:
    """One surrogate of the ensemble: model (frozen), its loss, matched parameters, the target gradient G_v and,
    with project_out, the direction removed before matching (the clean bases' mean gradient)."""

    def __init__(self, model: nn.Module, loss_fn: HashLossFn, cfg: CraftConfig,
                 triggers: torch.Tensor, target_labels: torch.Tensor, bases: torch.Tensor, base_labels: torch.Tensor):
        if cfg.bn_mode == "train":
            model = copy.deepcopy(model)  # batch-stat mode updates running stats; keep the caller's model intact
        self.model = model.train(cfg.bn_mode == "train")
        self.loss_fn = loss_fn
        self.params = matched_parameters(model, cfg.params)
        self.target_grads = [g.detach() for g in parameter_gradient(model, loss_fn, triggers, target_labels, self.params)]
        self.target_norm = float(gradient_norm(self.target_grads))
        if self.target_norm == 0.0:
            raise PadhashError("the trigger's target gradient is zero (the surrogate already maps it to the target); "
                               "nothing to match")
        self.removed = None
        if cfg.project_out == "target_mean":
            self.removed = [g.detach() for g in parameter_gradient(model, loss_fn, bases, base_labels, self.params)]
        self.matched_target = self.transform(self.target_grads)

    def transform(self, grads: list[torch.Tensor]) -> list[torch.Tensor]:
        """The gradients as the matching loss sees them (project_out applied)."""
        return grads if self.removed is None else project_out(grads, self.removed)


def _diagnostics(members: Sequence[_Member], images: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    """Mean over members of cos(G_p, G_v) and ‖G_p‖/‖G_v‖ for these (unaugmented) poisons."""
    cosines, ratios = [], []
    for m in members:
        grads = parameter_gradient(m.model, m.loss_fn, images, labels, m.params)
        cosines.append(float(gradient_cosine(grads, m.target_grads)))
        ratios.append(float(gradient_norm(grads)) / m.target_norm)
    return sum(cosines) / len(cosines), sum(ratios) / len(ratios)


def craft_poisons(
    models: Sequence[nn.Module],
    loss_fns: Sequence[HashLossFn],
    bases: torch.Tensor,
    base_labels: torch.Tensor,
    triggers: torch.Tensor,
    target_label: torch.Tensor,
    cfg: CraftConfig,
    *,
    generator: torch.Generator,
    progress: bool = True,
) -> CraftResult:
    """Perturb `bases` (their labels unchanged) so their loss gradient matches the triggers' target gradient.

    models/loss_fns: the surrogate(s) and their own hashing losses (an ensemble averages the matching loss).
    triggers: (m, 3, H, W), several triggers average their gradients (one mean loss). target_label: (C,) multi-hot.
    """
    cfg.validate()
    if len(models) != len(loss_fns) or not models:
        raise PadhashError("craft_poisons: give one loss per surrogate model (and at least one model)")
    if bases.shape[1:] != triggers.shape[1:]:
        raise PadhashError(f"craft_poisons: bases {tuple(bases.shape[1:])} and triggers {tuple(triggers.shape[1:])} differ in shape")
    device = bases.device
    target_labels = target_label.reshape(1, -1).to(device).expand(len(triggers), -1)
    members = [_Member(m, f, cfg, triggers, target_labels, bases, base_labels) for m, f in zip(models, loss_fns)]
    cos_before, ratio_before = _diagnostics(members, bases, base_labels)

    batch = cfg.batch_size or len(bases)
    batches = [slice(i, i + batch) for i in range(0, len(bases), batch)]
    milestones = [int(cfg.steps // 2.667), int(cfg.steps // 1.6), int(cfg.steps // 1.142)] if cfg.schedule else []
    best_delta, best_loss, restart_losses, best_history = None, math.inf, [], []
    bar = tqdm(total=cfg.restarts * cfg.steps, desc="crafting poisons", disable=not progress, leave=False)
    for _ in range(cfg.restarts):
        delta = project(torch.randn(bases.shape, generator=generator).to(device) * cfg.eps, bases, cfg.eps, cfg.eps_l2)
        delta.requires_grad_(True)
        optimizer = torch.optim.Adam([delta], lr=cfg.step_size)
        scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones, gamma=0.1)
        history: list[float] = []
        for _step in range(cfg.steps):
            step_loss, grad = 0.0, torch.zeros_like(delta)
            for sl in batches:
                images = bases[sl] + delta[sl]
                if cfg.augment:
                    images = augment_batch(images, cfg.shift, generator, cfg.flip)
                loss = sum(
                    strict_matching_loss(
                        m.transform(parameter_gradient(m.model, m.loss_fn, images, base_labels[sl], m.params,
                                                       create_graph=True)),
                        m.matched_target, cfg.alpha, magnitude=cfg.magnitude)
                    for m in members) / len(members)
                grad = grad + torch.autograd.grad(loss, delta)[0]
                step_loss += float(loss.detach()) / len(batches)
            optimizer.zero_grad(set_to_none=False)
            delta.grad = grad.sign()  # signed Adam (Witches' Brew "signAdam")
            optimizer.step()
            scheduler.step()
            with torch.no_grad():
                delta.copy_(project(delta, bases, cfg.eps, cfg.eps_l2))
            history.append(step_loss)
            bar.update(1)
            bar.set_postfix(loss=f"{step_loss:.4f}")
        final = history[-1] if history else math.nan
        restart_losses.append(final)
        if best_delta is None or final < best_loss:
            best_delta, best_loss, best_history = delta.detach().clone(), final, history
    bar.close()
    poisons = (bases + best_delta).clamp(0, 1)
    cos_after, ratio_after = _diagnostics(members, poisons, base_labels)
    return CraftResult(
        poisons=poisons.detach(), delta=(poisons - bases).detach(), loss=best_loss, restart_losses=restart_losses,
        loss_history=best_history, grad_cosine_before=cos_before, grad_cosine_after=cos_after,
        grad_norm_ratio_before=ratio_before, grad_norm_ratio_after=ratio_after,
    )
