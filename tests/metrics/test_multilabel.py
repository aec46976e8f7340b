"""mAP@K / t-MAP@K on multi-hot labels follow the DeepHash multi-label convention: relevant = ≥ 1 shared label,
AP = mean precision at the relevant ranks found in the top K."""
import pytest
import torch

from padhash.metrics import map_at_k, t_map_at_k

# database codes at Hamming distance 0, 1, 2, 3 from the query (ranked in that order)
DB = torch.tensor([[1, 1, 1], [1, 1, -1], [1, -1, -1], [-1, -1, -1]], dtype=torch.int8)
Q = torch.tensor([[1, 1, 1]], dtype=torch.int8)
DB_LABELS = torch.tensor([[1, 0, 0, 1], [0, 1, 0, 0], [0, 0, 1, 1], [1, 1, 0, 0]], dtype=torch.float32)


def test_map_multi_hot_shares_one_label():
    # query carries classes 1 and 3: relevant = items 0 (shares 3), 1 (shares 1), 2 (shares 3), 3 (shares 1)
    assert map_at_k(Q, DB, torch.tensor([[0, 1, 0, 1.0]]), DB_LABELS) == pytest.approx(1.0)
    # query carries class 2 only: item 2 at rank 3 → AP = 1/3
    assert map_at_k(Q, DB, torch.tensor([[0, 0, 1, 0.0]]), DB_LABELS) == pytest.approx(1 / 3)
    # class 0: items 0 (rank 1) and 3 (rank 4) → (1/1 + 2/4) / 2; @3 only item 0 is found → 1.0
    assert map_at_k(Q, DB, torch.tensor([[1, 0, 0, 0.0]]), DB_LABELS) == pytest.approx(0.75)
    assert map_at_k(Q, DB, torch.tensor([[1, 0, 0, 0.0]]), DB_LABELS, 3) == pytest.approx(1.0)


def test_t_map_with_a_multi_hot_target():
    # target {1, 2}: items 1 (rank 2), 2 (rank 3), 3 (rank 4) → (1/2 + 2/3 + 3/4) / 3
    target = torch.tensor([0, 1, 1, 0.0])
    assert t_map_at_k(Q, DB, target, DB_LABELS) == pytest.approx((1 / 2 + 2 / 3 + 3 / 4) / 3)
    # no relevant item in the top 1 → 0, and the query still counts
    assert t_map_at_k(Q, DB, target, DB_LABELS, 1) == 0.0
