"""How a backdoor experiment scores one model: MAP@K of clean queries, t-MAP@K and ASR of triggered queries
(CIBA's selection of queries), against the model's own database codes."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from padhash.hashing import encode
from padhash.metrics.ranking import codes_map, triggered_scores
from padhash.retrieval import hamming_distance


@dataclass
class Evaluator:
    """Scores one model: MAP@K of clean queries, t-MAP@K and ASR of triggered queries, against its own database codes."""

    dataset: Any
    eval: Any             # a BackdoorEvalConfig (topk, asr_topk, asr_threshold, drop_empty)
    device: str = "cpu"

    def codes(self, model, images_or_split) -> torch.Tensor:
        return encode(model, images_or_split, device=self.device).cpu()

    def clean_map(self, model, db_codes: torch.Tensor, queries: torch.Tensor | None = None) -> float:
        """MAP@K of the query split (or `queries`: the same images transformed, e.g. JPEG) vs their own labels."""
        ds, e = self.dataset, self.eval
        q_codes = self.codes(model, ds.query if queries is None else queries)
        return codes_map(q_codes, db_codes, ds.query.labels, ds.database.labels, e.topk, drop_empty=e.drop_empty)

    def triggered(self, model, db_codes: torch.Tensor, queries: torch.Tensor, target: torch.Tensor, *,
                  curves: bool = False) -> dict:
        """t-MAP@K and ASR of `queries` (already carrying the trigger) towards the multi-hot `target`; with `curves`
        also their PR curve (Hamming radius) and precision@k towards it (CIBA Fig. 8)."""
        e = self.eval
        return triggered_scores(self.codes(model, queries), db_codes, self.dataset.database.labels, target,
                                topk=e.topk, asr_topk=e.asr_topk, asr_threshold=e.asr_threshold,
                                drop_empty=e.drop_empty, curves=curves)


def triggered_query_indices(query_labels: torch.Tensor, target: torch.Tensor, max_queries: int | None,
                            seed: int) -> torch.Tensor:
    """Queries sharing no label with the target (CIBA's selection), a seeded subset of at most `max_queries`."""
    pool = torch.nonzero(~(query_labels[:, target > 0] > 0).any(1)).flatten()
    if max_queries is not None and len(pool) > max_queries:
        rng = np.random.default_rng(seed)
        pool = pool[torch.as_tensor(np.sort(rng.choice(len(pool), max_queries, replace=False)))]
    return pool


def code_spread(codes: torch.Tensor) -> dict[str, Any]:
    """How far apart a set of ±1 codes lie (CIBA Fig. 4): the distribution of Hamming distances over all distinct
    pairs, as fractions per distance 0..bits, and their mean. Confusing perturbations should spread a class's codes."""
    codes = torch.as_tensor(codes)
    bits, n = codes.shape[1], codes.shape[0]
    if n < 2:
        return {"histogram": [0.0] * (bits + 1), "mean": float("nan")}
    dist = hamming_distance(codes, codes)
    pairs = dist[torch.triu_indices(n, n, offset=1).unbind()]
    counts = torch.bincount(pairs.round().long(), minlength=bits + 1).double()
    return {"histogram": [float(v) for v in counts / counts.sum()], "mean": float(pairs.double().mean())}
