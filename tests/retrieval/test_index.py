import numpy as np
import pytest
import torch

from padhash.errors import PadhashError
from padhash.retrieval import HammingIndex, hamming_topk

CPU_BACKENDS = ["numba", "faiss", "torch"]


@pytest.fixture(params=["words", "bytes"])
def numba_layout(request, monkeypatch):
    """Both packed layouts of the numba backend, whichever this CPU would pick."""
    monkeypatch.setenv("PADHASH_NUMBA_LAYOUT", request.param)
    return request.param


def random_codes(n, bits, seed):
    g = torch.Generator().manual_seed(seed)
    return (torch.randint(0, 2, (n, bits), generator=g) * 2 - 1).to(torch.int8)


def brute_force(queries, db, k):
    """Reference: full distance matrix, Python stable sort by (distance, index)."""
    bits = db.shape[1]
    dist = ((bits - queries.long() @ db.long().T) // 2).tolist()
    ranked = [sorted(range(len(row)), key=lambda j: (row[j], j))[:k] for row in dist]
    return (torch.tensor([[row[j] for j in r] for row, r in zip(dist, ranked)], dtype=torch.int32),
            torch.tensor(ranked, dtype=torch.int64))


@pytest.mark.parametrize("bits", [8, 13, 64, 100, 1024])
@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_backends_match_brute_force(bits, backend):
    db = random_codes(150, bits, seed=bits)
    queries = random_codes(11, bits, seed=bits + 1)
    index = HammingIndex(db, backend)
    for k in (1, 10, 149, 150, 400):
        dist, idx = index.search(queries, k)
        ref_dist, ref_idx = brute_force(queries, db, min(k, 150))
        assert dist.dtype == torch.int32 and idx.dtype == torch.int64
        assert torch.equal(dist, ref_dist) and torch.equal(idx, ref_idx), (bits, backend, k)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_tie_heavy_codes_are_ordered_by_index(backend):
    # 4-bit codes over 300 items: every distance is shared by dozens of items.
    db = random_codes(300, 4, seed=3)
    queries = torch.cat([random_codes(5, 4, seed=4), db[:2]])
    for k in (3, 37, 299, 300):
        dist, idx = HammingIndex(db, backend).search(queries, k)
        ref_dist, ref_idx = brute_force(queries, db, k)
        assert torch.equal(dist, ref_dist) and torch.equal(idx, ref_idx)
    # identical codes (distance 0) come back in database order
    same = db[:1].repeat(50, 1)
    dist, idx = HammingIndex(same, backend).search(same[:1], 50)
    assert idx[0].tolist() == list(range(50)) and dist.sum() == 0


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_small_query_blocks_give_same_result(backend):
    db = random_codes(200, 13, seed=5)
    queries = random_codes(23, 13, seed=6)
    full = HammingIndex(db, backend).search(queries, 17)
    blocked = HammingIndex(db, backend, block_size=3).search(queries, 17)
    assert torch.equal(full[0], blocked[0]) and torch.equal(full[1], blocked[1])


def test_torch_block_bounds_distance_matrix(monkeypatch):
    """The torch backend never multiplies more than block_size queries against the database at once."""
    db = random_codes(100, 16, seed=7)
    queries = random_codes(10, 16, seed=8)
    seen_rows = []
    original_topk = torch.topk

    def spy(x, *args, **kwargs):
        seen_rows.append(x.shape[0])
        return original_topk(x, *args, **kwargs)

    monkeypatch.setattr(torch, "topk", spy)
    HammingIndex(db, "torch", block_size=4).search(queries, 5)
    assert seen_rows == [4, 4, 2]


def test_single_query_and_hamming_topk():
    db = torch.tensor([[1, 1, 1], [-1, -1, -1], [1, -1, 1], [1, 1, -1]], dtype=torch.int8)
    dist, idx = hamming_topk(torch.tensor([1, 1, 1], dtype=torch.int8), db, 4)
    assert dist.tolist() == [[0, 1, 1, 3]] and idx.tolist() == [[0, 2, 3, 1]]


def test_bad_inputs_raise_one_line_errors():
    db = random_codes(10, 8, seed=0)
    with pytest.raises(PadhashError, match="backend"):
        HammingIndex(db, "annoy")
    with pytest.raises(PadhashError, match="bits"):
        HammingIndex(db).search(random_codes(2, 16, seed=0), 3)
    with pytest.raises(PadhashError, match="k must"):
        HammingIndex(db).search(db, 0)
    with pytest.raises(PadhashError, match="empty"):
        HammingIndex(db[:0])
    with pytest.raises(PadhashError, match="CPU only"):
        HammingIndex(db, "numba").resolve_backend(torch.device("cuda"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu():
    db = random_codes(3000, 100, seed=9)
    queries = random_codes(40, 100, seed=10)
    cpu = HammingIndex(db, "numba").search(queries, 500)
    for index in (HammingIndex(db.cuda(), "auto"), HammingIndex(db, "torch")):
        dist, idx = index.search(queries.cuda(), 500)
        assert dist.is_cuda and torch.equal(dist.cpu(), cpu[0]) and torch.equal(idx.cpu(), cpu[1])


@pytest.mark.parametrize("bits", [4, 64, 126, 127, 128, 129, 300])
def test_numba_is_exact_across_chunks_and_lane_widths(bits, numba_layout):
    """A database spanning several chunks (8192 items each), codes stored in signed (<= 126 bits), unsigned byte
    (<= 128) and 16-bit lanes,
    a tie-heavy case (4 bits), a block size that does not divide the queries, and k at and beyond the cut group."""
    db = random_codes(20_011, bits, seed=bits)
    queries = random_codes(7, bits, seed=bits + 1)
    for k in (1, 777, 20_011):
        dist, idx = HammingIndex(db, "numba", block_size=3).search(queries, k)
        ref_dist, ref_idx = HammingIndex(db, "torch").search(queries, k)
        assert torch.equal(dist, ref_dist) and torch.equal(idx, ref_idx), (bits, k)


def test_numba_finds_the_cut_when_the_sample_misleads(numba_layout):
    """The sampled items (every 4th of 5000) all equal the query, the rest are far: the sampled guess is far off."""
    n, bits = 5000, 8
    query = torch.ones(1, bits, dtype=torch.int8)
    db = -torch.ones(n, bits, dtype=torch.int8)
    db[0:4096:4] = 1
    db[1:4096:4, 0] = 1  # distance 7 for some of the others, to check order beyond the cut
    dist, idx = HammingIndex(db, "numba").search(query, 2000)
    ref_dist, ref_idx = brute_force(query, db, 2000)
    assert torch.equal(dist, ref_dist) and torch.equal(idx, ref_idx)


@pytest.mark.parametrize("bits", [13, 64, 126, 127, 128, 129])
@pytest.mark.parametrize("n", [1, 63, 64, 65, 300])
def test_numba_at_the_largest_distance(bits, n, numba_layout):
    """Every item at distance `bits` from the query (the cut is `bits`, whose bound bits + 1 fills a byte lane at
    128 bits), databases shorter than, equal to and just past one 64-item compare group."""
    db = -torch.ones(n, bits, dtype=torch.int8)
    db[n // 2:, 0] = 1  # and some one bit closer
    query = torch.ones(1, bits, dtype=torch.int8)
    for k in sorted({1, n // 2 + 1, n}):
        dist, idx = HammingIndex(db, "numba").search(query, k)
        ref_dist, ref_idx = brute_force(query, db, k)
        assert torch.equal(dist, ref_dist) and torch.equal(idx, ref_idx), (bits, n, k)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_average_precisions_score_the_search_rankings(backend, numba_layout):
    """Scoring inside the search (numba keeps no ranking) equals scoring the returned rankings, label masks of
    one and of two words, k below and past the database size."""
    from padhash.metrics import average_precisions
    from padhash.metrics.ranking import _label_masks

    g = torch.Generator().manual_seed(7)
    db, queries = random_codes(300, 24, seed=8), random_codes(70, 24, seed=9)
    for n_classes in (5, 70):
        q_labels = (torch.rand(70, n_classes, generator=g) < 0.2).float()
        db_labels = (torch.rand(300, n_classes, generator=g) < 0.2).float()
        index = HammingIndex(db, backend)
        for k in (1, 65, 300, 500):
            ap, hits = index.average_precisions(queries, k, _label_masks(q_labels), _label_masks(db_labels))
            ref_ap, ref_hits = average_precisions(index.search(queries, k)[1], q_labels, db_labels)
            assert np.array_equal(ap, ref_ap.numpy()) and np.array_equal(hits, ref_hits.numpy()), (n_classes, k)
    with pytest.raises(PadhashError, match="label masks"):
        index.average_precisions(queries, 5, _label_masks(q_labels[:3]), _label_masks(db_labels))
