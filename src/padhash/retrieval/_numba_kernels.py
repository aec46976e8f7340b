"""numba kernels: exact Hamming top-k on packed uint64 codes, and AP / hit counts of rankings.

Top-k without heap or sort: a Hamming distance takes only bits+1 values. Per query:
1. a strided sample of the database gives a distance histogram and from it a guess ``bound`` that leaves
   somewhat more than k items at distance < bound;
2. one scan in database order keeps the items closer than ``bound`` in a buffer (the hot loop is
   load/xor/popcount/compare; the branch is rarely taken). If the buffer fills up it is compacted to the k best
   and ``bound`` drops to their cut distance: every later item at that distance ranks after them (ties go to the
   smaller index), so only strictly closer items can still enter;
3. if fewer than k items passed a guessed bound (a poor sample), the query is scanned again with no bound;
4. a counting select over the buffer (histogram, cut distance, offsets) writes each item straight to its final
   slot. The buffer is in database order, so ties come out by index, by construction.
Queries are handled in blocks, one block per thread at a time, and each block scans the database chunk by chunk
so the chunk stays in cache while every query of the block reads it. Memory per query is O(k).
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit, prange, types
from numba.extending import intrinsic

# Database items per chunk: 8192 items x 1 word = 64 KiB, read by every query of a block while in L2.
DB_CHUNK = 8192
# Items sampled per query to guess the bound.
SAMPLE = 1024


@intrinsic
def _popcount64(typingctx, x):
    """LLVM ctpop: one POPCNT instruction. Returns int64 so comparisons with int64 never go through float."""
    if x != types.uint64:
        return None

    def codegen(context, builder, signature, args):
        return builder.ctpop(args[0])

    return types.int64(types.uint64), codegen


@njit(cache=True, nogil=True, inline="always")
def _distance(query, db, j):
    d = 0
    for w in range(db.shape[1]):
        d += _popcount64(query[w] ^ db[j, w])
    return d


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
            if _distance(query, db, j) < bound:
                return np.int64(j)
    return stop


@njit(cache=True, nogil=True)
def _guess_bound(query, db, k, hist):
    """A bound with, by the sample, comfortably more than k database items closer than it (bits+1 = none)."""
    n_db = db.shape[0]
    bits_plus_one = hist.shape[0] - 1
    if n_db <= 4 * SAMPLE:
        return bits_plus_one
    hist[:] = 0
    step = n_db // SAMPLE
    for i in range(SAMPLE):
        hist[_distance(query, db, i * step)] += 1
    expected = k * SAMPLE / n_db
    wanted = expected + 3.0 * math.sqrt(expected) + 1.0
    seen = 0
    for d in range(bits_plus_one):
        seen += hist[d]
        if seen >= wanted:
            return d + 1
    return bits_plus_one


@njit(cache=True, nogil=True)
def _cut(k, hist, bits_plus_one):
    """(cut, below): the smallest distance with >= k items at or below it, and the count strictly below it."""
    below = 0
    cut = 0
    while cut < bits_plus_one and below + hist[cut] < k:
        below += hist[cut]
        cut += 1
    return cut, below


@njit(cache=True, nogil=True)
def _compact(k, hist, buf_idx, buf_dist, n, bound):
    """Keep, in database order, the k best of the buffer (which holds >= k items below ``bound``)."""
    cut, below = _cut(k, hist, bound)
    keep_at_cut = k - below
    kept = 0
    for i in range(n):
        d = buf_dist[i]
        if d < cut or (d == cut and keep_at_cut > 0):
            if d == cut:
                keep_at_cut -= 1
            buf_idx[kept] = buf_idx[i]
            buf_dist[kept] = d
            kept += 1
    hist[cut] = k - below
    hist[cut + 1:] = 0
    return kept


@njit(cache=True, nogil=True)
def _scan(query, db, c0, c1, k, hist, buf_idx, buf_dist, n, bound, below):
    """Buffer the items of c0..c1-1 closer than ``bound``; returns the updated (n, bound, below).

    ``below`` counts buffered items closer than ``bound``; once it reaches k the bound drops: a later item at
    the new bound ranks after k buffered items with smaller indices.
    """
    capacity = buf_idx.shape[0]
    j = _next_candidate(query, db, c0, c1, bound)
    while j < c1:
        if n == capacity:
            n = _compact(k, hist, buf_idx, buf_dist, n, bound)
        d = _distance(query, db, j)
        buf_idx[n] = j
        buf_dist[n] = d
        n += 1
        hist[d] += 1
        below += 1
        while below >= k:
            bound -= 1
            below -= hist[bound]
        j = _next_candidate(query, db, j + 1, c1, bound)
    return n, bound, below


@njit(cache=True, nogil=True)
def _emit(k, hist, buf_idx, buf_dist, n, bound, offsets, out_dist, out_idx):
    """Counting select: write the k best of the buffer in (distance, index) order."""
    cut, _ = _cut(k, hist, bound + 1)
    position = 0
    for d in range(cut + 1):
        offsets[d] = position
        position += hist[d]
    for i in range(n):
        d = buf_dist[i]
        if d <= cut:
            slot = offsets[d]
            if slot < k:
                out_dist[slot] = d
                out_idx[slot] = buf_idx[i]
                offsets[d] = slot + 1


@njit(parallel=True, cache=True)
def hamming_topk_packed(queries, db, k, bits, block, capacity, out_dist, out_idx):
    """Exact top-k of every query; queries / db are (n, words) uint64; outputs (Q, k) int32 / int64.

    Needs k <= len(db) and capacity >= min(len(db), k + 1).
    """
    n_queries = queries.shape[0]
    n_db = db.shape[0]
    n_blocks = (n_queries + block - 1) // block
    for b in prange(n_blocks):
        q0 = b * block
        nb = min(n_queries, q0 + block) - q0
        hist = np.zeros((nb, bits + 2), np.int64)
        offsets = np.empty(bits + 2, np.int64)
        buf_idx = np.empty((nb, capacity), np.int64)
        buf_dist = np.empty((nb, capacity), np.uint16)
        count = np.zeros(nb, np.int64)
        bound = np.empty(nb, np.int64)
        below = np.zeros(nb, np.int64)
        for i in range(nb):
            bound[i] = _guess_bound(queries[q0 + i], db, k, hist[i])
        hist[:] = 0
        for c0 in range(0, n_db, DB_CHUNK):
            c1 = min(n_db, c0 + DB_CHUNK)
            for i in range(nb):
                count[i], bound[i], below[i] = _scan(queries[q0 + i], db, c0, c1, k, hist[i], buf_idx[i],
                                                     buf_dist[i], count[i], bound[i], below[i])
        for i in range(nb):
            if count[i] < k:  # the guessed bound let fewer than k through: scan again without one
                hist[i] = 0
                count[i], bound[i], below[i] = _scan(queries[q0 + i], db, 0, n_db, k, hist[i], buf_idx[i],
                                                     buf_dist[i], 0, bits + 1, 0)
            _emit(k, hist[i], buf_idx[i], buf_dist[i], count[i], bound[i], offsets, out_dist[q0 + i],
                  out_idx[q0 + i])


@njit(parallel=True, cache=True)
def ranking_ap_hits(ranked_idx, query_masks, db_masks):
    """Per query: AP over its ranking (DeepHash convention), the number of relevant items in it, and whether
    every ranked index was a valid database index (checked here to save two passes over the ranking).

    Labels are packed bit masks (n, words) uint64; relevant = the masks share a bit.
    """
    n_queries, k = ranked_idx.shape
    n_db, n_words = db_masks.shape
    ap = np.zeros(n_queries, np.float64)
    hits = np.zeros(n_queries, np.int64)
    valid = np.ones(n_queries, np.bool_)
    for q in prange(n_queries):
        found = 0
        precision_sum = 0.0
        for r in range(k):
            j = ranked_idx[q, r]
            if j < 0 or j >= n_db:
                valid[q] = False
                break
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
    return ap, hits, valid
