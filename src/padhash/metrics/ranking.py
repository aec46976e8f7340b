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

from typing import Any

import numpy as np
import torch

from padhash.errors import PadhashError
from padhash.retrieval import HammingIndex, check_codes, hamming_distance
from padhash.retrieval._numba_kernels import ranking_ap_hits

# Queries x ranked items searched at once by map_at_k / t_map_at_k: bounds memory (k = whole database included).
# 2^22 = 48 MiB of results; in benchmarks/retrieval.py's setting blocks of 2^19..2^23 were within ~10% of each
# other (larger ones amortize each search call's fixed costs).
_SEARCH_BLOCK_ELEMENTS = 1 << 22
# Queries x database items of distances held at once by pr_curve.
_PR_BLOCK_ELEMENTS = 1 << 23


def _labels(labels, name: str) -> torch.Tensor:
    labels = torch.as_tensor(labels)
    if labels.dim() != 2:
        raise PadhashError(f"{name}: expected multi-hot labels of shape (N, C), got {tuple(labels.shape)}")
    return labels.float()


def _label_masks(labels: torch.Tensor) -> np.ndarray:
    """Multi-hot labels (N, C) -> bit masks (N, ceil(C/64)) uint64, so relevance is one AND per word."""
    bits = (labels > 0).cpu().numpy()
    n, n_classes = bits.shape
    # Rows padded to whole words, then one packbits over the flat array (row by row is ~3x slower for short rows).
    padded = np.zeros((n, -(-n_classes // 64) * 64), np.bool_)
    padded[:, :n_classes] = bits
    return np.packbits(padded, bitorder="little").view(np.uint64).reshape(n, padded.shape[1] // 64)


def _query_targets(target_labels, n_queries: int, n_classes: int, name: str) -> torch.Tensor:
    """Target labels as (Q, C): a single (C,) vector is shared by every query."""
    target = torch.as_tensor(target_labels).float()
    if target.dim() == 1:
        target = target.unsqueeze(0).expand(n_queries, -1)
    if target.shape != (n_queries, n_classes):
        raise PadhashError(f"{name}: expected shape ({n_queries}, {n_classes}) or ({n_classes},), got {tuple(target.shape)}")
    return target


def _checked_labels(query_labels, db_labels) -> tuple[torch.Tensor, torch.Tensor]:
    query_labels = _labels(query_labels, "query labels")
    db_labels = _labels(db_labels, "database labels")
    if db_labels.shape[1] != query_labels.shape[1]:
        raise PadhashError(f"query labels have {query_labels.shape[1]} classes but database labels {db_labels.shape[1]}")
    return query_labels, db_labels


def _ranking_aps(ranked_idx, query_masks: np.ndarray, db_masks: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-query AP and hits of rankings, labels already packed by :func:`_label_masks`."""
    ranked_idx = torch.as_tensor(ranked_idx)
    n_queries, n_db = query_masks.shape[0], db_masks.shape[0]
    if ranked_idx.dim() != 2 or ranked_idx.shape[0] != n_queries:
        raise PadhashError(f"ranked indices: expected shape ({n_queries}, k), got {tuple(ranked_idx.shape)}")
    ranked = np.ascontiguousarray(ranked_idx.cpu().numpy().astype(np.int64, copy=False))
    ap, hits, valid = ranking_ap_hits(ranked, query_masks, db_masks)
    if not valid.all():
        raise PadhashError(f"ranked indices must lie in [0, {n_db}) (the database size)")
    return torch.from_numpy(ap), torch.from_numpy(hits)


def average_precisions(ranked_idx, query_labels, db_labels) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-query AP over the given rankings (float64 (Q,)) and number of relevant items in them (int64 (Q,))."""
    query_labels, db_labels = _checked_labels(query_labels, db_labels)
    return _ranking_aps(ranked_idx, _label_masks(query_labels), _label_masks(db_labels))


def _mean_ap(aps: torch.Tensor, hits: torch.Tensor, drop_empty: bool) -> float:
    if drop_empty:
        aps = aps[hits > 0]
    return float(aps.mean()) if aps.numel() else 0.0


def mean_average_precision(ranked_idx, query_labels, db_labels, *, drop_empty: bool = False) -> float:
    """mAP of the given rankings (DeepHash convention; ``drop_empty`` = DHTA/CIBA convention).

    With ``drop_empty=True`` and no query having any relevant item retrieved, the mean is over no query: 0.0.
    """
    return _mean_ap(*average_precisions(ranked_idx, query_labels, db_labels), drop_empty)


def _blocked_average_precisions(query_codes, db_codes, query_labels, db_labels, k, backend):
    """Search and score in query blocks: (block, k) rankings bound memory even for k = whole database."""
    queries = check_codes(query_codes, "query codes")
    index = HammingIndex(db_codes, backend)
    k = len(index) if k is None else k
    query_labels, db_labels = _checked_labels(query_labels, db_labels)
    if query_labels.shape[0] != queries.shape[0]:
        raise PadhashError(f"{queries.shape[0]} query codes but {query_labels.shape[0]} query label rows")
    if db_labels.shape[0] != len(index):
        raise PadhashError(f"{len(index)} database codes but {db_labels.shape[0]} database label rows")
    query_masks, db_masks = _label_masks(query_labels), _label_masks(db_labels)
    block = max(1, _SEARCH_BLOCK_ELEMENTS // max(1, min(k, len(index))))
    aps, hits = [], []
    for q0 in range(0, queries.shape[0], block):
        ap, hit = index.average_precisions(queries[q0:q0 + block], k, query_masks[q0:q0 + block], db_masks)
        aps.append(torch.from_numpy(ap))
        hits.append(torch.from_numpy(hit))
    if not aps:  # no queries
        return torch.zeros(0, dtype=torch.float64), torch.zeros(0, dtype=torch.int64)
    return torch.cat(aps), torch.cat(hits)


def map_at_k(query_codes, db_codes, query_labels, db_labels, k: int | None = None, *, drop_empty: bool = False,
             backend: str = "auto") -> float:
    """mAP@k of Hamming ranking (k None = the whole database)."""
    return _mean_ap(*_blocked_average_precisions(query_codes, db_codes, query_labels, db_labels, k, backend),
                    drop_empty)


def t_map_at_k(query_codes, db_codes, target_labels, db_labels, k: int | None = None, *, drop_empty: bool = False,
               backend: str = "auto") -> float:
    """Targeted mAP@k: mAP with each query's label replaced by the target label ((Q, C) or one (C,) vector)."""
    n_queries = check_codes(query_codes, "query codes").shape[0]
    target = _query_targets(target_labels, n_queries, _labels(db_labels, "database labels").shape[1], "target labels")
    return _mean_ap(*_blocked_average_precisions(query_codes, db_codes, target, db_labels, k, backend), drop_empty)


def precision_at_k(ranked_idx, query_labels, db_labels) -> float:
    """Mean over queries of the fraction of relevant items among the ranked ones (k = ranked_idx.shape[1])."""
    _, hits = average_precisions(ranked_idx, query_labels, db_labels)
    k = torch.as_tensor(ranked_idx).shape[1]
    return float((hits.double() / k).mean()) if hits.numel() and k else 0.0


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
    block = max(1, _PR_BLOCK_ELEMENTS // max(1, n_db))
    for q0 in range(0, queries.shape[0], block):
        q1 = min(queries.shape[0], q0 + block)
        dist = hamming_distance(queries[q0:q1], db)
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


# When a retrieved item "carries" a target label vector y_t (PADHASH Table VII on multi-label data): `any` = it shares
# >= 1 of y_t's labels (DeepHash relevance), `all` = it has every label of y_t (y ⊇ y_t), `exact` = its label vector
# is y_t (Algorithm 1's target images D_t = {(x_i, y_t)}). For one-hot targets on single-label data all three agree.
ASR_MATCHES = ("any", "all", "exact")


def carries_target(labels, target, match: str = "any") -> torch.Tensor:
    """Bool tensor: whether each row of multi-hot `labels` (..., C) carries `target` (broadcast to it) by `match`."""
    if match not in ASR_MATCHES:
        raise PadhashError(f"target match {match!r} is not one of {', '.join(ASR_MATCHES)}")
    have, want = torch.as_tensor(labels) > 0, torch.as_tensor(target) > 0
    if match == "any":
        return (have & want).any(-1)
    if match == "all":
        return (have | ~want).all(-1)
    return (have == want).all(-1)


def asr_at_k(ranked_idx, db_labels, target_labels, *, threshold: float = 0.3,
             match: str = "any") -> tuple[float, torch.Tensor]:
    """Attack success rate (PADHASH): a query succeeds when MORE than ``threshold`` of its top k carry the target
    label (the paper's "more than 30 %", strictly).

    ``target_labels`` is (Q, C) or one (C,) vector; whether an item carries a multi-hot target is ``match``
    (``ASR_MATCHES``: any / all / exact; ``any`` = shares >= 1 of its positives). Returns (ASR, per-query fractions
    (Q,) float64). The comparison is done on counts (hits > threshold * k, with a 1e-9 allowance for float
    rounding) so 12 of 40 does NOT pass a 0.3 threshold, 13 does.
    """
    if not 0.0 <= threshold <= 1.0:
        raise PadhashError(f"ASR threshold must lie in [0, 1], got {threshold}")
    if match not in ASR_MATCHES:
        raise PadhashError(f"ASR match {match!r} is not one of {', '.join(ASR_MATCHES)}")
    ranked_idx = torch.as_tensor(ranked_idx)
    db_labels = _labels(db_labels, "database labels")
    if ranked_idx.dim() != 2:
        raise PadhashError(f"ranked indices: expected shape (Q, k), got {tuple(ranked_idx.shape)}")
    target = _query_targets(target_labels, ranked_idx.shape[0], db_labels.shape[1], "target labels")
    k = ranked_idx.shape[1]
    if k == 0:
        raise PadhashError("ASR needs at least one retrieved item per query (k >= 1)")
    if match == "any":
        _, hits = average_precisions(ranked_idx, target, db_labels)
    else:
        if ranked_idx.numel() and not 0 <= int(ranked_idx.min()) <= int(ranked_idx.max()) < len(db_labels):
            raise PadhashError(f"ranked indices: must lie in 0..{len(db_labels) - 1}")
        hits = carries_target(db_labels[ranked_idx.long()], target[:, None, :], match).sum(1)
    success = hits.double() > threshold * k + 1e-9
    asr = float(success.double().mean()) if success.numel() else 0.0
    return asr, hits.double() / k


PRECISION_KS = (1, 5, 10, 20, 50, 100, 200, 500, 1000)  # the precision@k curve's k


def retrieval_metrics(query_codes, db_codes, eval_labels, db_labels, topk: int | None, *, drop_empty=False,
                      curves: bool = True) -> dict[str, Any]:
    """MAP@K of `query_codes` against `eval_labels` (target labels → t-MAP), precision@k and the PR curve."""
    from padhash.retrieval import hamming_topk

    k = len(db_codes) if topk is None else min(topk, len(db_codes))
    _, ranked = hamming_topk(query_codes, db_codes, k)
    out: dict[str, Any] = {"map_at_k": mean_average_precision(ranked[:, :k], eval_labels, db_labels,
                                                              drop_empty=drop_empty),
                           "precision_at_10": precision_at_k(ranked[:, :min(10, k)], eval_labels, db_labels)}
    if curves:
        out.update(retrieval_curves(query_codes, db_codes, eval_labels, db_labels, ranked))
    return out


def retrieval_curves(query_codes, db_codes, eval_labels, db_labels, ranked) -> dict[str, Any]:
    """The PR curve (Hamming radius) and precision@k for the PRECISION_KS within the ranking `ranked` (Q, k)."""
    precision, recall = pr_curve(query_codes, db_codes, eval_labels, db_labels)
    ks = [c for c in PRECISION_KS if c <= ranked.shape[1]]
    return {"pr_curve": {"precision": [float(v) for v in precision], "recall": [float(v) for v in recall]},
            "precision_curve": {"k": ks, "precision": [precision_at_k(ranked[:, :c], eval_labels, db_labels)
                                                       for c in ks]}}


def _ranked(query_codes, db_codes, k: int | None) -> torch.Tensor:
    from padhash.retrieval import hamming_topk

    k = len(db_codes) if k is None else min(k, len(db_codes))
    return hamming_topk(query_codes, db_codes, k)[1]


def codes_map(query_codes, db_codes, query_labels, db_labels, topk: int | None, *, drop_empty=False) -> float:
    """MAP@K (None = all) of ±1 query codes against database codes, relevance by shared label."""
    return mean_average_precision(_ranked(query_codes, db_codes, topk), query_labels, db_labels, drop_empty=drop_empty)


def triggered_scores(query_codes, db_codes, db_labels, target, *, topk: int | None, asr_topk: int,
                     asr_threshold: float, drop_empty=False, curves: bool = False) -> dict[str, Any]:
    """t-MAP@K and ASR@asr_topk of codes of queries carrying a trigger, towards the multi-hot `target` (CIBA); with
    `curves` also their PR curve and precision@k towards it (CIBA Fig. 8) as `pr_target` / `precision_curve_target`."""
    targets = target.expand(len(query_codes), -1)
    ranked = _ranked(query_codes, db_codes, topk)
    t_map = mean_average_precision(ranked, targets, db_labels, drop_empty=drop_empty)
    asr, _ = asr_at_k(_ranked(query_codes, db_codes, asr_topk), db_labels, target, threshold=asr_threshold)
    out: dict[str, Any] = {"t_map": float(t_map), "asr": float(asr)}
    if curves:
        c = retrieval_curves(query_codes, db_codes, targets, db_labels, ranked)
        out.update(pr_target=c["pr_curve"], precision_curve_target=c["precision_curve"])
    return out

