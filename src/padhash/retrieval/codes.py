"""Binary codes: real outputs -> ±1 codes -> packed bits.

Bit convention: code +1 is bit 1, code -1 is bit 0; bit j of a code lives in byte j // 8 at bit position
j % 8 (little-endian within the byte, numpy ``bitorder="little"``). Padding bits are 0 for every code, so the
Hamming distance between packed codes equals the distance between the ±1 codes for any code length.
"""
from __future__ import annotations

import numpy as np
import torch

from padhash.errors import PadhashError


def to_codes(u: torch.Tensor) -> torch.Tensor:
    """±1 codes (int8) from real-valued hash outputs; sign(0) = +1 (DESIGN.md)."""
    return torch.where(torch.as_tensor(u) >= 0, 1, -1).to(torch.int8)


def hamming_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(Q, N) distances (K − a·b)/2 between the rows of a (Q, K) and b (N, K): exact int64 Hamming distances for
    ±1 integer codes; for real-valued inputs (relaxed codes u) the float relaxation, differentiable."""
    if a.is_floating_point() or b.is_floating_point():
        return (a.shape[-1] - a @ b.T.to(a.dtype)) / 2
    return ((a.shape[-1] - a.float() @ b.float().T) / 2).round().to(torch.int64)


def paired_hamming(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(N,) distances (K − a_i·b_i)/2 between matching rows of two (N, K) tensors, as floats of a's dtype (a float
    a keeps the relaxation differentiable; ±1 inputs give exact whole numbers)."""
    a = a if a.is_floating_point() else a.float()
    return (a.shape[-1] - (a * b.to(a)).sum(dim=-1)) / 2


# CPU dtypes whose validity check runs in numpy (one fused pass; several times faster than torch's on CPU).
_NUMPY_CHECKED = (torch.int8, torch.int16, torch.int32, torch.int64, torch.float32, torch.float64)


def check_codes(codes, name: str = "codes") -> torch.Tensor:
    """Return ``codes`` as a 2-D int8 ±1 tensor (a single code becomes one row), or raise PadhashError."""
    codes = torch.as_tensor(codes)
    if codes.dim() == 1:
        codes = codes.unsqueeze(0)
    if codes.dim() != 2 or codes.shape[1] == 0:
        raise PadhashError(f"{name}: expected a (N, bits) tensor of ±1 codes, got shape {tuple(codes.shape)}")
    if codes.device.type == "cpu" and codes.dtype in _NUMPY_CHECKED:
        valid = bool((np.abs(codes.detach().numpy()) == 1).all())
    else:
        valid = bool((codes.abs() == 1).all())
    if not valid:
        raise PadhashError(f"{name}: codes must be ±1 (use padhash.retrieval.to_codes on real outputs)")
    return codes.to(torch.int8)


def pack_codes(codes, word_bytes: int = 1) -> np.ndarray:
    """Pack ±1 codes (N, K) into uint8 bits (N, B), B = ceil(K/8) rounded up to a multiple of ``word_bytes``."""
    return pack_checked_codes(check_codes(codes), word_bytes)


def pack_checked_codes(codes: torch.Tensor, word_bytes: int = 1) -> np.ndarray:
    """:func:`pack_codes` of codes already through :func:`check_codes` (int8 ±1, 2-D): no second check."""
    positive = codes.cpu().numpy() > 0
    n, bits = positive.shape
    width = -(-bits // (8 * word_bytes)) * 8 * word_bytes  # bits rounded up to whole words
    if width != bits:  # zero padding bits, so every row fills whole bytes of one flat packbits
        padded = np.zeros((n, width), np.bool_)
        padded[:, :bits] = positive
        positive = padded
    return np.packbits(positive, bitorder="little").reshape(n, width // 8)


def unpack_codes(packed: np.ndarray, bits: int) -> torch.Tensor:
    """Inverse of :func:`pack_codes`: uint8 (N, B) -> int8 ±1 codes (N, bits)."""
    packed = np.asarray(packed, dtype=np.uint8)
    if packed.ndim != 2 or packed.shape[1] * 8 < bits:
        raise PadhashError(f"packed codes of shape {packed.shape} cannot hold {bits} bits")
    unpacked = np.unpackbits(packed, axis=1, count=bits, bitorder="little")
    return torch.from_numpy(unpacked.astype(np.int8) * 2 - 1)
