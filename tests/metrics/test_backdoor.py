"""code_spread: the distribution of pairwise Hamming distances of a set of codes (CIBA Fig. 4)."""
import pytest
import torch

from padhash.metrics.backdoor import code_spread


def test_code_spread_counts_each_distinct_pair_once():
    codes = torch.tensor([[1, 1, 1, 1], [1, 1, 1, -1], [-1, -1, -1, -1]], dtype=torch.float32)
    spread = code_spread(codes)
    # pairs: (0,1) = 1 bit, (0,2) = 4 bits, (1,2) = 3 bits
    assert spread["histogram"] == pytest.approx([0, 1 / 3, 0, 1 / 3, 1 / 3])
    assert spread["mean"] == pytest.approx(8 / 3)


def test_identical_codes_have_no_spread_and_one_code_has_none_defined():
    same = torch.ones(5, 8)
    assert code_spread(same)["mean"] == 0.0 and code_spread(same)["histogram"][0] == 1.0
    single = code_spread(torch.ones(1, 8))
    assert single["histogram"] == [0.0] * 9 and single["mean"] != single["mean"]  # NaN
