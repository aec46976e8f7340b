"""numba kernels: exact Hamming top-k on packed uint64 codes, and AP / hit counts of rankings.

Top-k without heap or sort. A Hamming distance takes only bits+1 values and we scan the database in index
order, so for one query we keep:
- ``bound``: the smallest distance t such that >= k accepted items lie at distance <= t. Every later item at
  distance >= bound ranks after k earlier items (ties go to the smaller index), so it can never enter the top k:
  the scan accepts an item only when its distance is < bound, one compare per item;
- the accepted items in index order, with a histogram of their distances.
At the end a counting select (offsets per distance) writes each accepted item with distance < bound, then the
first k - below items at distance == bound, straight to its final slot: sorted by distance, ties by index, by
construction. If the buffer of accepted items fills up it is compacted to exactly k items the same way, so
memory per query is O(k). Queries are handled in blocks, one block per thread at a time, and each block scans the
database chunk by chunk so the chunk stays in cache while every query of the block reads it.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange, types
from numba.extending import intrinsic

# Database items per chunk: 8192 items x 1 word = 64 KiB, read by every query of a block while in L2.
DB_CHUNK = 8192


@intrinsic
def _popcount64(typingctx, x):
    """LLVM ctpop: one POPCNT instruction. Returns int64 so comparisons with int64 never go through float."""
    if x != types.uint64:
        return None

    def codegen(context, builder, signature, args):
        return builder.ctpop(args[0])

    return types.int64(types.uint64), codegen


@njit(cache=True, nogil=True, inline="always")
def _accept(j, d, k, hist, buf_idx, buf_dist, n, bound, below):
    """Record item j at distance d (< bound) and lower the bound while >= k items lie below it."""
    buf_idx[n] = j
    buf_dist[n] = d
    hist[d] += 1
    below += 1
    while below >= k:
        bound -= 1
        below -= hist[bound]
    return n + 1, bound, below


@njit(cache=True, nogil=True)
def _next_candidate(query, db, start, stop, bound):
    """First database item in [start, stop) closer than ``bound``, or ``stop``.

    The hot loop of the search: kept tiny, with unsigned indices so numba emits no negative-index wraparound.
    """
    if db.shape[1] == 1:
        qw = query[0]
        for j in range(np.uint64(start), np.uint64(stop)):
            if _popcount64(qw ^ db[j, 0]) < bound:
                return np.int64(j)
    else:
        for j in range(np.uint64(start), np.uint64(stop)):
            d = 0
            for w in range(db.shape[1]):
                d += _popcount64(query[w] ^ db[j, w])
            if d < bound:
                return np.int64(j)
    return stop


@njit(cache=True, nogil=True)
def _scan_chunk(query, db, c0, c1, k, hist, buf_idx, buf_dist, n, bound, below):
    """Scan database items c0..c1-1 for one query; returns the updated (n, bound, below)."""
    capacity = buf_idx.shape[0]
    j = _next_candidate(query, db, c0, c1, bound)
    while j < c1:
        d = 0
        for w in range(db.shape[1]):
            d += _popcount64(query[w] ^ db[j, w])
        if n == capacity:
            n = _compact(k, hist, buf_idx, buf_dist, n, bound, below)
        n, bound, below = _accept(j, d, k, hist, buf_idx, buf_dist, n, bound, below)
        j = _next_candidate(query, db, j + 1, c1, bound)
    return n, bound, below


@njit(cache=True, nogil=True)
def _compact(k, hist, buf_idx, buf_dist, n, bound, below):
    """Keep, in index order, the accepted items that can still be in the top k; returns the new count."""
    keep_at_bound = k - below
    kept = 0
    for i in range(n):
        d = buf_dist[i]
        if d < bound or (d == bound and keep_at_bound > 0):
            if d == bound:
                keep_at_bound -= 1
            buf_idx[kept] = buf_idx[i]
            buf_dist[kept] = d
            kept += 1
    hist[bound] = k - below
    hist[bound + 1:] = 0
    return kept


@njit(cache=True, nogil=True)
def _emit(k, hist, buf_idx, buf_dist, n, bound, below, offsets, out_dist, out_idx):
    """Counting select: write the top k of the buffer in (distance, index) order."""
    position = 0
    for d in range(bound + 1):
        offsets[d] = position
        position += hist[d]
    for i in range(n):
        d = buf_dist[i]
        if d <= bound:
            slot = offsets[d]
            if slot < k:
                out_dist[slot] = d
                out_idx[slot] = buf_idx[i]
                offsets[d] = slot + 1


@njit(parallel=True, cache=True)
def hamming_topk_packed(queries, db, k, bits, block, capacity, out_dist, out_idx):
    """Exact top-k of every query; queries / db are (n, words) uint64; outputs (Q, k) int32 / int64."""
    n_queries = queries.shape[0]
    n_db = db.shape[0]
    n_blocks = (n_queries + block - 1) // block
    for b in prange(n_blocks):
        q0 = b * block
        nb = min(n_queries, q0 + block) - q0
        hist = np.zeros((nb, bits + 2), np.int64)
        buf_idx = np.empty((nb, capacity), np.int64)
        buf_dist = np.empty((nb, capacity), np.uint16)
        offsets = np.empty(bits + 2, np.int64)
        count = np.zeros(nb, np.int64)
        bound = np.full(nb, bits + 1, np.int64)
        below = np.zeros(nb, np.int64)
        for c0 in range(0, n_db, DB_CHUNK):
            c1 = min(n_db, c0 + DB_CHUNK)
            for i in range(nb):
                count[i], bound[i], below[i] = _scan_chunk(
                    queries[q0 + i], db, c0, c1, k, hist[i], buf_idx[i], buf_dist[i], count[i], bound[i], below[i])
        for i in range(nb):
            _emit(k, hist[i], buf_idx[i], buf_dist[i], count[i], bound[i], below[i], offsets,
                  out_dist[q0 + i], out_idx[q0 + i])


@njit(parallel=True, cache=True)
def ranking_ap_hits(ranked_idx, query_masks, db_masks):
    """Per query: AP over its ranking (DeepHash convention) and the number of relevant items in it.

    Labels are packed bit masks (n, words) uint64; relevant = the masks share a bit.
    """
    n_queries, k = ranked_idx.shape
    n_words = db_masks.shape[1]
    ap = np.zeros(n_queries, np.float64)
    hits = np.zeros(n_queries, np.int64)
    for q in prange(n_queries):
        found = 0
        precision_sum = 0.0
        for r in range(k):
            j = ranked_idx[q, r]
            relevant = False
            for w in range(n_words):
                if query_masks[q, w] & db_masks[j, w]:
                    relevant = True
            if relevant:
                found += 1
                precision_sum += found / (r + 1.0)
        hits[q] = found
        if found:
            ap[q] = precision_sum / found
    return ap, hits
