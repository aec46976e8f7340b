"""Binary codes and exact Hamming top-k retrieval (ascending distance, ties by database index)."""
from padhash.retrieval.codes import check_codes, hamming_distance, pack_codes, paired_hamming, to_codes, unpack_codes
from padhash.retrieval.index import BACKENDS, HammingIndex, hamming_topk, numba_layout

__all__ = ["BACKENDS", "HammingIndex", "check_codes", "hamming_distance", "hamming_topk", "numba_layout", "pack_codes",
           "paired_hamming", "to_codes", "unpack_codes"]
