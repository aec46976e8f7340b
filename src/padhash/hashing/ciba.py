"""CIBA's own victim loss (KuofengGao/CIBA `loss.py`, `loss2`; REFERENCES.md §4.1).

With h = tanh(u) of a batch of n items: z = h·hᵀ / n (CIBA divides by the batch size, not by the bits),
s = 2·[items share a label] − 1, loss = Σ(z − s)² / n² + λ·‖sign(h) − h‖² (λ = 0 by default, as train.py).
CIBA trains it with SGD (momentum 0.9, weight decay 5e-4), lr 1e-3 on the hash layer and 1e-4 on the backbone:
TrainConfig `optimizer: sgd, lr: 0.001, weight_decay: 5e-4, schedule: constant, backbone_lr_scale: 0.1`.
"""
from __future__ import annotations

from padhash.hashing.base import HashLoss, similarity


class CIBALoss(HashLoss):
    HPARAMS = {"lam": 0.0}

    def forward(self, u, labels, index=None):
        h = u.tanh()
        n = len(h)
        z = h @ h.T / n
        s = 2 * similarity(labels.to(u), labels.to(u)) - 1
        quantization = (h.sign() - h).pow(2).sum()
        return (z - s).pow(2).sum() / n ** 2 + self.hp["lam"] * quantization
