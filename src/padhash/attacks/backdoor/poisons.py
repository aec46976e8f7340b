"""Poisoned images for each backdoor method: perturb the target-class images, then paste the (blended) trigger.

The labels never change (clean-label). `label_flip` is the threat-model-breaking ceiling used beside the attacks:
triggered images of OTHER classes put in the poisons' slots, so they carry the target label (a dirty-label,
BadNets-style backdoor with the same trigger and budget).
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from padhash.attacks.backdoor.perturb import PerturbConfig, perturb
from padhash.attacks.backdoor.trigger import apply_trigger
from padhash.errors import PadhashError

# method → perturbation added before the trigger (CIBA Table 1 rows)
BACKDOOR_METHODS = {"tri": "none", "tri_noise": "noise", "tri_adv": "adv", "ciba": "confusing"}


def craft_backdoor_poisons(
    method: str,
    models: nn.Module | Sequence[nn.Module],
    images: torch.Tensor,
    patch: torch.Tensor,
    cfg: PerturbConfig,
    *,
    blend: float = 1.0,
    generator: torch.Generator,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(perturb(x), trigger(perturb(x)) with ratio `blend`) for `method` in BACKDOOR_METHODS from target-class
    `images`: the second is the poison as stored, the first what a victim pasting the trigger after its
    augmentation stores (padhash.attacks.backdoor.placement)."""
    if method not in BACKDOOR_METHODS:
        raise PadhashError(f"unknown backdoor method {method!r}; one of {', '.join(BACKDOOR_METHODS)}")
    perturbed = perturb(BACKDOOR_METHODS[method], models, images, cfg, generator=generator, device=device,
                        progress=progress)
    return perturbed, apply_trigger(perturbed, patch, blend).clamp(0.0, 1.0)


def dirty_label_poisons(other_class_images: torch.Tensor, patch: torch.Tensor) -> torch.Tensor:
    """The `label_flip` ceiling: other classes' images with the full trigger, to be stored under the target label."""
    return apply_trigger(other_class_images, patch, 1.0)
