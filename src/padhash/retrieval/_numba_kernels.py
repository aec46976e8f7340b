"""numba kernels: exact Hamming top-k on packed codes (uint64 words or byte planes), and AP / hit counts of rankings.

Top-k without heap or sort: a Hamming distance takes only bits+1 values. Per block of queries:
1. the distances of every query of the block to every database item go into a small-integer array (one byte per
   item up to 128 bits, two bytes up to 32768), chunk by chunk so a database chunk stays in cache while every query
   of the block reads it. This loop has no branch and LLVM vectorizes it (vector popcount);
2. per query, the cut distance (the smallest d with >= k items at distance <= d) is found by counting the items
   below a bound, starting from a guess made on a contiguous strided sample of the database. A count reads 64
   distances at a time with one vector compare whose 64 result bits become one integer (a movemask), and
   popcounts it;
3. one pass in database order, over the same 64-item compare masks, takes every item closer than the cut and, of
   the items at the cut, the first k - (number closer) (ties go to the smaller index): exactly k items, each
   located with a trailing-zero count;
4. for each distance from the smallest to the cut, compare masks over the k taken items' distances pick the items
   at that distance in index order, written straight to their final slots: (distance, index) order, stable by
   construction.
Memory per block: one small integer per (query, database item) of the block, plus O(k) per query.
"""
from __future__ import annotations

import math

import numpy as np
from llvmlite import ir

from padhash.retrieval.numba_cache import ensure_writable_cache

ensure_writable_cache()  # before numba reads NUMBA_CACHE_DIR
from numba import njit, prange, types  # noqa: E402
from numba.extending import intrinsic

from padhash.retrieval.numba_threads import start_threading_layer  # noqa: E402

start_threading_layer()  # now, keeping torch's thread count (its first parallel call would raise it to all cores)

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


