"""HashNet (Cao et al., ICCV 2017), as DeepHash-pytorch `HashNet.py`: weighted pairwise likelihood on tanh(scale·u)
with scale continuation."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from padhash.hashing.base import HashLoss, balanced_pair_weights, similarity


class HashNetLoss(HashLoss):
    HPARAMS = {"alpha": 0.1, "step_continuation": 20}

    def __init__(self, num_classes, bits, *, seed=0, num_train=None, **hparams):
        super().__init__(num_classes, bits, seed=seed, num_train=num_train, **hparams)
        self.scale = 1.0

    def start_epoch(self, epoch: int) -> None:
        # scale = sqrt(epoch // step + 1): 1, √2, √3, ... every `step_continuation` epochs
        self.scale = (epoch // int(self.hp["step_continuation"]) + 1) ** 0.5

    def forward(self, u, labels, index=None):
        u = torch.tanh(self.scale * u)
        s = similarity(labels, labels).to(u)
        ip = self.hp["alpha"] * u @ u.T
        nll = F.softplus(ip) - s * ip  # = ip + log(1 + exp(-ip)) - s·ip, overflow-free
        return (nll * balanced_pair_weights(s)).sum() / s.numel()
