"""numba kernels: exact Hamming top-k on packed uint64 codes, and AP / hit counts of rankings.

Top-k without heap or sort: a Hamming distance takes only bits+1 values. Per block of queries:
1. the distances of every query of the block to every database item go into a small-integer array (one byte per
   item up to 128 bits, two bytes up to 32768), chunk by chunk so a database chunk stays in cache while every query
   of the block reads it. This loop has no branch and LLVM vectorizes it (vector popcount);
2. per query, the cut distance (the smallest d with >= k items at distance <= d) is found by counting the items
   closer than a few candidate bounds, starting from a guess made on a strided sample. Each count reads the
   distances a 64-bit word at a time with a SWAR compare (no branch per item), which is also vectorized;
3. one pass in database order takes every item closer than the cut and, of the items at the cut, the first
   k - (number closer) (ties go to the smaller index): exactly k items, each located with a trailing-zero count;
4. a counting select (histogram, offsets) writes each of them straight to its final slot in (distance, index)
   order. The pass is in database order, so ties come out by index, by construction.
Memory per block: one small integer per (query, database item) of the block, plus O(k) per query.
"""
from __future__ import annotations

import math

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.extending import intrinsic

# Database items per chunk: 8192 items x 1 word = 64 KiB, read by every query of a block while in L2.
DB_CHUNK = 8192
# Items sampled per query to guess the cut.
SAMPLE = 1024


@intrinsic
def _popcount64(typingctx, x):
    """LLVM ctpop: one POPCNT instruction. Returns int64 so comparisons with int64 never go through float."""
    if x != types.uint64:
        return None

    def codegen(context, builder, signature, args):
        return builder.ctpop(args[0])

    return types.int64(types.uint64), codegen


@intrinsic
def _trailing_zeros64(typingctx, x):
    """LLVM cttz (TZCNT) of a uint64, as int64; 64 for 0."""
    if x != types.uint64:
        return None

    def codegen(context, builder, signature, args):
        return builder.cttz(args[0], ir.Constant(ir.IntType(1), 0))

    return types.int64(types.uint64), codegen


@njit(cache=True, nogil=True)
def _chunk_distances(query, db, c0, c1, dist):
    """dist[j] = Hamming distance of query to item j, for j in [c0, c1); db is word-major (words, n).

    Contiguous words, unsigned indices and no branch: LLVM vectorizes it (vector popcount).
    """
    n = np.uint64(c1 - c0)
    for w in range(db.shape[0]):
        words = db[w, c0:c1]
        out = dist[c0:c1]
        qw = query[w]
        if w == 0:
            for j in range(np.uint64(0), n):
                out[j] = _popcount64(qw ^ words[j])
        else:
            for j in range(np.uint64(0), n):
                out[j] += _popcount64(qw ^ words[j])


@njit(cache=True, nogil=True)
def _lanes(dist):
    """SWAR constants for distances stored as ``dist``'s dtype: (lanes per word, lane bits, ones, top, half, gather).

    For a lane holding d <= bits <= half and a bound 1 <= b <= bits, d + half - b fits the lane and has its top
    bit clear exactly when d < b, so no lane carries into the next. ``gather`` multiplies the lanes' bits (shifted
    down to each lane's lowest bit) into the top lane-count bits of the word (a "movemask").
    """
    lane_bits = dist.itemsize * 8
    ones = np.uint64(0xFFFFFFFFFFFFFFFF) // np.uint64((1 << lane_bits) - 1)
    gather = np.uint64(0x0102040810204080) if lane_bits == 8 else np.uint64(0x0001000200040008)
    return 64 // lane_bits, lane_bits, ones, ones << np.uint64(lane_bits - 1), 1 << (lane_bits - 1), gather


