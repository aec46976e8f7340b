"""CIBA's trigger: a universal adversarial patch at the bottom-right corner (CIBA Eq. 5–6, Algorithm 1).

The patch is optimised on clean-trained model(s) so that any image carrying it hashes close to the target anchor
code. The loss is DHTA's smooth Hamming surrogate -tanh(α·u)·h_a / K (`attacks.anchor.anchor_loss`) with α raised
on a schedule; each step takes
a batch of training images of any class, moves the patch by each image's L2-normalised gradient step and averages
the moves (as CIBA's official `generate_trigger_pattern.py` does). Pixel units are [0, 1]: CIBA's step 12 (of 255)
is 12/255 here.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F
from tqdm.auto import tqdm

from padhash.attacks.anchor import anchor_loss
from padhash.errors import PadhashError


@dataclass
class TriggerConfig:
    size: int = 4                  # patch side in pixels (CIBA: 24 of 224 → ≈ 3.4 px on 32×32; 56 for transfer)
    steps: int = 500               # iterations (CIBA: 2,000)
    batch_size: int = 32           # images per iteration (CIBA: 32)
    step_size: float = 12 / 255    # L2 length of each image's normalised step (CIBA: 12 in 0..255 units)
    init: float = 0.5              # constant start value (CIBA: mid-gray 127.5)

    def validate(self, image_size: int | None = None, where: str = "trigger") -> None:
        if self.size < 1 or (image_size is not None and self.size > image_size):
            raise PadhashError(f"{where}.size: must be in 1..{image_size or 'image size'}, got {self.size}")
        if self.steps < 0 or self.batch_size < 1 or self.step_size <= 0:
            raise PadhashError(f"{where}: steps ≥ 0, batch_size ≥ 1 and step_size > 0 required")
        if not 0.0 <= self.init <= 1.0:
            raise PadhashError(f"{where}.init: must be in [0, 1], got {self.init}")


def trigger_mask(image_size: int, size: int) -> torch.Tensor:
    """The mask m of Eq. 5: ones on the bottom-right size×size corner, shape (1, 1, H, W)."""
    if not 1 <= size <= image_size:
        raise PadhashError(f"trigger size {size} does not fit a {image_size}-pixel image")
    mask = torch.zeros(1, 1, image_size, image_size)
    mask[..., image_size - size:, image_size - size:] = 1.0
    return mask


def apply_trigger(images: torch.Tensor, patch: torch.Tensor, blend: float = 1.0) -> torch.Tensor:
    """x ⊙ (1 − m) + β·p ⊙ m + (1 − β)·x ⊙ m (CIBA Eq. 5 and Appendix C); β = 1 replaces the corner.

    `patch` is (3, r, r) in [0, 1]; it goes to the bottom-right corner. Differentiable in both arguments.
    """
    if not 0.0 <= blend <= 1.0:
        raise PadhashError(f"blend ratio must be in [0, 1], got {blend}")
    r = patch.shape[-1]
    h, w = images.shape[-2:]
    if patch.shape[-2] != r or h != w or r > h:
        raise PadhashError(f"patch of shape {tuple(patch.shape)} does not fit images of {h}×{w}")
    mask = trigger_mask(h, r).to(images)
    pattern = F.pad(patch.to(images), (w - r, 0, h - r, 0))  # the patch placed at the corner, zeros elsewhere
    return images * (1 - mask) + blend * pattern * mask + (1 - blend) * images * mask


def tanh_scale_schedule(step: int, steps: int) -> float:
    """DHTA/CIBA's α for tanh(α·u): 0.1 for the first half, then 0.2, 0.3, 0.5, 0.7, 1.0 over equal fifths.

    CIBA's `get_factor` with 2,000 steps switches at 1000, 1200, 1400, 1600, 1800; this scales the same shape.
    """
    if steps <= 0 or step < steps / 2:
        return 0.1
    fifth = (step - steps / 2) / (steps / 2) * 5
    return (0.2, 0.3, 0.5, 0.7, 1.0)[min(int(fifth), 4)]


def generate_trigger(
    models: nn.Module | Sequence[nn.Module],
    anchors: torch.Tensor,
    images: torch.Tensor,
    cfg: TriggerConfig,
    *,
    generator: torch.Generator,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> torch.Tensor:
    """Algorithm 1: optimise a (3, r, r) patch pulling patched `images` (any class) towards each model's anchor.

    `anchors` is (K,) for one model or (M, K) for M models (transfer: the loss is averaged over the models, each
    against its own anchor code). Batches are drawn from `images` with `generator`; models are used in eval mode.
    """
    models = _as_list(models)
    anchors = anchors.reshape(len(models), -1).to(device, torch.float32)
    cfg.validate(images.shape[-1])
    patch = torch.full((3, cfg.size, cfg.size), cfg.init, device=device)
    states = [m.training for m in models]
    for m in models:
        m.eval()
    try:
        for step in tqdm(range(cfg.steps), desc="trigger", disable=not progress, leave=False):
            idx = torch.randint(len(images), (cfg.batch_size,), generator=generator)
            batch = images[idx].to(device)
            # one copy of the patch per image, so the gradient of the summed loss is each image's own gradient
            scale = tanh_scale_schedule(step, cfg.steps)
            with torch.enable_grad():
                copies = patch.expand(len(batch), -1, -1, -1).clone().requires_grad_(True)
                patched = apply_trigger(batch, copies)
                loss = sum(anchor_loss(m(patched), a, scale).sum() for m, a in zip(models, anchors)) / len(models)
                (grad,) = torch.autograd.grad(loss, copies)
            norms = grad.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
            patch = (patch - cfg.step_size * (grad / norms).mean(dim=0)).clamp(0.0, 1.0).detach()
    finally:
        for m, state in zip(models, states):
            m.train(state)
    return patch.cpu()


def _as_list(models: nn.Module | Sequence[nn.Module]) -> list[nn.Module]:
    return [models] if isinstance(models, nn.Module) else list(models)
