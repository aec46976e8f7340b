"""DCH — Deep Cauchy Hashing (Cao et al., CVPR 2018), as DeepHash-pytorch `DCH.py`."""
from __future__ import annotations

import torch

from padhash.hashing.base import HashLoss, balanced_pair_weights, similarity


def cosine_hamming(a: torch.Tensor, b: torch.Tensor, bits: int) -> torch.Tensor:
    """The reference's continuous Hamming distance (1 - min(cos, 0.99))·bits/2, (N, M)."""
    norm = a.norm(dim=1, keepdim=True) @ b.norm(dim=1, keepdim=True).T
    cos = (a @ b.T) / norm.clamp(min=1e-4)
    return (1 - cos.clamp(max=0.99)) * bits / 2


class DCHLoss(HashLoss):
    """Weighted Cauchy cross-entropy on pairs of raw outputs + lambda·Cauchy quantization towards the all-ones
    corner of |u|. Any batch size works (the reference's fixed-size ones vector breaks on a partial last batch)."""

    HPARAMS = {"gamma": 20.0, "lambda": 0.1}

    def forward(self, u, labels, index=None):
        gamma = self.hp["gamma"]
        s = similarity(labels, labels).to(u)
        d = cosine_hamming(u, u, self.bits)
        cauchy = balanced_pair_weights(s) * (s * torch.log(d / gamma) + torch.log(1 + gamma / d))
        quantization = torch.log(1 + cosine_hamming(u.abs(), torch.ones_like(u[:1]), self.bits) / gamma)
        return cauchy.mean() + self.hp["lambda"] * quantization.mean()
