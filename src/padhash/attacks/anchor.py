"""Anchor code of a target label by component voting (DHTA, Algorithm 1).

The anchor h_a = argmin_h Σ_i d_H(h, h_i) over the n_t codes h_i of target-label objects. Because the Hamming
distance is additive over bits, each bit is minimised on its own: take the majority sign of that component,
i.e. h_a = sign(Σ_i h_i). Ties (possible for even n_t) go to +1, the project-wide sign(0) = +1 convention.
"""
from __future__ import annotations

import torch

from padhash.errors import PadhashError


def anchor_code(codes: torch.Tensor) -> torch.Tensor:
    """Component-voting anchor of `codes` (n_t, K) with entries ±1 → int8 (K,) with entries ±1 (ties → +1)."""
    if codes.dim() != 2 or codes.shape[0] == 0:
        raise PadhashError(f"anchor_code: need codes of shape (n_t >= 1, K), got {tuple(codes.shape)}")
    votes = codes.to(torch.int64).sum(dim=0)
    return torch.where(votes >= 0, 1, -1).to(torch.int8)


def anchor_loss(u: torch.Tensor, anchor: torch.Tensor, tanh_scale: float) -> torch.Tensor:
    """DHTA's smooth Hamming surrogate to an anchor (Eq. 9, also CIBA's trigger loss): −(1/K)·h_aᵀ tanh(α·u) per
    row, shape (N,); lower = closer. `tanh_scale` is the paper's α (how sharply tanh approximates sign); `anchor`
    (K,) or (N, K)."""
    return -(torch.tanh(tanh_scale * u) * anchor.to(u)).sum(dim=1) / u.shape[1]
