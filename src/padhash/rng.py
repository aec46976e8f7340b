"""One seeded source of randomness per run: same config + seed → same numbers."""
from __future__ import annotations

import hashlib
import random

import numpy as np
import torch


def seed_everything(seed: int) -> tuple[torch.Generator, np.random.Generator]:
    """Seed Python, NumPy and torch globally and return dedicated generators for explicit use."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    return gen, np.random.default_rng(seed)


def derive_seed(seed: int, *names: object) -> int:
    """A child seed for a named sub-task (e.g. ('victim', trial)), stable across runs and Python versions."""
    h = np.random.SeedSequence([seed, *[_stable_int(n) for n in names]])
    return int(h.generate_state(1)[0])


def _stable_int(obj: object) -> int:
    if isinstance(obj, int):
        return obj
    return int(hashlib.sha256(str(obj).encode("utf-8")).hexdigest()[:15], 16)
