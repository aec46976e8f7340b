"""Where the numba top-k spends its time: per-query cost of each phase of the kernel, on one thread.

Runs the kernel's own phases on random 64-bit codes (default 500 queries x 50,000 items, top-1000) and prints the
cumulative time per query after each phase: distances (vector popcount into bytes), the guess of the cut from a
contiguous sample, the cut search (counts from vector-compare masks), taking the k best from those masks, and
the select by distance over the k taken; the last line is map_at_k's path, where the k taken are scored against
labels instead of ranked (its "this phase" is counted from the take). Best of 7.

    NUMBA_NUM_THREADS=1 .venv/bin/python benchmarks/retrieval_phases.py
"""
from __future__ import annotations

import argparse
import time

import numpy as np
from numba import njit

from padhash.retrieval import _numba_kernels as kernels
from padhash.retrieval.index import numba_layout

PHASES = ("distances", "+ guess of the cut", "+ cut search", "+ take the k best", "+ select by distance",
          "+ take the k best, then score them (map_at_k, instead of the select)")


@njit
def run_phases(queries, db, k, bits, last_phase, query_labels, db_labels):
    """The kernel's per-query steps for one thread, stopping after phase `last_phase` (0-4); 5 = map_at_k's path:
    phases 0-3, then the taken items scored against packed labels (query_labels (Q, 1), db_labels (1, N))."""
    n_db = db.shape[1]
    dist = np.full((n_db + 63) // 64 * 64, bits, np.int8)  # lanes as HammingIndex keeps 64-bit distances
    buf_idx, buf_dist, order = np.empty(k + 64, np.int64), np.empty(k + 64, np.int8), np.empty(k + 64, np.int64)
    out_dist, out_idx = np.empty(k, np.int32), np.empty(k, np.int64)
    sample = np.ascontiguousarray(db[:, ::max(1, n_db // kernels.SAMPLE)])
    sample_dist = np.full((sample.shape[1] + 63) // 64 * 64, bits, np.int8)
    relevant = np.zeros(k + 64, np.uint8)
    cuts = 0
    for q in range(queries.shape[0]):
        for c0 in range(0, n_db, kernels.DB_CHUNK):
            kernels._chunk_distances(queries[q], db, c0, min(n_db, c0 + kernels.DB_CHUNK), dist)
        if last_phase == 0:
            continue
        guess = kernels._guess_cut(queries[q], sample, n_db, k, bits, sample_dist)
        if last_phase == 1:
            continue
        cut, closer = kernels._find_cut(dist, n_db, bits, k, guess)
        cuts += cut
        if last_phase == 2:
            continue
        kernels._take_best(dist, n_db, k, cut, closer, buf_idx)
        if last_phase == 3:
            continue
        if last_phase == 5:
            kernels._taken_average_precision(dist, k, cut, buf_idx, buf_dist, query_labels[q], db_labels, relevant)
        else:
            kernels._emit(dist, k, cut, buf_idx, buf_dist, order, out_dist, out_idx)
    return cuts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--queries", type=int, default=500)
    ap.add_argument("--database", type=int, default=50_000)
    ap.add_argument("--topk", type=int, default=1000)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    queries = rng.integers(0, 2**63, (args.queries, 1)).astype(np.uint64)
    items = rng.integers(0, 2**63, (args.database, 1)).astype(np.uint64)
    layout = numba_layout()  # as HammingIndex stores them: plane-major uint64 words or byte planes
    if layout == "bytes":
        queries, items = queries.view(np.uint8), items.view(np.uint8)
    db = np.ascontiguousarray(items.T)
    classes = np.uint64(1) << rng.integers(0, 10, args.queries + args.database).astype(np.uint64)  # 10 classes
    query_labels, db_labels = classes[:args.queries, None].copy(), classes[None, args.queries:].copy()
    for phase in range(len(PHASES)):
        run_phases(queries[:2], db, args.topk, 64, phase, query_labels, db_labels)  # compile
    print(f"{args.queries} queries x {args.database} items, 64 bits, top-{args.topk}, one thread (best of 7), "
          f"{layout} layout\n")
    print("| phases run | µs per query | this phase |\n|---|---|---|")
    previous = 0.0
    for phase, name in enumerate(PHASES):
        best = float("inf")
        for _ in range(7):
            start = time.perf_counter()
            run_phases(queries, db, args.topk, 64, phase, query_labels, db_labels)
            best = min(best, (time.perf_counter() - start) / args.queries * 1e6)
        print(f"| {name} | {best:.1f} | {best - previous:.1f} |")
        previous = best if phase < 4 else previous  # the last line replaces the select, from the take's total


if __name__ == "__main__":
    main()
