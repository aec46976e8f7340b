"""Retrieval metrics from ranked database indices, vectorized over queries (blocked to bound memory).

Conventions (DESIGN.md, REFERENCES.md §1.2):
- a database item is relevant to a query when their multi-hot labels share at least one positive;
- AP of a query = mean over the relevant items found in its top k of (precision at that item's rank), i.e. it is
  normalised by the number of relevant items RETRIEVED, not by all relevant items in the database;
- a query with no relevant item in its top k scores 0 and still counts in the mean (DeepHash-pytorch
  ``CalcTopMap``); ``drop_empty=True`` leaves such queries out of the mean (DHTA-master and CIBA
  ``mean_average_precision``).
- ``k=None`` means the whole database. DeepHash-pytorch's CIFAR setting ``topk=-1`` instead slices ``gnd[0:-1]``
  and silently drops the last-ranked item; we do not copy that quirk.
Rankings come from :class:`padhash.retrieval.HammingIndex`: ascending distance, ties by database index.
"""
from __future__ import annotations

import numpy as np
import torch

from padhash.errors import PadhashError
from padhash.retrieval import HammingIndex, check_codes

# Elements (queries x ranked items x classes) gathered at once.
_BLOCK_ELEMENTS = 1 << 24


def _labels(labels, name: str) -> torch.Tensor:
    labels = torch.as_tensor(labels)
    if labels.dim() != 2:
        raise PadhashError(f"{name}: expected multi-hot labels of shape (N, C), got {tuple(labels.shape)}")
    return labels.float()


def _query_targets(target_labels, n_queries: int, n_classes: int, name: str) -> torch.Tensor:
    """Target labels as (Q, C): a single (C,) vector is shared by every query."""
    target = torch.as_tensor(target_labels).float()
    if target.dim() == 1:
        target = target.unsqueeze(0).expand(n_queries, -1)
    if target.shape != (n_queries, n_classes):
        raise PadhashError(f"{name}: expected shape ({n_queries}, {n_classes}) or ({n_classes},), got {tuple(target.shape)}")
    return target


def _check_ranked(ranked_idx, n_queries: int, n_db: int) -> torch.Tensor:
    ranked_idx = torch.as_tensor(ranked_idx)
    if ranked_idx.dim() != 2 or ranked_idx.shape[0] != n_queries:
        raise PadhashError(f"ranked indices: expected shape ({n_queries}, k), got {tuple(ranked_idx.shape)}")
    if ranked_idx.numel() and (int(ranked_idx.min()) < 0 or int(ranked_idx.max()) >= n_db):
        raise PadhashError(f"ranked indices must lie in [0, {n_db}) (the database size)")
    return ranked_idx.long()


