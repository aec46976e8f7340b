"""Fine-pruning's pruning step (Liu, Dolan-Gavitt & Garg 2018), as CIBA Fig. 5(b) runs it.

Channels of the penultimate features (`HashModel.features`) are ranked by their mean activation on clean images
the defender holds; the most dormant ones are cut by zeroing their columns in the hash layer, so the code no
longer depends on them. The curve of MAP and t-MAP (or ASR) against the number cut shows whether there is a
point where the backdoor dies while retrieval survives.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
from torch import nn

from padhash.errors import PadhashError


@torch.no_grad()
def mean_activations(model: nn.Module, images: torch.Tensor, *, batch_size: int = 256,
                     device: str | torch.device = "cpu") -> torch.Tensor:
    """(D,) mean of `model.features` over `images` (eval mode); a frozen backbone's from its feature cache."""
    cache = getattr(model, "feature_cache", None)
    if getattr(model, "backbone_frozen", False) and cache is not None:
        return cache.features(model, images).double().mean(0).float()
    was_training = model.training
    model.eval()
    total, count = None, 0
    for batch in images.split(batch_size):
        feats = model.features(batch.to(device)).flatten(1).double()
        total = feats.sum(0) if total is None else total + feats.sum(0)
        count += len(feats)
    model.train(was_training)
    return (total / max(count, 1)).float().cpu()


def dormant_order(model: nn.Module, clean_images: torch.Tensor, **kwargs) -> torch.Tensor:
    """Feature channels from most dormant (lowest mean activation on clean images) to most active; stable ties."""
    return torch.argsort(mean_activations(model, clean_images, **kwargs), stable=True)


def prune_channels(model: nn.Module, channels: torch.Tensor | Sequence[int]) -> nn.Module:
    """A copy of `model` whose hash layer ignores the given feature channels (their weight columns set to 0)."""
    pruned = copy.deepcopy(model)
    idx = torch.as_tensor(channels, dtype=torch.long)
    with torch.no_grad():
        pruned.hash_layer.weight[:, idx] = 0.0
    return pruned


def pruning_curve(
    model: nn.Module,
    clean_images: torch.Tensor,
    counts: Sequence[int],
    evaluate: Callable[[nn.Module], dict],
    *,
    device: str | torch.device = "cpu",
) -> list[dict]:
    """For each count in `counts`, prune that many most-dormant channels and record {"pruned": n, **evaluate(m)}."""
    order = dormant_order(model, clean_images, device=device)
    width = len(order)
    rows = []
    for n in counts:
        if not 0 <= n <= width:
            raise PadhashError(f"cannot prune {n} of {width} feature channels")
        rows.append({"pruned": int(n), "fraction": n / width, **evaluate(prune_channels(model, order[:n]))})
    return rows


@dataclass
class PruneDefense:
    fractions: list[float] = field(default_factory=lambda: [0.0, 0.2, 0.4, 0.6, 0.8, 0.9, 0.95])

    def validate(self, where: str = "prune") -> None:
        if any(not 0 <= f < 1 for f in self.fractions):
            raise PadhashError(f"{where}.fractions: each must be in [0, 1)")
