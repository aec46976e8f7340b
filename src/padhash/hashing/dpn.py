"""DPN — Deep Polarized Network (Fan et al., IJCAI 2020), as DeepHash-pytorch `DPN.py` (the plain variant)."""
from __future__ import annotations

import torch

from padhash.hashing.base import HashLoss, label_centers


def target_vectors(num_classes: int, bits: int, p: float, generator: torch.Generator) -> torch.Tensor:
    """A random ±1 target per class with exactly int(bits·p) entries -1 (no distance check, as the reference)."""
    targets = torch.ones(num_classes, bits)
    for row in targets:
        row[torch.randperm(bits, generator=generator)[: int(bits * p)]] = -1
    return targets


class DPNLoss(HashLoss):
    """Polarization hinge on the raw output: mean(max(0, m - u·t)) with t the item's ±1 target."""

    HPARAMS = {"m": 1.0, "p": 0.5}

    def __init__(self, num_classes, bits, *, seed=0, num_train=None, **hparams):
        super().__init__(num_classes, bits, seed=seed, num_train=num_train, **hparams)
        g = torch.Generator().manual_seed(seed)
        self.centers = target_vectors(num_classes, bits, self.hp["p"], g)
        self.register_buffer("fill", torch.randint(0, 2, (bits,), generator=g).float() * 2 - 1)

    def forward(self, u, labels, index=None):
        target = label_centers(labels.to(u.dtype), self.centers.to(u), self.fill.to(u))
        return (self.hp["m"] - u * target).clamp(min=0).mean()
