import numpy as np
import pytest
import torch

from padhash.errors import PadhashError
from padhash.retrieval import pack_codes, to_codes, unpack_codes


def test_to_codes_sign_zero_is_plus_one():
    codes = to_codes(torch.tensor([[-0.5, 0.0, 2.0, -0.0]]))
    assert codes.dtype == torch.int8
    assert codes.tolist() == [[-1, 1, 1, 1]]


@pytest.mark.parametrize("bits", [1, 8, 13, 64, 100])
def test_pack_unpack_roundtrip(bits):
    g = torch.Generator().manual_seed(bits)
    codes = (torch.randint(0, 2, (7, bits), generator=g) * 2 - 1).to(torch.int8)
    packed = pack_codes(codes)
    assert packed.dtype == np.uint8 and packed.shape == (7, (bits + 7) // 8)
    assert torch.equal(unpack_codes(packed, bits), codes)


def test_pack_layout_and_word_padding():
    codes = torch.tensor([[1, -1, -1, -1, -1, -1, -1, -1, 1]], dtype=torch.int8)  # bits 0 and 8 set
    assert pack_codes(codes).tolist() == [[1, 1]]
    words = pack_codes(codes, word_bytes=8)
    assert words.shape == (1, 8) and words[0, 2:].sum() == 0


def test_non_binary_codes_rejected():
    with pytest.raises(PadhashError, match="±1"):
        pack_codes(torch.tensor([[1, 0, -1]]))