@njit(cache=True, nogil=True)
def _count_closer(dist, n_items, bits, bound):
    """How many of the first n_items distances are < bound (lanes past n_items hold ``bits``: never counted)."""
    if bound > bits:
        return n_items
    if bound <= 0:
        return 0
    lanes, _, ones, top, half, _ = _lanes(dist)
    words = dist.view(np.uint64)
    add = ones * np.uint64(half - bound)
    total = 0
    for g in range(np.uint64(0), np.uint64((n_items + lanes - 1) // lanes)):
        total += _popcount64(~(words[g] + add) & top)
    return total


@njit(cache=True, nogil=True)
def _guess_cut(query, db, k, bits):
    """The distance at the k/N quantile of a strided sample of the database: where the cut search starts."""
    n_db = db.shape[1]
    hist = np.zeros(bits + 1, np.int64)
    step = max(1, n_db // SAMPLE)
    n_sample = 0
    for j in range(0, n_db, step):
        d = 0
        for w in range(db.shape[0]):
            d += _popcount64(query[w] ^ db[w, j])
        hist[d] += 1
        n_sample += 1
    wanted = k * n_sample / n_db
    seen = 0
    for d in range(bits + 1):
        seen += hist[d]
        if seen >= wanted:
            return d
    return bits


@njit(cache=True, nogil=True)
def _find_cut(dist, n_items, bits, k, guess):
    """(cut, closer): the smallest d with >= k items at distance <= d, and the number of items at distance < d."""
    cut = guess
    while _count_closer(dist, n_items, bits, cut + 1) < k:
        cut += 1
    closer = _count_closer(dist, n_items, bits, cut)
    while closer >= k:
        cut -= 1
        closer = _count_closer(dist, n_items, bits, cut)
    return cut, closer


@njit(cache=True, nogil=True)
def _closer_masks(dist, n_items, bits, bound, masks):
    """masks[w], bit t: item w * lanes + t (of the first n_items) is closer than ``bound``; one byte per word of
    distances, so 8 bytes read as one uint64 cover a group of 8 words. Branch-free: LLVM vectorizes it."""
    lanes, lane_bits, ones, top, half, gather = _lanes(dist)
    words = dist.view(np.uint64)
    n_words = (n_items + lanes - 1) // lanes
    if bound <= 0:
        masks[:] = 0
        return
    if bound > bits:
        masks[:n_words] = (1 << lanes) - 1
    else:
        add = ones * np.uint64(half - bound)
        to_lowest, to_top = np.uint64(lane_bits - 1), np.uint64(64 - lane_bits)
        for g in range(np.uint64(0), np.uint64(n_words)):
            masks[g] = (((~(words[g] + add) & top) >> to_lowest) * gather) >> to_top
    masks[n_words:] = 0
    masks[n_words - 1] &= (1 << (n_items - (n_words - 1) * lanes)) - 1


@njit(cache=True, nogil=True)
def _take_best(dist, n_items, bits, k, cut, closer, masks_le, masks_lt, buf_idx):
    """Into ``buf_idx``, in database order: every item closer than ``cut`` and the first k - closer items at the
    cut. Reads 64 mask bits (a group of 8 words) at a time and takes the first 4 set bits of a group without a
    branch (a group holds ~1-2 on average), so the loop branches about once per group, not once per item.
    ``dist`` needs one spare group of padding: an empty slot's trailing-zero count (64) points there."""
    lanes = 8 // dist.itemsize
    _closer_masks(dist, n_items, bits, cut + 1, masks_le)
    _closer_masks(dist, n_items, bits, cut, masks_lt)
    groups_le, groups_lt = masks_le.view(np.uint64), masks_lt.view(np.uint64)
    at_cut = k - closer  # items at the cut still to take
    n = 0
    for g in range(groups_le.shape[0]):
        if at_cut > 0:
            ties = groups_le[g] & ~groups_lt[g]
            n_ties = _popcount64(ties)
            if n_ties > at_cut:  # the cut's last tie group: keep its first at_cut items (smallest indices)
                kept = np.uint64(0)
                for _ in range(at_cut):
                    lowest = ties & (~ties + np.uint64(1))
                    kept |= lowest
                    ties ^= lowest
                ties = kept
            at_cut -= n_ties
            group = groups_lt[g] | ties
        else:
            group = groups_lt[g]
        count = _popcount64(group)
        for t in range(4):
            bit = _trailing_zeros64(group)
            buf_idx[n + t] = (g * 8 + (bit >> 3)) * lanes + (bit & 7)
            group &= group - np.uint64(1)
        t = 4
        while group:
            bit = _trailing_zeros64(group)
            buf_idx[n + t] = (g * 8 + (bit >> 3)) * lanes + (bit & 7)
            group &= group - np.uint64(1)
            t += 1
        n += count


@njit(cache=True, nogil=True)
def _emit(dist, k, cut, buf_idx, buf_dist, hist, offsets, out_dist, out_idx):
    """Counting select: write the k buffered items in (distance, index) order (the buffer is in index order)."""
    hist[:cut + 1] = 0
    for i in range(k):
        d = dist[buf_idx[i]]
        buf_dist[i] = d
        hist[d] += 1
    position = 0
    for d in range(cut + 1):
        offsets[d] = position
        position += hist[d]
    for i in range(k):
        d = buf_dist[i]
        slot = offsets[d]
        out_dist[slot] = d
        out_idx[slot] = buf_idx[i]
        offsets[d] = slot + 1


@njit(parallel=True, cache=True)
def hamming_topk_packed(queries, db, k, bits, block, n_workers, lane_dtype_like, out_dist, out_idx):
    """Exact top-k of every query; queries are (n, words) and db (words, n) uint64 (word-major, so each word of a
    chunk is contiguous); outputs (Q, k) int32 / int64.

    ``n_workers``: how many threads share the blocks (numba's thread count). Needs 1 <= k <= len(db) and
    ``lane_dtype_like`` an array of uint8 (bits <= 128) or uint16 (bits <= 32768):
    the dtype the distances are kept in.
    """
    n_queries = queries.shape[0]
    n_db = db.shape[1]
    lanes = 8 // lane_dtype_like.itemsize
    n_groups = (n_db + 8 * lanes - 1) // (8 * lanes)
    padded = (n_groups + 1) * 8 * lanes  # whole groups of 8 words, plus the spare group _take_best points into
    n_blocks = (n_queries + block - 1) // block
    n_workers = max(1, min(n_blocks, n_workers))
    # One worker per thread, each with its scratch allocated once: allocating it per block made every block an
    # mmap/munmap pair, and the munmaps' TLB shootdowns stalled the other threads (2 threads ran slower than 1).
    for worker in prange(n_workers):
        dist = np.empty((block, padded), lane_dtype_like.dtype)
        dist[:, n_db:] = bits  # padding lanes: never closer than a bound <= bits
        masks_le = np.empty(n_groups * 8, np.uint8)
        masks_lt = np.empty(n_groups * 8, np.uint8)
        buf_idx = np.empty(k + 64, np.int64)
        buf_dist = np.empty(k, np.int64)
        hist = np.empty(bits + 1, np.int64)
        offsets = np.empty(bits + 1, np.int64)
        for b in range(worker, n_blocks, n_workers):
            q0 = b * block
            nb = min(n_queries, q0 + block) - q0
            for c0 in range(0, n_db, DB_CHUNK):
                c1 = min(n_db, c0 + DB_CHUNK)
                for i in range(nb):
                    _chunk_distances(queries[q0 + i], db, c0, c1, dist[i])
            for i in range(nb):
                guess = _guess_cut(queries[q0 + i], db, k, bits)
                cut, closer = _find_cut(dist[i], n_db, bits, k, guess)
                _take_best(dist[i], n_db, bits, k, cut, closer, masks_le, masks_lt, buf_idx)
                _emit(dist[i], k, cut, buf_idx, buf_dist, hist, offsets, out_dist[q0 + i], out_idx[q0 + i])


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
