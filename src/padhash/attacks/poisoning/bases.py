"""Which training images become poisons: Witches' Brew's selection by the surrogate's gradient norm."""
from __future__ import annotations

import numpy as np

from padhash.attacks.poisoning.matching import gradient_norm, matched_parameters, parameter_gradient


def largest_gradient_bases(model, loss, split, pool: list[int], n: int, params: str, device) -> np.ndarray:
    """Positions in `pool` (indices into `split`) of the `n` images with the largest ‖∇θ L(f(x), y)‖ over the
    matched parameters `params` of the surrogate `model`, largest first (ties: the earlier position)."""
    weights = matched_parameters(model, params)
    norms = []
    for i in pool:
        x, y = split.images([i]).to(device), split.labels[[i]].to(device)
        norms.append(float(gradient_norm(parameter_gradient(model, loss, x, y, weights))))
    return np.argsort(-np.asarray(norms), kind="stable")[:n]
