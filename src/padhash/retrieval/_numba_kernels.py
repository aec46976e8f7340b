"""numba kernel for exact Hamming top-k on packed uint64 codes.

A Hamming distance takes only bits+1 values, so the k nearest items in (distance, index) order need no heap and
no sort: per query, count the items at each distance (histogram), find the cut distance where the running count
reaches k, then one pass over the database writes each item with distance <= cut straight to its final slot.
Writing in database order makes ties stable by index by construction. Queries are processed in blocks (one per
thread at a time) so that a chunk of database words stays in cache while the whole block reads it.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange, types
from numba.extending import intrinsic

# Database items per chunk in the distance pass: 4096 items x up to 16 words fits in L2 beside the block's rows.
_DB_CHUNK = 4096


@intrinsic
def _popcount64(typingctx, x):
    """LLVM ctpop: one POPCNT instruction (or its SIMD form when the loop vectorizes)."""
    if x != types.uint64:
        return None

    def codegen(context, builder, signature, args):
        return builder.ctpop(args[0])

    return types.uint64(types.uint64), codegen


@njit(cache=True, nogil=True)
def _distances_block(queries, db, q0, q1, dist):
    """dist[i, j] = Hamming(queries[q0 + i], db[j]) for the query block, database read chunk by chunk."""
    n_db, n_words = db.shape
    for c0 in range(0, n_db, _DB_CHUNK):
        c1 = min(n_db, c0 + _DB_CHUNK)
        for i in range(q1 - q0):
            row = dist[i]
            if n_words == 1:
                qw = queries[q0 + i, 0]
                for j in range(c0, c1):
                    row[j] = _popcount64(qw ^ db[j, 0])
            else:
                for j in range(c0, c1):
                    acc = np.uint64(0)
                    for w in range(n_words):
                        acc += _popcount64(queries[q0 + i, w] ^ db[j, w])
                    row[j] = acc


@njit(cache=True, nogil=True)
def _select_row(row, k, max_dist, hist, offsets, out_dist, out_idx):
    """Counting select of the k smallest (distance, index) pairs of one distance row, written in order."""
    hist[:] = 0
    for j in range(row.shape[0]):
        hist[row[j]] += 1
    cut = 0
    below = 0  # items strictly closer than `cut`
    while below + hist[cut] < k:
        below += hist[cut]
        cut += 1
    position = 0
    for d in range(cut + 1):
        offsets[d] = position
        position += hist[d]
    placed = 0
    for j in range(row.shape[0]):
        d = row[j]
        if d <= cut:
            slot = offsets[d]
            if slot < k:
                out_dist[slot] = d
                out_idx[slot] = j
                offsets[d] = slot + 1
                placed += 1
                if placed == k:
                    break


@njit(parallel=True, cache=True)
def hamming_topk_packed(queries, db, k, max_dist, block, out_dist, out_idx):
    """Exact top-k for every query; queries/db are (n, words) uint64, outputs (Q, k) int32 / int64."""
    n_queries = queries.shape[0]
    n_db = db.shape[0]
    n_blocks = (n_queries + block - 1) // block
    for b in prange(n_blocks):
        q0 = b * block
        q1 = min(n_queries, q0 + block)
        dist = np.empty((q1 - q0, n_db), np.uint16)
        hist = np.empty(max_dist + 1, np.int64)
        offsets = np.empty(max_dist + 1, np.int64)
        _distances_block(queries, db, q0, q1, dist)
        for i in range(q1 - q0):
            _select_row(dist[i], k, max_dist, hist, offsets, out_dist[q0 + i], out_idx[q0 + i])
