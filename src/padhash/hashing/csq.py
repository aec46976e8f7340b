"""CSQ — Central Similarity Quantization (Yuan et al., CVPR 2020), as DeepHash-pytorch `CSQ.py`."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from scipy.linalg import hadamard

from padhash.hashing.base import HashLoss, label_centers
from padhash.retrieval.codes import hamming_distance


def hash_centers(num_classes: int, bits: int, generator: torch.Generator, retries: int = 20) -> torch.Tensor:
    """±1 hash centres (C, bits): rows of [H; -H] for a Hadamard matrix H (bits a power of 2, 2·bits ≥ C), so any two
    are bits/2 apart; the rest are random vectors with exactly bits/2 entries -1, redrawn (up to `retries` times)
    until their minimum pairwise Hamming distance exceeds bits/4 and the mean reaches bits/2."""
    rows: list[torch.Tensor] = []
    if bits & (bits - 1) == 0:
        h = torch.from_numpy(hadamard(bits)).float()
        rows = list(torch.cat([h, -h])[:num_classes])
    missing = num_classes - len(rows)
    if missing == 0:
        return torch.stack(rows)
    fixed = torch.stack(rows) if rows else torch.empty(0, bits)
    best = None
    for _ in range(retries):
        extra = torch.ones(missing, bits)
        for row in extra:
            row[torch.randperm(bits, generator=generator)[: bits // 2]] = -1
        best = torch.cat([fixed, extra])
        dist = hamming_distance(best, best)
        off_diag = dist[~torch.eye(num_classes, dtype=torch.bool)]
        if num_classes < 2 or (off_diag.min() > bits / 4 and off_diag.mean() >= bits / 2):
            break
    return best


class CSQLoss(HashLoss):
    """BCE between (tanh(u)+1)/2 and each item's hash centre, plus lambda·(|tanh u| - 1)² quantization."""

    HPARAMS = {"lambda": 1e-4}

    def __init__(self, num_classes, bits, *, seed=0, num_train=None, **hparams):
        super().__init__(num_classes, bits, seed=seed, num_train=num_train, **hparams)
        g = torch.Generator().manual_seed(seed)
        self.centers = hash_centers(num_classes, bits, g)
        # the reference draws a 0/1 vector once; 1 → +1 and 0 → -1 after its sign step
        self.register_buffer("fill", torch.randint(0, 2, (bits,), generator=g).float() * 2 - 1)

    def forward(self, u, labels, index=None):
        u = torch.tanh(u)
        target = label_centers(labels.to(u.dtype), self.centers.to(u), self.fill.to(u))
        center_loss = F.binary_cross_entropy(0.5 * (u + 1), 0.5 * (target + 1))
        quantization = (u.abs() - 1).pow(2).mean()
        return center_loss + self.hp["lambda"] * quantization
