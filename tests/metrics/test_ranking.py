import math

import numpy as np
import pytest
import torch

from padhash.errors import PadhashError
from padhash.metrics import ASR_MATCHES, asr_at_k, carries_target, map_at_k, mean_average_precision, pr_curve, precision_at_k, t_map_at_k

A, B, C = [1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]
DB_LABELS = torch.tensor([A, B, A, A, B])
QUERY_LABELS = torch.tensor([A, B, C])
RANKED = torch.tensor([[0, 1, 2, 3, 4], [1, 4, 0, 2, 3], [0, 1, 2, 3, 4]])
# q0: relevant at ranks 1, 3, 4 -> AP = (1/1 + 2/3 + 3/4) / 3; q1: ranks 1, 2 -> AP = 1; q2: none -> 0.
AP0 = (1 + 2 / 3 + 3 / 4) / 3


def test_map_hand_computed_three_queries():
    assert mean_average_precision(RANKED, QUERY_LABELS, DB_LABELS) == pytest.approx((AP0 + 1 + 0) / 3)
    assert mean_average_precision(RANKED, QUERY_LABELS, DB_LABELS, drop_empty=True) == pytest.approx((AP0 + 1) / 2)
    # top-2: q0 relevant at rank 1 only -> AP normalised by retrieved relevant = 1
    assert mean_average_precision(RANKED[:, :2], QUERY_LABELS, DB_LABELS) == pytest.approx(2 / 3)


def test_map_matches_calctopmap_loop_on_random_data():
    g = np.random.default_rng(0)
    q_labels = torch.from_numpy((g.random((70, 6)) < 0.3).astype(np.float32))
    db_labels = torch.from_numpy((g.random((80, 6)) < 0.3).astype(np.float32))
    ranked = torch.from_numpy(np.stack([g.permutation(80) for _ in range(70)]))
    for k in (10, 64, 80):  # 70 queries: two blocks of the AP kernel; k below, at and past one 64-rank group
        total = 0.0
        for i in range(70):  # DeepHash-pytorch CalcTopMap, per query
            gnd = (q_labels[i].numpy() @ db_labels.numpy().T > 0)[ranked[i].numpy()][:k].astype(float)
            tsum = int(gnd.sum())
            if tsum:
                total += np.mean(np.linspace(1, tsum, tsum) / (np.flatnonzero(gnd) + 1.0))
        assert mean_average_precision(ranked[:, :k], q_labels, db_labels) == pytest.approx(total / 70)


def test_multi_label_relevance_shares_one_label():
    query = torch.tensor([[1.0, 1, 0]])
    db = torch.tensor([[1.0, 0, 0], [0, 0, 1], [0, 1, 1]])
    ranked = torch.tensor([[1, 0, 2]])
    # relevant at ranks 2 and 3 -> AP = (1/2 + 2/3) / 2
    assert mean_average_precision(ranked, query, db) == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert precision_at_k(ranked, query, db) == pytest.approx(2 / 3)


def test_map_at_k_from_codes_uses_stable_ties_and_clips_k():
    db_codes = torch.tensor([[1, 1], [1, 1], [-1, -1], [1, 1]], dtype=torch.int8)
    db_labels = torch.tensor([B, A, A, B])
    query = torch.tensor([[1, 1]], dtype=torch.int8)
    # distances 0, 0, 2, 0 -> ranking 0, 1, 3, 2 (ties by index); relevant (A) at ranks 2, 4
    assert map_at_k(query, db_codes, torch.tensor([A]), db_labels) == pytest.approx((1 / 2 + 2 / 4) / 2)
    assert map_at_k(query, db_codes, torch.tensor([A]), db_labels, k=100) == pytest.approx((1 / 2 + 2 / 4) / 2)
    assert map_at_k(query, db_codes, torch.tensor([A]), db_labels, k=1) == 0.0
    # t-MAP with the target B: relevant at ranks 1, 3
    assert t_map_at_k(query, db_codes, torch.tensor(B), db_labels, k=3) == pytest.approx((1 + 2 / 3) / 2)


def test_precision_at_k():
    assert precision_at_k(RANKED[:, :2], QUERY_LABELS, DB_LABELS) == pytest.approx((1 / 2 + 1 + 0) / 3)


def test_pr_curve_per_radius():
    db_codes = torch.tensor([[1, 1], [1, -1], [-1, -1], [-1, 1]], dtype=torch.int8)
    db_labels = torch.tensor([A, B, A, B])
    query = torch.tensor([[1, 1]], dtype=torch.int8)
    # distances 0, 1, 2, 1; relevant items 0 and 2
    precision, recall = pr_curve(query, db_codes, torch.tensor([A]), db_labels)
    np.testing.assert_allclose(precision, [1.0, 1 / 3, 2 / 4])
    np.testing.assert_allclose(recall, [0.5, 0.5, 1.0])