def relevance(ranked_idx, query_labels, db_labels):
    """Yield boolean relevance blocks (b, k): item ranked_idx[q, r] shares a label with query q."""
    query_labels = _labels(query_labels, "query labels")
    db_labels = _labels(db_labels, "database labels").to(query_labels.device)
    if db_labels.shape[1] != query_labels.shape[1]:
        raise PadhashError(f"query labels have {query_labels.shape[1]} classes but database labels {db_labels.shape[1]}")
    ranked_idx = _check_ranked(ranked_idx, query_labels.shape[0], db_labels.shape[0]).to(query_labels.device)
    k = ranked_idx.shape[1]
    block = max(1, _BLOCK_ELEMENTS // max(1, k * db_labels.shape[1]))
    for q0 in range(0, ranked_idx.shape[0], block):
        gathered = db_labels[ranked_idx[q0:q0 + block]]  # (b, k, C)
        yield torch.einsum("bkc,bc->bk", gathered, query_labels[q0:q0 + block]) > 0


def average_precisions(ranked_idx, query_labels, db_labels) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-query AP (float64, (Q,)) and number of relevant items retrieved ((Q,) int64)."""
    aps, hits = [], []
    for rel in relevance(ranked_idx, query_labels, db_labels):
        rel = rel.double()
        ranks = torch.arange(1, rel.shape[1] + 1, dtype=torch.float64, device=rel.device)
        found = rel.sum(dim=1)
        precision_at_hits = (rel.cumsum(dim=1) / ranks * rel).sum(dim=1)
        aps.append(torch.where(found > 0, precision_at_hits / found.clamp(min=1), torch.zeros_like(found)))
        hits.append(found.long())
    if not aps:
        return torch.zeros(0, dtype=torch.float64), torch.zeros(0, dtype=torch.int64)
    return torch.cat(aps).cpu(), torch.cat(hits).cpu()


def mean_average_precision(ranked_idx, query_labels, db_labels, *, drop_empty: bool = False) -> float:
    """mAP of the given rankings (DeepHash convention; ``drop_empty`` = DHTA/CIBA convention).

    With ``drop_empty=True`` and no query having any relevant item retrieved, the mean is over no query: 0.0.
    """
    aps, hits = average_precisions(ranked_idx, query_labels, db_labels)
    if drop_empty:
        aps = aps[hits > 0]
    return float(aps.mean()) if aps.numel() else 0.0


def _search(query_codes, db_codes, k, backend: str):
    db_codes = check_codes(db_codes, "database codes")
    k = db_codes.shape[0] if k is None else k
    return HammingIndex(db_codes, backend).search(query_codes, k)


def map_at_k(query_codes, db_codes, query_labels, db_labels, k: int | None = None, *, drop_empty: bool = False,
             backend: str = "auto") -> float:
    """mAP@k of Hamming ranking (k None = the whole database)."""
    _, idx = _search(query_codes, db_codes, k, backend)
    return mean_average_precision(idx, query_labels, db_labels, drop_empty=drop_empty)


def t_map_at_k(query_codes, db_codes, target_labels, db_labels, k: int | None = None, *, drop_empty: bool = False,
               backend: str = "auto") -> float:
    """Targeted mAP@k: mAP with each query's label replaced by the target label ((Q, C) or one (C,) vector)."""
    _, idx = _search(query_codes, db_codes, k, backend)
    target = _query_targets(target_labels, idx.shape[0], _labels(db_labels, "database labels").shape[1], "target labels")
    return mean_average_precision(idx, target, db_labels, drop_empty=drop_empty)


def precision_at_k(ranked_idx, query_labels, db_labels) -> float:
    """Mean over queries of the fraction of relevant items among the ranked ones (k = ranked_idx.shape[1])."""
    fractions = [rel.double().mean(dim=1) for rel in relevance(ranked_idx, query_labels, db_labels)]
    return float(torch.cat(fractions).mean()) if fractions else 0.0


def pr_curve(query_codes, db_codes, query_labels, db_labels) -> tuple[np.ndarray, np.ndarray]:
    """Precision and recall of Hamming-radius lookup, for radius r = 0..bits (arrays of length bits + 1).

    For radius r a query retrieves every database item within distance r. precision(r) is the mean over the
    queries that retrieve at least one item; recall(r) the mean over the queries with at least one relevant item
    in the database (recall normalised by all relevant items, as DeepHash-pytorch's ``pr_curve``).
    """
    queries = check_codes(query_codes, "query codes")
    db = check_codes(db_codes, "database codes").to(queries.device)
    if db.shape[1] != queries.shape[1]:
        raise PadhashError(f"query codes have {queries.shape[1]} bits but the database has {db.shape[1]}")
    query_labels = _labels(query_labels, "query labels").to(queries.device)
    db_labels = _labels(db_labels, "database labels").to(queries.device)
    bits, n_db = db.shape[1], db.shape[0]
    retrieved = torch.zeros(queries.shape[0], bits + 1, dtype=torch.float64, device=queries.device)
    relevant = torch.zeros_like(retrieved)
    db_float = db.float()
    block = max(1, _BLOCK_ELEMENTS // max(1, n_db))
    for q0 in range(0, queries.shape[0], block):
        q1 = min(queries.shape[0], q0 + block)
        dist = ((bits - queries[q0:q1].float() @ db_float.T) / 2).round().long()
        rel = (query_labels[q0:q1] @ db_labels.T > 0).double()
        retrieved[q0:q1].scatter_add_(1, dist, torch.ones_like(rel))
        relevant[q0:q1].scatter_add_(1, dist, rel)
    retrieved = retrieved.cumsum(dim=1)
    relevant = relevant.cumsum(dim=1)
    total_relevant = relevant[:, -1:]
    precision_rows = torch.where(retrieved > 0, relevant / retrieved.clamp(min=1), torch.nan)
    recall_rows = relevant[total_relevant[:, 0] > 0] / total_relevant[total_relevant[:, 0] > 0]
    precision = torch.nan_to_num(precision_rows.nanmean(dim=0), nan=0.0)
    recall = recall_rows.mean(dim=0) if recall_rows.shape[0] else torch.zeros(bits + 1, dtype=torch.float64)
    return precision.cpu().numpy(), recall.cpu().numpy()


def asr_at_k(ranked_idx, db_labels, target_labels, *, threshold: float = 0.3) -> tuple[float, torch.Tensor]:
    """Attack success rate (PADHASH): a query succeeds when >= ``threshold`` of its top k carry the target label.

    ``target_labels`` is (Q, C) or one (C,) vector; an item carries a multi-hot target when it shares >= 1 of its
    positives. Returns (ASR, per-query fractions (Q,) float64). The comparison is done on counts
    (hits >= threshold * k, with a 1e-9 allowance for float rounding) so 12 of 40 meets a 0.3 threshold exactly.
    """
    if not 0.0 <= threshold <= 1.0:
        raise PadhashError(f"ASR threshold must lie in [0, 1], got {threshold}")
    ranked_idx = torch.as_tensor(ranked_idx)
    db_labels = _labels(db_labels, "database labels")
    if ranked_idx.dim() != 2:
        raise PadhashError(f"ranked indices: expected shape (Q, k), got {tuple(ranked_idx.shape)}")
    target = _query_targets(target_labels, ranked_idx.shape[0], db_labels.shape[1], "target labels")
    k = ranked_idx.shape[1]
    if k == 0:
        raise PadhashError("ASR needs at least one retrieved item per query (k >= 1)")
    hits = torch.cat([rel.sum(dim=1) for rel in relevance(ranked_idx, target, db_labels)]).cpu()
    success = hits.double() >= threshold * k - 1e-9
    asr = float(success.double().mean()) if success.numel() else 0.0
    return asr, hits.double() / k
