"""(trigger, target) pairs for a poisoning experiment, drawn from one seeded RNG independent of everything else."""
from __future__ import annotations

import numpy as np
import torch

from padhash.errors import PadhashError


def choose_pairs(query_labels: torch.Tensor, count: int, target_classes: int, triggers: int,
                 rng: np.random.Generator) -> list[dict]:
    """`count` pairs {"triggers": query indices, "targets": classes}: a random first trigger, `target_classes`
    classes it lacks, and up to `triggers` − 1 further queries sharing its labels and carrying no target label."""
    qlabels = query_labels.numpy() > 0
    pairs = []
    for _ in range(count):
        first = int(rng.integers(len(qlabels)))
        source = np.flatnonzero(qlabels[first])
        candidates = np.flatnonzero(~qlabels[first])
        if len(candidates) < target_classes:
            raise PadhashError("data: a trigger carries too many labels to pick a target it lacks")
        targets = sorted(int(c) for c in rng.choice(candidates, target_classes, replace=False))
        same = np.flatnonzero((qlabels[:, source].all(1)) & (~qlabels[:, targets].any(1)))
        same = same[same != first]
        extra = rng.choice(same, min(triggers - 1, len(same)), replace=False) if len(same) else []
        pairs.append({"triggers": [first, *map(int, extra)], "targets": targets})
    return pairs


def target_vector(pair: dict, num_classes: int) -> torch.Tensor:
    """The pair's multi-hot target y_t (its target classes set to 1)."""
    target = torch.zeros(num_classes)
    target[pair["targets"]] = 1.0
    return target
