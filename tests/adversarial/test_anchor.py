import itertools

import pytest
import torch

from padhash.attacks.anchor import anchor_code
from padhash.errors import PadhashError


def _summed_hamming(h: torch.Tensor, codes: torch.Tensor) -> int:
    return int(((codes.shape[1] - codes.to(torch.int64) @ h.to(torch.int64)) // 2).sum())


@pytest.mark.parametrize("n_t", [1, 2, 3, 4, 7])
def test_anchor_minimises_summed_hamming_distance_brute_force(n_t):
    bits = 6
    every_code = torch.tensor(list(itertools.product([-1, 1], repeat=bits)), dtype=torch.int8)
    gen = torch.Generator().manual_seed(n_t)
    for _ in range(20):
        codes = every_code[torch.randint(len(every_code), (n_t,), generator=gen)]
        anchor = anchor_code(codes)
        best = min(_summed_hamming(h, codes) for h in every_code)
        assert _summed_hamming(anchor, codes) == best
        assert anchor.dtype == torch.int8 and set(anchor.tolist()) <= {-1, 1}


def test_anchor_ties_go_to_plus_one_and_single_code_is_itself():
    codes = torch.tensor([[1, -1, -1, 1], [-1, 1, -1, 1]], dtype=torch.int8)
    assert anchor_code(codes).tolist() == [1, 1, -1, 1]
    assert anchor_code(codes[:1]).tolist() == [1, -1, -1, 1]


def test_anchor_rejects_bad_shapes():
    with pytest.raises(PadhashError):
        anchor_code(torch.ones(0, 8))
    with pytest.raises(PadhashError):
        anchor_code(torch.ones(8))
