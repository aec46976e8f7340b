"""Spectral-signature detection (Tran, Li & Madry 2018), as the CIBA paper runs it (Table 3).

Per class, the training images' penultimate features are centred; each image's score is its squared projection on
the top right-singular vector. The top ⌈1.5 × budget⌉ scores of every class are removed (the defender does not
know the poisoned class, nor which images are poisons). Works on any poisoned training set: the poison indices
are only used to count what was removed.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from padhash.errors import PadhashError
from padhash.validate import check_range


def spectral_scores(features: torch.Tensor) -> torch.Tensor:
    """(N,) outlier scores: squared projection of the centred features on their top singular direction."""
    centred = features.double() - features.double().mean(dim=0, keepdim=True)
    if len(centred) < 2:
        return torch.zeros(len(centred), dtype=torch.float64)
    _, _, vh = torch.linalg.svd(centred, full_matrices=False)
    return (centred @ vh[0]).pow(2)


@dataclass
class SpectralResult:
    removed: torch.Tensor          # training indices removed (int64, sorted)
    kept: torch.Tensor             # training indices kept (int64, sorted)
    poisons_removed: int
    clean_removed: int
    poisons_kept: int
    clean_kept: int


def spectral_filter(
    features: torch.Tensor,
    labels: torch.Tensor,
    budget: int,
    poison_idx: torch.Tensor | None = None,
    *,
    removal_factor: float = 1.5,
) -> SpectralResult:
    """Remove the ⌈removal_factor × budget⌉ highest-scored items of every class (multi-hot: an item is scored
    in each of its classes and removed if any class removes it). `features` (N, D), `labels` (N, C) multi-hot."""
    n = len(features)
    per_class = math.ceil(removal_factor * budget)
    remove = torch.zeros(n, dtype=torch.bool)
    for c in range(labels.shape[1]):
        members = torch.nonzero(labels[:, c] > 0).flatten()
        if len(members) == 0 or per_class == 0:
            continue
        scores = spectral_scores(features[members])
        order = torch.argsort(scores, descending=True, stable=True)
        remove[members[order[:per_class]]] = True
    is_poison = torch.zeros(n, dtype=torch.bool)
    if poison_idx is not None:
        is_poison[torch.as_tensor(poison_idx, dtype=torch.long)] = True
    return SpectralResult(
        removed=torch.nonzero(remove).flatten(),
        kept=torch.nonzero(~remove).flatten(),
        poisons_removed=int((remove & is_poison).sum()),
        clean_removed=int((remove & ~is_poison).sum()),
        poisons_kept=int((~remove & is_poison).sum()),
        clean_kept=int((~remove & ~is_poison).sum()),
    )


@dataclass
class SpectralDefense:
    removal_factor: float = 1.5        # Tran et al.: remove 1.5 × the poison budget per class
    budget: int | None = None          # None = the true number of poisons (the defender's assumed ε·n)

    def validate(self, where: str = "spectral") -> None:
        if self.removal_factor <= 0:
            raise PadhashError(f"{where}.removal_factor: must be > 0")
        if self.budget is not None:
            check_range(f"{where}.budget", self.budget, 1)
