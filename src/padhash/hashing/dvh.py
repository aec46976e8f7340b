"""DVH — the objective DHTA trains its video hash models with (Liong et al., "Deep video hashing", TMM 2017,
DHTA Appendix B): a discriminative term plus λ = 0.0001 × a quantisation term.

On h = tanh(u) of a batch: the discriminative term is the mean squared distance ‖h_i − h_j‖²/K over pairs that
share a label minus the same mean over pairs that share none (pull similar clips together, push dissimilar ones
apart); the quantisation term is mean ‖h − sign(h)‖²/K. Only these two terms are named in DHTA's appendix; DVH's
balance and independence terms are left out.
"""
from __future__ import annotations

import torch

from padhash.hashing.base import HashLoss, similarity


class DVHLoss(HashLoss):
    HPARAMS = {"lambda": 1e-4}

    def forward(self, u, labels, index=None):
        h = torch.tanh(u)
        s = similarity(labels.to(h), labels.to(h))
        off_diagonal = 1 - torch.eye(len(h), device=h.device, dtype=h.dtype)
        distance = torch.cdist(h, h).pow(2) / h.shape[1]
        same, other = s * off_diagonal, (1 - s) * off_diagonal
        discriminative = (distance * same).sum() / same.sum().clamp_min(1) \
            - (distance * other).sum() / other.sum().clamp_min(1)
        quantisation = (h - torch.where(h >= 0, 1.0, -1.0)).pow(2).mean()
        return discriminative + self.hp["lambda"] * quantisation
