"""DPSH — Deep Pairwise-Supervised Hashing (Li et al., IJCAI 2016), as DeepHash-pytorch `DPSH.py`."""
from __future__ import annotations

import torch

from padhash.errors import PadhashError
from padhash.hashing.base import HashLoss, similarity


class DPSHLoss(HashLoss):
    """Pairwise likelihood between the batch and a memory U of (detached) training-set outputs, plus
    η·(u - sign u)² quantization (the paper's η; DeepHash-pytorch calls it alpha, which here is HashNet's α).

    With `index` (positions in the training split) the batch first overwrites its rows of U and Y and is compared
    with the whole memory, as the reference; rows not yet visited are zeros (a constant, gradient-free term).
    With index=None (attacks on arbitrary batches) the batch is compared with its own detached outputs."""

    HPARAMS = {"eta": 0.1}
    RENAMED = {"alpha": "eta"}

    def __init__(self, num_classes, bits, *, seed=0, num_train=None, **hparams):
        super().__init__(num_classes, bits, seed=seed, num_train=num_train, **hparams)
        rows = num_train or 0
        self.register_buffer("memory_codes", torch.zeros(rows, bits))
        self.register_buffer("memory_labels", torch.zeros(rows, num_classes))

    def forward(self, u, labels, index=None):
        labels = labels.to(u)
        if index is None:
            other_u, other_y = u.detach(), labels
        else:
            if len(self.memory_codes) == 0:
                raise PadhashError("DPSHLoss: pass num_train to make_loss to use training-set indices")
            index = index.to(self.memory_codes.device)
            self.memory_codes[index] = u.detach().to(self.memory_codes)
            self.memory_labels[index] = labels.to(self.memory_labels)
            other_u, other_y = self.memory_codes.to(u), self.memory_labels.to(u)
        s = similarity(labels, other_y)
        theta = 0.5 * u @ other_u.T
        likelihood = torch.log1p(torch.exp(-theta.abs())) + theta.clamp(min=0) - s * theta
        quantization = (u - u.sign()).pow(2).mean()
        return likelihood.mean() + self.hp["eta"] * quantization