def test_asr_threshold_is_strict_more_than():
    # PADHASH: success = MORE than 30 % of the top 40, so 12 of 40 fails and 13 of 40 passes
    db_labels = torch.tensor([A] * 13 + [B] * 29)
    ranked_12 = torch.cat([torch.arange(12), torch.arange(13, 41)]).unsqueeze(0)
    asr, fractions = asr_at_k(ranked_12, db_labels, torch.tensor(A), threshold=0.3)
    assert asr == 0.0 and fractions.tolist() == [0.3]
    asr, fractions = asr_at_k(torch.arange(40).unsqueeze(0), db_labels, torch.tensor(A), threshold=0.3)
    assert asr == 1.0 and fractions.item() == pytest.approx(13 / 40)


def test_asr_multi_hot_target_and_per_query_targets():
    db_labels = torch.tensor([[1.0, 0, 0], [0, 1, 0], [0, 0, 1], [0, 1, 1]])
    ranked = torch.tensor([[0, 1, 2, 3], [2, 3, 0, 1]])
    asr, fractions = asr_at_k(ranked[:, :2], db_labels, torch.tensor([[0, 1.0, 1], [1.0, 0, 0]]), threshold=0.4)
    # q0 target {1,2}: items 0,1 -> 1 of 2; q1 target {0}: items 2,3 -> 0 of 2
    assert fractions.tolist() == [0.5, 0.0] and asr == 0.5


def test_bad_shapes_raise():
    with pytest.raises(PadhashError, match="ranked indices"):
        mean_average_precision(torch.tensor([[0, 9]]), torch.tensor([A]), DB_LABELS)
    with pytest.raises(PadhashError, match="ranked indices"):
        mean_average_precision(torch.tensor([[-1, 0]]), torch.tensor([A]), DB_LABELS)
    with pytest.raises(PadhashError, match="5 database codes but 4 database label rows"):
        map_at_k(torch.ones(1, 4, dtype=torch.int8), torch.ones(5, 4, dtype=torch.int8), torch.tensor([A]), DB_LABELS[:4])
    with pytest.raises(PadhashError, match="target labels"):
        asr_at_k(RANKED, DB_LABELS, torch.ones(2, 3))
    with pytest.raises(PadhashError, match="threshold"):
        asr_at_k(RANKED, DB_LABELS, torch.tensor(A), threshold=30)


def test_drop_empty_with_no_relevant_query_is_zero():
    assert mean_average_precision(RANKED[2:], QUERY_LABELS[2:], DB_LABELS, drop_empty=True) == 0.0
    assert not math.isnan(mean_average_precision(RANKED[2:], QUERY_LABELS[2:], DB_LABELS))


def test_more_than_64_classes_and_blocked_search(monkeypatch):
    import padhash.metrics.ranking as ranking

    g = torch.Generator().manual_seed(0)
    q_labels = (torch.rand(9, 70, generator=g) < 0.05).float()
    db_labels = (torch.rand(60, 70, generator=g) < 0.05).float()
    db_labels[:, 69] = 1.0  # class 69 lives in the second mask word
    q_labels[0] = 0.0
    q_labels[0, 69] = 1.0
    q_codes = (torch.randint(0, 2, (9, 12), generator=g) * 2 - 1).to(torch.int8)
    db_codes = (torch.randint(0, 2, (60, 12), generator=g) * 2 - 1).to(torch.int8)
    full = map_at_k(q_codes, db_codes, q_labels, db_labels, k=20)
    monkeypatch.setattr(ranking, "_SEARCH_BLOCK_ELEMENTS", 40)  # two queries per search block
    assert map_at_k(q_codes, db_codes, q_labels, db_labels, k=20) == pytest.approx(full)
    from padhash.retrieval import hamming_topk
    _, idx = hamming_topk(q_codes, db_codes, 20)
    rel = (q_labels @ db_labels.T > 0).gather(1, idx).double()
    ap = (rel.cumsum(1) / torch.arange(1, 21) * rel).sum(1) / rel.sum(1).clamp(min=1)
    assert full == pytest.approx(float(ap.mean()))
    assert ap[0] == 1.0  # every item shares class 69 with query 0


def test_asr_match_any_all_exact_on_multi_label_items():
    # PADHASH Table VII: target y_t = {1, 2}; items {1}, {1,2}, {1,2,0}, {0}
    db_labels = torch.tensor([[0, 1.0, 0], [0, 1, 1], [1, 1, 1], [1, 0, 0]])
    ranked = torch.tensor([[0, 1, 2, 3]])
    target = torch.tensor([0, 1.0, 1])
    fractions = {m: asr_at_k(ranked, db_labels, target, threshold=0.3, match=m)[1].item() for m in ASR_MATCHES}
    assert fractions == {"any": 0.75, "all": 0.5, "exact": 0.25}
    assert asr_at_k(ranked, db_labels, target, threshold=0.3, match="exact")[0] == 0.0
    assert carries_target(db_labels, target, "all").tolist() == [False, True, True, False]
    # one-hot target on single-label items: the three readings agree
    one_hot = torch.eye(3)[[0, 1, 1, 2]]
    assert len({asr_at_k(ranked, one_hot, torch.tensor([0, 1.0, 0]), match=m)[1].item() for m in ASR_MATCHES}) == 1
    with pytest.raises(PadhashError, match="match"):
        asr_at_k(ranked, db_labels, target, match="some")
