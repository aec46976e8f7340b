"""Which training images become poisons: target-class images of the victim's training split (or of the attacker's
stolen part of it), drawn at random or by Witches' Brew's selection by the surrogate's gradient norm."""
from __future__ import annotations

import numpy as np
import torch

from padhash.attacks.poisoning.matching import gradient_norm, matched_parameters, parameter_gradient


def base_pool(labels: torch.Tensor, target: torch.Tensor, match: str, allowed: set[int] | None = None) -> torch.Tensor:
    """Indices of the training items carrying `target` (padhash.metrics.carries_target under `match`), in order,
    restricted to `allowed` (the stolen part) when given."""
    from padhash.metrics import carries_target

    pool = torch.nonzero(carries_target(labels, target, match)).flatten()
    if allowed is not None:
        pool = torch.tensor([int(i) for i in pool if int(i) in allowed], dtype=torch.long)
    return pool


def choose_bases(pool: torch.Tensor, n: int, selection: str, rng: np.random.Generator, surrogate=None, split=None,
                 params: str = "", device="cpu") -> list[int]:
    """`n` of the `pool` indices, sorted: at random (`rng`), or (`gradient_norm`) the largest gradients on the
    surrogate (model, loss)."""
    if selection == "random":
        chosen = rng.choice(len(pool), n, replace=False)
    else:
        chosen = largest_gradient_bases(surrogate[0], surrogate[1], split, pool.tolist(), n, params, device)
    return sorted(int(pool[int(i)]) for i in chosen)


def largest_gradient_bases(model, loss, split, pool: list[int], n: int, params: str, device) -> np.ndarray:
    """Positions in `pool` (indices into `split`) of the `n` images with the largest ‖∇θ L(f(x), y)‖ over the
    matched parameters `params` of the surrogate `model`, largest first (ties: the earlier position)."""
    weights = matched_parameters(model, params)
    norms = []
    for i in pool:
        x, y = split.images([i]).to(device), split.labels[[i]].to(device)
        norms.append(float(gradient_norm(parameter_gradient(model, loss, x, y, weights))))
    return np.argsort(-np.asarray(norms), kind="stable")[:n]
