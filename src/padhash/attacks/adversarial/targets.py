"""DHTA's query / target draw (DHTA-master's rule), shared by the query-attack runner and the studies."""
from __future__ import annotations

import torch

from padhash.errors import PadhashError


def choose_targets(query_labels: torch.Tensor, db_labels: torch.Tensor, count: int, n_t: int, seed: int,
                   open_set_classes: list[int] = ()) -> list[tuple[int, torch.Tensor, list[int]]]:
    """[(query index, target label vector, n_max database indices)]: `count` random queries (none of an open-set
    class), each with a uniformly random database label vector ≠ its own that occurs more than n_t times (only
    open-set labels when given), and a random permutation of that label's database items (the first n_t vote the
    anchor). Drawn from `seed` alone, so every n_t and method sees the same queries and targets."""
    gen = torch.Generator().manual_seed(seed)
    uniq, inverse, counts = torch.unique(db_labels, dim=0, return_inverse=True, return_counts=True)
    members = {i: torch.nonzero(inverse == i).flatten() for i in range(len(uniq))}
    eligible = [i for i in range(len(uniq)) if counts[i] > n_t]
    if open_set_classes:
        eligible = [i for i in eligible if uniq[i][list(open_set_classes)].sum() > 0]
        allowed_queries = torch.nonzero(query_labels[:, list(open_set_classes)].sum(dim=1) == 0).flatten()
    else:
        allowed_queries = torch.arange(len(query_labels))
    if not eligible:
        raise PadhashError(f"no target label has more than n_t = {n_t} database items"
                           + (f" among open-set classes {list(open_set_classes)}" if open_set_classes else ""))
    picked = allowed_queries[torch.randperm(len(allowed_queries), generator=gen)[:count]]
    out = []
    for q in picked.tolist():
        options = [i for i in eligible if not torch.equal(uniq[i], query_labels[q])]
        if not options:
            continue
        t = options[int(torch.randint(len(options), (), generator=gen))]
        order = members[t][torch.randperm(len(members[t]), generator=gen)]
        out.append((q, uniq[t].clone(), order.tolist()))
    return out
