"""Exact Hamming top-k search with stable ties, on three interchangeable backends.

Ranking (DESIGN.md): ascending Hamming distance, ties broken by ascending database index. Every backend returns
exactly that order, so results are identical whichever runs:

- ``numba``: packed codes (uint64 words or byte planes, whichever popcounts faster on this CPU: ``numba_layout``),
  per query a cut distance and a select by distance from vector-compare masks (no sort, no heap), parallel over
  query blocks. Fastest on CPU; ``auto`` picks it for CPU queries.
- ``faiss``: FAISS ``IndexBinaryFlat`` (codes zero-padded to whole bytes). FAISS breaks ties at the k-th
  distance arbitrarily, so rows whose last tie group may be cut are searched again with a larger k until the
  group is complete, then sorted by (distance, index). Exact, but slower than ``numba`` on tie-heavy codes.
- ``torch``: ±1 float matmul in query blocks + ``topk`` on the unique key ``distance * N + index``. Runs on
  CUDA; ``auto`` picks it for CUDA queries (float16 matmul, exact for codes up to 2048 bits).

Memory is bounded by query blocks: no backend materializes the full (Q, N) distance matrix.
"""
from __future__ import annotations

import functools
import os

import numpy as np
import torch

from padhash.errors import PadhashError
from padhash.retrieval.codes import check_codes, pack_checked_codes

BACKENDS = ("auto", "numba", "faiss", "torch")
MAX_BITS = 32768  # two bytes per item of the numba byte-plane layout

# torch backend: distance elements per query block (int64 keys: 2^23 elements = 64 MiB; 512 MiB on a GPU).
_TORCH_BLOCK_ELEMENTS = {"cpu": 1 << 23, "cuda": 1 << 26}
# numba backend: queries per block (they share each database chunk in cache), and the cap on the
# distances one block holds (a large database gets smaller blocks).
_NUMBA_BLOCK = 16
_NUMBA_BLOCK_BYTES = 64 << 20


