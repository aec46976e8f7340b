"""Seeded stratified sampling: split presets, query caps, the attacker's stolen subset and training-split parts.

Stratification key of an item = its first positive label (single-label data: its class; multi-label data: the
lowest-index class it carries; items with no label form their own group).
"""
from __future__ import annotations

import torch

from padhash.data.splits import Split
from padhash.errors import PadhashError


def strata(labels: torch.Tensor) -> torch.Tensor:
    """LongTensor (N,): index of each row's first positive label, or -1 for a row with none."""
    positive = labels > 0
    first = positive.float().argmax(dim=1)
    return torch.where(positive.any(dim=1), first, torch.full_like(first, -1))


def _groups(labels: torch.Tensor, generator: torch.Generator) -> list[torch.Tensor]:
    """Positions of each stratum (ascending stratum id), each shuffled by the generator."""
    keys = strata(labels)
    return [members[torch.randperm(len(members), generator=generator)]
            for members in (torch.nonzero(keys == k).flatten() for k in torch.unique(keys).tolist())]


def split_per_class(labels: torch.Tensor, counts: list[int | float], seed: int, where: str,
                    need_rest: bool = True) -> list[torch.Tensor]:
    """Carve each stratum into consecutive parts: ints are item counts, floats fractions of the stratum.

    Returns one sorted LongTensor per part plus a last one with the rest. A stratum too small for the
    requested parts (or, with need_rest, leaving the rest empty) raises PadhashError naming `where`.
    """
    generator = torch.Generator().manual_seed(seed)
    parts: list[list[torch.Tensor]] = [[] for _ in range(len(counts) + 1)]
    for members in _groups(labels, generator):
        start = 0
        for p, count in enumerate(counts):
            take = max(1, round(count * len(members))) if isinstance(count, float) else int(count)
            parts[p].append(members[start:start + take])
            start += take
        if start > len(members) or (need_rest and start == len(members)):
            rest = " with something left over" if need_rest else ""
            raise PadhashError(f"{where}: a class has {len(members)} items, too few for per-class split "
                               f"{counts}{rest}")
        parts[-1].append(members[start:])
    return [torch.sort(torch.cat(p)).values if p else torch.zeros(0, dtype=torch.long) for p in parts]


def stratified_sample(labels: torch.Tensor, fraction: float, seed: int) -> torch.Tensor:
    """Sorted positions of a seeded sample of each stratum: round(fraction·n) items, at least 1."""
    generator = torch.Generator().manual_seed(seed)
    chosen = [members[:max(1, round(fraction * len(members)))] for members in _groups(labels, generator)]
    if not chosen:
        return torch.zeros(0, dtype=torch.long)
    return torch.sort(torch.cat(chosen)).values


def stolen_subset(split: Split, fraction: float, seed: int) -> torch.Tensor:
    """The attacker's stolen share of `split`: seeded, stratified by first label, at least one item per class.

    Returns sorted LongTensor positions into the split. fraction must be in (0, 1]; 1 returns every item.
    """
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0.0 < fraction <= 1.0:
        raise PadhashError(f"stolen fraction must be in (0, 1], got {fraction!r}")
    if fraction == 1.0:
        return torch.arange(len(split))
    return stratified_sample(split.labels, float(fraction), seed)


def check_train_part(part) -> tuple[float, float]:
    """(lo, hi) of a fraction range [lo, hi] with 0 ≤ lo < hi ≤ 1, else PadhashError."""
    ok = (isinstance(part, (list, tuple)) and len(part) == 2
          and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in part))
    if not ok or not 0.0 <= part[0] < part[1] <= 1.0:
        raise PadhashError(f"train_part must be [lo, hi] with 0 ≤ lo < hi ≤ 1, got {part!r}")
    return float(part[0]), float(part[1])


def train_part_indices(labels: torch.Tensor, part, seed: int) -> torch.Tensor:
    """Sorted positions of the fraction range part = [lo, hi] of a split: each stratum is shuffled by `seed` and
    items round(lo·n) ≤ rank < round(hi·n) are kept. Ranges that meet ([0, 0.5] and [0.5, 1]) share their cut points,
    so with one seed they are disjoint and together cover the split. A bad range raises PadhashError."""
    lo, hi = check_train_part(part)
    groups = _groups(labels, torch.Generator().manual_seed(seed))
    kept = [g[round(lo * len(g)):round(hi * len(g))] for g in groups]
    if not sum(len(k) for k in kept):
        raise PadhashError(f"train_part {list(part)} keeps no training item")
    return torch.sort(torch.cat(kept)).values


def cap_queries(labels: torch.Tensor, max_queries: int | None, seed: int) -> torch.Tensor | None:
    """Sorted positions of exactly max_queries items, allotted to strata in proportion to their sizes
    (largest remainders first, at least one per stratum when there is room); None when no cap is needed."""
    if max_queries is None:
        return None
    if isinstance(max_queries, bool) or not isinstance(max_queries, int) or max_queries < 1:
        raise PadhashError(f"max_queries must be a positive integer, got {max_queries!r}")
    if max_queries >= len(labels):
        return None
    groups = _groups(labels, torch.Generator().manual_seed(seed))
    sizes = torch.tensor([len(g) for g in groups], dtype=torch.float64)
    share = sizes * max_queries / sizes.sum()
    take = share.floor().long()
    if max_queries >= len(groups):
        take = take.clamp(min=1)
    # hand out what rounding left over by largest remainder (stable: ties go to the lower stratum)
    order = torch.argsort(share - share.floor(), descending=True, stable=True)
    for g in order.tolist():
        if int(take.sum()) >= max_queries:
            break
        if take[g] < sizes[g]:
            take[g] += 1
    while int(take.sum()) > max_queries:  # the at-least-one rule overshot: trim the largest allotment
        take[int(torch.argmax(take))] -= 1
    return torch.sort(torch.cat([g[:int(t)] for g, t in zip(groups, take)])).values
