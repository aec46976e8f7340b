"""Start numba's threading layer without changing torch's thread count.

numba starts its threading layer at its first parallel call in a process (or its first get/set_num_threads). Its
OpenMP layer then calls omp_set_num_threads(NUMBA_NUM_THREADS) — the CPU count by default, whatever
OMP_NUM_THREADS says — on the calling thread, and torch, sharing that OpenMP runtime, takes its intra-op thread
count from there. So a process running torch on 1 thread (OMP_NUM_THREADS=1, torch.set_num_threads(1)) computed on
every core after its first Hamming search: whatever ran after the first retrieval in a process (PADHASH's crafting
diagnostics in an executor's worker, for one) rounded differently from the same computation earlier or in a fresh
process. Starting the layer here, once, and putting torch's count back keeps a process on the threads it was given.
"""
from __future__ import annotations


def start_threading_layer() -> None:
    """Start numba's threading layer now (idempotent), leaving torch's intra-op thread count as it was."""
    import numba
    import torch

    before = torch.get_num_threads()
    numba.get_num_threads()  # launches the threading layer on first use
    if torch.get_num_threads() != before:
        torch.set_num_threads(before)