class HammingIndex:
    """Exact Hamming top-k over a database of ±1 codes.

    ``block_size`` is the number of queries searched at once (None = backend default); it bounds memory.
    """

    def __init__(self, db_codes, backend: str = "auto", *, block_size: int | None = None):
        if backend not in BACKENDS:
            raise PadhashError(f"unknown retrieval backend {backend!r}; choose from {', '.join(BACKENDS)}")
        if block_size is not None and block_size < 1:
            raise PadhashError(f"block_size must be >= 1, got {block_size}")
        self.db_codes = check_codes(db_codes, "database codes")
        if self.db_codes.shape[0] == 0:
            raise PadhashError("database codes: the database is empty")
        self.bits = self.db_codes.shape[1]
        if self.bits > MAX_BITS:
            raise PadhashError(f"codes of {self.bits} bits are longer than the {MAX_BITS} bits supported")
        self.backend = backend
        self.block_size = block_size
        self._prepared: dict = {}  # backend (and device) -> prepared database

    def __len__(self) -> int:
        return self.db_codes.shape[0]

    def resolve_backend(self, device: torch.device) -> str:
        """The backend that serves queries on ``device``: ``auto`` = numba on CPU, torch on CUDA."""
        if self.backend == "auto":
            return "numba" if device.type == "cpu" else "torch"
        if self.backend in ("numba", "faiss") and device.type != "cpu":
            raise PadhashError(f"retrieval backend {self.backend!r} runs on CPU only; use 'torch' for {device}")
        return self.backend

    def search(self, query_codes, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(distances int32 (Q, k), indices int64 (Q, k)); ascending distance, ties by index; k > N is clipped."""
        queries, k = self._checked_queries(query_codes, k)
        device = queries.device
        backend = self.resolve_backend(device)
        if queries.shape[0] == 0:
            return torch.empty(0, k, dtype=torch.int32, device=device), torch.empty(0, k, dtype=torch.int64, device=device)
        if backend == "torch":
            return self._search_torch(queries, k)
        search = self._search_numba if backend == "numba" else self._search_faiss
        dist, idx = search(queries, k)
        return torch.from_numpy(dist).to(device), torch.from_numpy(idx).to(device)

    def average_precisions(self, query_codes, k: int, query_labels: np.ndarray,
                           db_labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per query, AP (float64) and relevant items found (int64) in its top k (DeepHash convention), against
        packed label masks: uint64 (Q, W) and (N, W), relevant = a shared bit. The numba backend scores each
        ranking where it is made, so no (Q, k) ranking is kept; the others search, then score."""
        from padhash.retrieval._numba_kernels import ranking_ap_hits

        queries, k = self._checked_queries(query_codes, k)
        if (query_labels.ndim != 2 or db_labels.ndim != 2 or query_labels.shape[0] != queries.shape[0]
                or db_labels.shape[0] != len(self) or query_labels.shape[1] != db_labels.shape[1]):
            raise PadhashError(f"label masks of shapes {query_labels.shape} and {db_labels.shape} do not fit "
                               f"{queries.shape[0]} queries and {len(self)} database items")
        if queries.shape[0] == 0:
            return np.zeros(0, np.float64), np.zeros(0, np.int64)
        if self.resolve_backend(queries.device) == "numba":
            ap, hits = np.empty(queries.shape[0], np.float64), np.empty(queries.shape[0], np.int64)
            self._numba_topk(queries, k, np.empty((0, k), np.int32), np.empty((0, k), np.int64), query_labels,
                             np.ascontiguousarray(db_labels.T), ap, hits)
            return ap, hits
        ranked = np.ascontiguousarray(self.search(queries, k)[1].cpu().numpy())
        ap, hits, _ = ranking_ap_hits(ranked, query_labels, db_labels)
        return ap, hits

    def _checked_queries(self, query_codes, k) -> tuple[torch.Tensor, int]:
        queries = check_codes(query_codes, "query codes")
        if queries.shape[1] != self.bits:
            raise PadhashError(f"query codes have {queries.shape[1]} bits but the database has {self.bits}")
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise PadhashError(f"k must be a positive integer, got {k!r}")
        return queries, min(int(k), len(self))

    def _prepare(self, key, build):
        if key not in self._prepared:
            self._prepared[key] = build()
        return self._prepared[key]

    def _search_numba(self, queries: torch.Tensor, k: int) -> tuple[np.ndarray, np.ndarray]:
        out_dist = np.empty((queries.shape[0], k), np.int32)
        out_idx = np.empty((queries.shape[0], k), np.int64)
        no_labels = np.empty((0, 0), np.uint64)
        self._numba_topk(queries, k, out_dist, out_idx, no_labels, no_labels, np.empty(0, np.float64),
                         np.empty(0, np.int64))
        return out_dist, out_idx

    def _numba_topk(self, queries: torch.Tensor, k: int, out_dist: np.ndarray, out_idx: np.ndarray,
                    query_labels: np.ndarray, db_label_words: np.ndarray, ap: np.ndarray, hits: np.ndarray) -> None:
        """The numba kernel on packed queries and database: rankings into out_dist / out_idx, or, with ap / hits of
        length Q, the scores against packed labels (see hamming_topk_packed)."""
        import numba

        from padhash.retrieval._numba_kernels import hamming_topk_packed

        # The packed layout the distance loop is fastest on here (see _numba_kernels._chunk_distances).
        words = numba_layout() == "words"
        word_bytes, word_type = (8, np.uint64) if words else (4, np.uint8)
        db_words = self._prepare(("numba", words), lambda: np.ascontiguousarray(
            pack_checked_codes(self.db_codes, word_bytes=word_bytes).view(word_type).T))
        query_words = pack_checked_codes(queries, word_bytes=word_bytes).view(word_type)
        # Distances are kept in bytes up to 128 bits (the compares' bound, up to bits + 1, must fit a lane), signed
        # ones while that bound fits one: cheaper compares on AVX2.
        lane_dtype = np.int8 if self.bits <= 126 else np.uint8 if self.bits <= 128 else np.uint16
        per_query = len(self) * np.dtype(lane_dtype).itemsize
        block = self.block_size or max(1, min(_NUMBA_BLOCK, _NUMBA_BLOCK_BYTES // per_query))
        hamming_topk_packed(query_words, db_words, k, self.bits, block, numba.get_num_threads(), np.empty(0, lane_dtype),
                            out_dist, out_idx, query_labels, db_label_words, ap, hits)

    def _search_faiss(self, queries: torch.Tensor, k: int) -> tuple[np.ndarray, np.ndarray]:
        import faiss

        def build():
            packed = pack_checked_codes(self.db_codes)
            index = faiss.IndexBinaryFlat(packed.shape[1] * 8)
            index.add(packed)
            return index

        index = self._prepare("faiss", build)
        packed_queries = pack_checked_codes(queries)
        n_db = len(self)
        block = self.block_size or packed_queries.shape[0]
        out_dist = np.empty((packed_queries.shape[0], k), np.int32)
        out_idx = np.empty((packed_queries.shape[0], k), np.int64)
        for q0 in range(0, packed_queries.shape[0], block):
            rows = packed_queries[q0:q0 + block]
            # Search with a larger k until the tie group at the k-th distance is complete for every row.
            search_k = k
            pending = np.arange(rows.shape[0])
            while pending.size:
                dist, idx = index.search(rows[pending], search_k)
                complete = (dist[:, -1] > dist[:, k - 1]) | (search_k >= n_db)
                done = pending[complete]
                # Stable order: sort each row by the unique key distance * N + index.
                key = np.sort(dist[complete].astype(np.int64) * n_db + idx[complete], axis=1)[:, :k]
                out_dist[q0 + done] = key // n_db
                out_idx[q0 + done] = key % n_db
                pending = pending[~complete]
                search_k = min(n_db, search_k * 2)
        return out_dist, out_idx

    def _search_torch(self, queries: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        device = queries.device
        # ±1 dot products are integers of magnitude <= bits: exact in float16 up to 2048 (CPU float16 matmul is slow).
        dtype = torch.float16 if device.type == "cuda" and self.bits <= 2048 else torch.float32
        db = self._prepare(("torch", str(device), dtype), lambda: self.db_codes.to(device=device, dtype=dtype))
        n_db = db.shape[0]
        db_index = torch.arange(n_db, device=device)
        block = self.block_size or max(1, _TORCH_BLOCK_ELEMENTS.get(device.type, 1 << 23) // n_db)
        out_dist = torch.empty(queries.shape[0], k, dtype=torch.int32, device=device)
        out_idx = torch.empty(queries.shape[0], k, dtype=torch.int64, device=device)
        for q0 in range(0, queries.shape[0], block):
            dots = queries[q0:q0 + block].to(dtype) @ db.T
            dist = (self.bits - dots.to(torch.int64)) // 2
            key = torch.topk(dist * n_db + db_index, k, dim=1, largest=False, sorted=True).values
            out_dist[q0:q0 + block] = (key // n_db).to(torch.int32)
            out_idx[q0:q0 + block] = key % n_db
        return out_dist, out_idx


def numba_layout() -> str:
    """``words`` (uint64) where the CPU numba compiles for has a 64-bit vector popcount (AVX-512 VPOPCNTDQ), else
    ``bytes`` (byte planes); ``PADHASH_NUMBA_LAYOUT=words|bytes`` overrides (tests run both)."""
    chosen = os.environ.get("PADHASH_NUMBA_LAYOUT")
    return chosen if chosen in ("words", "bytes") else _cpu_layout()


@functools.cache
def _cpu_layout() -> str:
    from llvmlite import binding
    from numba.core import config

    features = config.CPU_FEATURES or binding.get_host_cpu_features().flatten()
    return "words" if "+avx512vpopcntdq" in features.split(",") else "bytes"


def hamming_topk(query_codes, db_codes, k: int, backend: str = "auto") -> tuple[torch.Tensor, torch.Tensor]:
    """One-shot :meth:`HammingIndex.search`."""
    return HammingIndex(db_codes, backend).search(query_codes, k)