@intrinsic
def _popcount8(typingctx, x):
    """LLVM ctpop of the low byte of an integer, as uint8: on byte vectors one VPOPCNTB (AVX-512 BITALG) or a
    nibble-table PSHUFB pair (AVX2)."""
    if not isinstance(x, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        value = args[0]
        if value.type.width > 8:
            value = builder.trunc(value, ir.IntType(8))
        return builder.ctpop(value)

    return types.uint8(x), codegen


@njit(cache=True, nogil=True)
def _chunk_distances(query, db, c0, c1, dist):
    """dist[j] = Hamming distance of query to item j, for j in [c0, c1). Two layouts of the packed codes:

    - uint64 words, db (words, n): one popcount per word and item; the fastest where the CPU has a 64-bit vector
      popcount (AVX-512 VPOPCNTDQ);
    - uint8 byte planes, db (planes, n) with planes a multiple of 4 (zero padding planes, zero query bytes): four
      byte popcounts summed per pass; elsewhere (AVX2: a 64-bit popcount is emulated, then narrowed) it is ~1.6x
      faster than words.
    Contiguous rows, unsigned indices and no branch: LLVM vectorizes both.
    """
    n = np.uint64(c1 - c0)
    out = dist[c0:c1]
    if db.itemsize == 8:
        for w in range(db.shape[0]):
            words, qw = db[w, c0:c1], query[w]
            if w == 0:
                for j in range(np.uint64(0), n):
                    out[j] = _popcount64(qw ^ words[j])
            else:
                for j in range(np.uint64(0), n):
                    out[j] += _popcount64(qw ^ words[j])
    else:
        for p in range(0, db.shape[0], 4):
            b0, b1, b2, b3 = db[p, c0:c1], db[p + 1, c0:c1], db[p + 2, c0:c1], db[p + 3, c0:c1]
            q0, q1, q2, q3 = query[p], query[p + 1], query[p + 2], query[p + 3]
            if p == 0:
                for j in range(np.uint64(0), n):
                    out[j] = (_popcount8(q0 ^ b0[j]) + _popcount8(q1 ^ b1[j]) + _popcount8(q2 ^ b2[j])
                              + _popcount8(q3 ^ b3[j]))
            else:
                for j in range(np.uint64(0), n):
                    out[j] += (_popcount8(q0 ^ b0[j]) + _popcount8(q1 ^ b1[j]) + _popcount8(q2 ^ b2[j])
                               + _popcount8(q3 ^ b3[j]))


@intrinsic
def _below64(typingctx, dist, start, bound):
    """uint64 whose bit t says dist[start + t] < bound, for t < 64: one vector load, one compare against the
    broadcast bound and a movemask (the <64 x i1> result read as an i64). dist is int8, uint8 or uint16 and must
    hold 64 values from ``start``; the bound must fit its dtype. int8 lanes compare signed: AVX2 has a signed
    byte compare but no unsigned one (which costs a max and an equality), AVX-512 has both."""
    if not (isinstance(dist, types.Array) and dist.dtype in (types.int8, types.uint8, types.uint16)):
        return None
    compare = "icmp_signed" if dist.dtype.signed else "icmp_unsigned"

    def codegen(context, builder, signature, args):
        array, first, limit = args
        elem = context.get_value_type(signature.args[0].dtype)
        vector = ir.VectorType(elem, 64)
        data = context.make_array(signature.args[0])(context, builder, array).data
        lanes = builder.load(builder.bitcast(builder.gep(data, [first]), vector.as_pointer()), align=1)
        limit = builder.insert_element(ir.Constant(vector, None), builder.trunc(limit, elem),
                                       ir.Constant(ir.IntType(32), 0))
        limit = builder.shuffle_vector(limit, ir.Constant(vector, None), ir.Constant(ir.VectorType(ir.IntType(32), 64), [0] * 64))
        return builder.bitcast(getattr(builder, compare)("<", lanes, limit), ir.IntType(64))

    return types.uint64(dist, types.int64, types.int64), codegen


@njit(cache=True, nogil=True)
def _counts_at(dist, n_items, bits, cut):
    """(items at distance < cut, items at distance <= cut) among the first n_items, in one pass of vector compares
    (lanes past n_items hold ``bits``: never counted below a bound <= bits)."""
    below, at_most = 0, 0
    for g in range((n_items + 63) // 64):
        below += _popcount64(_below64(dist, g * 64, cut))
        at_most += _popcount64(_below64(dist, g * 64, cut + 1))
    return below, (n_items if cut >= bits else at_most)


@njit(cache=True, nogil=True)
def _guess_cut(query, sample, n_db, k, bits, sample_dist):
    """The distance at the k/N quantile of the query's distances to ``sample`` (a strided sample of the database,
    contiguous, word-major): where the cut search starts. The sample distances are one vectorized pass into
    ``sample_dist`` (padded with ``bits``), and the quantile a binary search of vector counts over them."""
    n_sample = sample.shape[1]
    _chunk_distances(query, sample, 0, n_sample, sample_dist)
    wanted = math.ceil(k * n_sample / n_db)
    lo, hi = 0, bits  # the smallest d with >= wanted sample items at distance <= d lies in [lo, hi]
    while lo < hi:
        mid = (lo + hi) // 2
        if _counts_at(sample_dist, n_sample, bits, mid)[1] >= wanted:
            hi = mid
        else:
            lo = mid + 1
    return lo


@njit(cache=True, nogil=True)
def _find_cut(dist, n_items, bits, k, guess):
    """(cut, closer): the smallest d with >= k items at distance <= d, and the number of items at distance < d.
    One counting pass per step from the guess (one in all when the guess is right)."""
    cut = guess
    while True:
        closer, at_most = _counts_at(dist, n_items, bits, cut)
        if at_most < k:
            cut += 1
        elif closer >= k:
            cut -= 1
        else:
            return cut, closer


@njit(cache=True, nogil=True)
def _append_set_bits(mask, base, buf, n):
    """Append base + the position of each set bit of ``mask`` to buf[n:], in increasing order; the new length.
    The first 4 without a branch (a mask holds ~1-2 on average), so there is about one branch per mask, not per
    item; slots past the count are scratch (``buf`` needs 64 spare), overwritten by the next call."""
    count = _popcount64(mask)
    for t in range(4):
        buf[n + t] = base + _trailing_zeros64(mask)
        mask &= mask - np.uint64(1)
    t = 4
    while mask:
        buf[n + t] = base + _trailing_zeros64(mask)
        mask &= mask - np.uint64(1)
        t += 1
    return n + count


@njit(cache=True, nogil=True)
def _take_best(dist, n_items, k, cut, closer, buf_idx):
    """Into ``buf_idx``, in database order: every item closer than ``cut`` and the first k - closer items at the
    cut (ties go to the smaller index). Works on groups of 64 items, a compare mask each."""
    at_cut = k - closer  # items at the cut still to take
    n = 0
    for g in range((n_items + 63) // 64):
        group = _below64(dist, g * 64, cut)
        if at_cut > 0:
            ties = _below64(dist, g * 64, cut + 1) & ~group
            n_ties = _popcount64(ties)
            if n_ties > at_cut:  # the cut's last tie group: keep its first at_cut items (smallest indices)
                kept = np.uint64(0)
                for _ in range(at_cut):
                    lowest = ties & (~ties + np.uint64(1))
                    kept |= lowest
                    ties ^= lowest
                ties = kept
            at_cut -= n_ties
            group |= ties
        n = _append_set_bits(group, g * 64, buf_idx, n)


@njit(cache=True, nogil=True)
def _valid_lanes(g, k):
    """The lanes of 64-item group g that hold one of the first k items."""
    remaining = k - g * 64
    return np.uint64(0xFFFFFFFFFFFFFFFF) if remaining >= 64 else (np.uint64(1) << np.uint64(remaining)) - np.uint64(1)


@njit(cache=True, nogil=True)
def _lanes_at(values, g, d, k):
    """The lanes of 64-item group g, among the first k items, whose value is d (two compare masks)."""
    return _below64(values, g * 64, d + 1) & ~_below64(values, g * 64, d) & _valid_lanes(g, k)


@njit(cache=True, nogil=True)
def _emit(dist, k, cut, buf_idx, buf_dist, order, out_dist, out_idx):
    """Write the k buffered items (index order) in (distance, index) order: for each distance from the smallest to
    the cut, the buffered items at that distance, found by vector compares over their distances. Stable like a
    counting select, without a histogram's store-to-load chains. ``buf_dist`` and ``order`` need 64 spare."""
    for i in range(k):
        buf_dist[i] = dist[buf_idx[i]]
    n = 0
    for d in range(buf_dist[:k].min(), cut + 1):
        first = n
        for g in range((k + 63) // 64):
            n = _append_set_bits(_lanes_at(buf_dist, g, d, k), g * 64, order, n)
        out_dist[first:n] = d
    for i in range(k):
        out_idx[i] = buf_idx[order[i]]


@njit(parallel=True, cache=True)
def hamming_topk_packed(queries, db, k, bits, block, n_workers, lane_dtype_like, out_dist, out_idx, query_labels,
                        db_labels, ap_out, hits_out):
    """Exact top-k of every query; queries are (n, words) and db (words, n) uint64, or byte planes: (n, planes)
    and (planes, n) uint8 (see _chunk_distances); db is plane-major, so each plane of a chunk is contiguous.
    Outputs (Q, k) int32 / int64.

    Scoring instead of returning rankings: with ``ap_out`` / ``hits_out`` of length Q, each query's k taken items
    are scored without being ranked (_taken_average_precision; ``query_labels`` (Q, label words) and ``db_labels``
    (label words, N) packed label masks), and out_dist / out_idx are not written (pass (0, k) arrays). Otherwise
    pass empty label and score arrays.

    ``n_workers``: how many threads share the blocks (numba's thread count). Needs 1 <= k <= len(db) and
    ``lane_dtype_like`` an array of int8 (bits <= 126), uint8 (bits <= 128) or uint16 (bits <= 32768): the dtype
    the distances are kept in (a compare's bound, up to bits + 1, must fit it).
    """
    n_queries = queries.shape[0]
    n_db = db.shape[1]
    score = ap_out.shape[0] > 0
    padded = (n_db + 63) // 64 * 64  # whole groups of 64 items: the compares read 64 lanes at a time
    n_blocks = (n_queries + block - 1) // block
    n_workers = max(1, min(n_blocks, n_workers))
    sample = np.ascontiguousarray(db[:, ::max(1, n_db // SAMPLE)])
    n_sample = sample.shape[1]
    # One worker per thread, each with its scratch allocated once: allocating it per block made every block an
    # mmap/munmap pair, and the munmaps' TLB shootdowns stalled the other threads (2 threads ran slower than 1).
    for worker in prange(n_workers):
        dist = np.empty((block, padded), lane_dtype_like.dtype)
        dist[:, n_db:] = bits  # padding lanes: never closer than a bound <= bits
        buf_idx = np.empty(k + 64, np.int64)
        buf_dist = np.empty(k + 64, lane_dtype_like.dtype)
        order = np.empty(k + 64, np.int64)
        sample_dist = np.empty((n_sample + 63) // 64 * 64, lane_dtype_like.dtype)
        sample_dist[n_sample:] = bits
        relevant = np.zeros(k + 64, np.uint8)  # relevance of the taken items, when scoring
        for b in range(worker, n_blocks, n_workers):
            q0 = b * block
            nb = min(n_queries, q0 + block) - q0
            for c0 in range(0, n_db, DB_CHUNK):
                c1 = min(n_db, c0 + DB_CHUNK)
                for i in range(nb):
                    _chunk_distances(queries[q0 + i], db, c0, c1, dist[i])
            for i in range(nb):
                q = q0 + i
                guess = _guess_cut(queries[q], sample, n_db, k, bits, sample_dist)
                cut, closer = _find_cut(dist[i], n_db, bits, k, guess)
                _take_best(dist[i], n_db, k, cut, closer, buf_idx)
                if score:
                    ap_out[q], hits_out[q] = _taken_average_precision(dist[i], k, cut, buf_idx, buf_dist,
                                                                      query_labels[q], db_labels, relevant)
                else:
                    _emit(dist[i], k, cut, buf_idx, buf_dist, order, out_dist[q], out_idx[q])


@njit(cache=True, nogil=True)
def _mark_relevant(items, k, query_mask, db_words, relevant):
    """relevant[i] = 1 when database item items[i] (i < k) shares a label with the query, else 0: one branch-free
    pass per label word (LLVM vectorizes it, with gathers where the CPU has them). db_words is (label words, N)."""
    for w in range(db_words.shape[0]):
        query_word, labels = query_mask[w], db_words[w]
        if w == 0:
            for i in range(k):
                relevant[i] = (query_word & labels[items[i]]) != 0
        else:
            for i in range(k):
                relevant[i] |= (query_word & labels[items[i]]) != 0


@njit(cache=True, nogil=True)
def _taken_average_precision(dist, k, cut, buf_idx, buf_dist, query_mask, db_words, relevant):
    """(AP, relevant items found) of the ranking the k taken items (``buf_idx``, index order) make, without
    making it: each relevant item's rank is the number of items at smaller distances, plus those at its distance
    before it (popcounts of the compare masks _emit would extract from). Ranks come in ascending order, so the sum
    is the one _average_precision makes over the emitted ranking."""
    if db_words.shape[0] == 0:
        return 0.0, 0
    for i in range(k):
        buf_dist[i] = dist[buf_idx[i]]
    _mark_relevant(buf_idx, k, query_mask, db_words, relevant)
    found, ranked = 0, 0  # relevant items met; items ranked before the current distance
    precision_sum = 0.0
    for d in range(buf_dist[:k].min(), cut + 1):
        at_d_before = 0  # items at distance d in earlier groups
        for g in range((k + 63) // 64):
            at_d = _lanes_at(buf_dist, g, d, k)
            hits = at_d & ~_below64(relevant, g * 64, 1)
            while hits:
                lane = np.uint64(_trailing_zeros64(hits))
                found += 1
                rank = ranked + at_d_before + _popcount64(at_d & ((np.uint64(1) << lane) - np.uint64(1))) + 1
                precision_sum += found / rank
                hits &= hits - np.uint64(1)
            at_d_before += _popcount64(at_d)
        ranked += at_d_before
    return (precision_sum / found if found else 0.0), found


@njit(cache=True, nogil=True)
def _average_precision(row, query_mask, db_words, relevant):
    """(AP, relevant items found) of one ranking of valid database indices (DeepHash convention). Labels are
    packed bit masks, the database's word-major (label words, N); relevant = the masks share a bit.

    Each rank's relevance is marked in a byte of ``relevant`` (_mark_relevant); then 64-rank compare masks over
    those bytes visit only the relevant ranks. Same sum, in the same order, as a plain loop over the ranks."""
    k = row.shape[0]
    if k == 0 or db_words.shape[0] == 0:
        return 0.0, 0
    _mark_relevant(row, k, query_mask, db_words, relevant)
    found = 0
    precision_sum = 0.0
    for g in range((k + 63) // 64):
        ranks = ~_below64(relevant, g * 64, 1) & _valid_lanes(g, k)
        while ranks:
            found += 1
            precision_sum += found / (g * 64 + _trailing_zeros64(ranks) + 1.0)
            ranks &= ranks - np.uint64(1)
    return (precision_sum / found if found else 0.0), found


# Queries per parallel task of ranking_ap_hits (each task allocates its scratch once).
AP_BLOCK = 64


@njit(parallel=True, cache=True)
def ranking_ap_hits(ranked_idx, query_masks, db_masks):
    """Per query: AP over its ranking (see _average_precision), the number of relevant items in it, and whether
    every ranked index was a valid database index (an invalid ranking gets no AP). Labels are packed bit masks
    (n, words) uint64."""
    n_queries, k = ranked_idx.shape
    n_db = db_masks.shape[0]
    db_words = np.ascontiguousarray(db_masks.T)
    ap = np.zeros(n_queries, np.float64)
    hits = np.zeros(n_queries, np.int64)
    valid = np.ones(n_queries, np.bool_)
    for b in prange((n_queries + AP_BLOCK - 1) // AP_BLOCK):
        relevant = np.zeros((k + 63) // 64 * 64, np.uint8)
        for q in range(b * AP_BLOCK, min(n_queries, (b + 1) * AP_BLOCK)):
            row = ranked_idx[q]
            if k and (row.min() < 0 or row.max() >= n_db):
                valid[q] = False
                continue
            ap[q], hits[q] = _average_precision(row, query_masks[q], db_words, relevant)
    return ap, hits, valid
