"""The common interface of the hashing losses: `loss(u, labels, index=None)` on raw model outputs u."""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from padhash.config import check_renamed
from padhash.errors import PadhashError


class HashLoss(nn.Module):
    """A hashing objective. `forward(u, labels, index=None)` → differentiable scalar.

    u: raw model outputs (N, bits); labels: multi-hot float (N, C); index: the batch's positions in the training
    split (only DPSH uses it, for its memory of training codes). Subclasses list their hyper-parameters, with the
    reference defaults (DeepHash-pytorch), in HPARAMS; they are available as `self.hp[name]`. RENAMED {old: new}
    lists names a config may still carry, refused with the new one."""

    HPARAMS: dict[str, float] = {}
    RENAMED: dict[str, str] = {}

    def __init__(self, num_classes: int, bits: int, *, seed: int = 0, num_train: int | None = None,
                 **hparams: Any):
        super().__init__()
        for key in hparams:
            check_renamed(type(self), key, f"{self.name} hparams.{key}")
        unknown = sorted(set(hparams) - set(self.HPARAMS))
        if unknown:
            allowed = ", ".join(self.HPARAMS) or "none"
            raise PadhashError(f"{self.name}: unknown hyper-parameter(s) {', '.join(unknown)} (allowed: {allowed})")
        self.hp = dict(self.HPARAMS)
        for key, value in hparams.items():
            try:
                self.hp[key] = float(value)
            except (TypeError, ValueError):
                raise PadhashError(f"{self.name}: hyper-parameter {key} must be a number, got {value!r}") from None
        self.num_classes, self.bits, self.seed = num_classes, bits, seed
        self.register_buffer("centers", None)  # ±1 (C, bits) for CSQ / DPN

    @property
    def name(self) -> str:
        return type(self).__name__

    def start_epoch(self, epoch: int) -> None:
        """Called by the trainer before each epoch (HashNet's scale continuation); a no-op by default."""

    def forward(self, u: torch.Tensor, labels: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
        raise NotImplementedError


def similarity(labels_a: torch.Tensor, labels_b: torch.Tensor) -> torch.Tensor:
    """1 where two items share at least one label, else 0 (N, M)."""
    return (labels_a @ labels_b.T > 0).float()


def label_centers(labels: torch.Tensor, class_centers: torch.Tensor, fill: torch.Tensor) -> torch.Tensor:
    """Per-item ±1 targets: the class centre for one-hot labels; for multi-hot labels the sign of the sum of the
    item's class centres, with ties (sum 0) taken from the fixed random vector `fill` (CSQ / DPN references)."""
    summed = labels @ class_centers
    summed = torch.where(summed == 0, fill.expand_as(summed), summed)
    return torch.where(summed > 0, 1.0, -1.0)


def balanced_pair_weights(s: torch.Tensor) -> torch.Tensor:
    """HashNet / DCH pair weights: positives scaled by |all|/|positives|, negatives by |all|/|negatives|
    (1 for a batch with only one kind)."""
    n_pos, n_neg = s.sum(), (1 - s).sum()
    if n_pos == 0 or n_neg == 0:
        return torch.ones_like(s)
    return s * (s.numel() / n_pos) + (1 - s) * (s.numel() / n_neg)
