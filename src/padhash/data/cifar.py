"""CIFAR-10 python batches from a folder, read with a restricted unpickler (numpy arrays only, never code)."""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from padhash.data.arrays import build_from_arrays
from padhash.data.dataset import RetrievalDataset, dataset_root, register
from padhash.errors import PadhashError

CIFAR_TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR_TEST_FILE, CIFAR_META_FILE = "test_batch", "batches.meta"


def _numpy_reconstruct():
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct
    return _reconstruct


def _numpy_scalar(dtype, data=None):
    """numpy scalars (labels re-pickled by Python 3), of plain dtypes only: never an object."""
    if not isinstance(dtype, np.dtype) or dtype.hasobject or not isinstance(data, bytes):
        raise pickle.UnpicklingError("numpy scalar of an object dtype")
    return np.frombuffer(data, dtype=dtype, count=1)[0]


def _latin1_bytes(text, encoding="latin1"):
    """`_codecs.encode(str, 'latin1')`: how protocol 2 under Python 3 writes bytes; nothing else is encoded."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError("_codecs.encode used for something other than bytes")
    return text.encode("latin1")


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickles plain containers and numpy arrays only: any other global (os.system, ...) is refused,
    so a tampered batch file cannot run code."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct(),
        ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct(),
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("numpy.core.multiarray", "scalar"): _numpy_scalar,
        ("numpy._core.multiarray", "scalar"): _numpy_scalar,
        ("_codecs", "encode"): _latin1_bytes,
    }

    def __init__(self, file, source: str):
        super().__init__(file, encoding="bytes")  # the CIFAR batches were written by Python 2
        self.source = source

    def find_class(self, module: str, name: str):
        found = self.ALLOWED.get((module, name))
        if found is None:
            raise PadhashError(f"{self.source}: refused to unpickle {module}.{name} "
                               "(only numpy arrays are allowed in a CIFAR-10 batch)")
        return found


def restricted_load(path: Path):
    """Load a pickle file with `RestrictedUnpickler`; a missing or unreadable file raises PadhashError naming it."""
    if not path.is_file():
        raise PadhashError(f"{path}: no such file")
    try:
        with open(path, "rb") as fh:
            return RestrictedUnpickler(fh, str(path)).load()
    except PadhashError:
        raise
    except Exception as exc:  # any malformed pickle: the message names the file, never a traceback
        raise PadhashError(f"{path}: not a readable CIFAR-10 python batch ({exc.__class__.__name__}: {exc})") from None


def _get(batch: dict, key: str, path: Path):
    for k in (key.encode(), key):
        if k in batch:
            return batch[k]
    raise PadhashError(f"{path}: not a CIFAR-10 python batch (no {key!r} entry)")


def read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One batch file → (uint8 images (N, 32, 32, 3), int64 labels (N,))."""
    batch = restricted_load(path)
    if not isinstance(batch, dict):
        raise PadhashError(f"{path}: not a CIFAR-10 python batch (expected a dict, got {type(batch).__name__})")
    data = np.asarray(_get(batch, "data", path))
    labels = np.asarray(_get(batch, "labels", path))
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise PadhashError(f"{path}: data must be uint8 of shape (N, 3072), got {data.dtype} {data.shape}")
    if labels.ndim != 1 or len(labels) != len(data) or not np.issubdtype(labels.dtype, np.integer):
        raise PadhashError(f"{path}: {len(data)} images but labels of shape {labels.shape} ({labels.dtype})")
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise PadhashError(f"{path}: labels must be 0..9, found {labels.min()}..{labels.max()}")
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels.astype(np.int64)


@register("cifar10", "CIFAR-10 python batches in a folder (root: data_batch_1..5, test_batch, batches.meta); "
                     "preset paper (50k train = database, 10k queries) or deephash (per class 100 query, "
                     "500 train, rest database)")
def load_cifar10(root: str | None, *, seed: int = 0, image_size: int | None = None, preset: str | None = None,
                 query_per_class: int | None = None, train_per_class: int | None = None,
                 max_queries: int | None = None) -> RetrievalDataset:
    folder = dataset_root(root, "cifar10", "the folder holding data_batch_1..5 and test_batch")
    meta = restricted_load(folder / CIFAR_META_FILE)
    names = _get(meta, "label_names", folder / CIFAR_META_FILE) if isinstance(meta, dict) else None
    if not isinstance(names, list) or len(names) != 10:
        raise PadhashError(f"{folder / CIFAR_META_FILE}: expected a list of 10 label_names")
    class_names = [n.decode() if isinstance(n, bytes) else str(n) for n in names]
    train = [read_cifar_batch(folder / f) for f in CIFAR_TRAIN_FILES]
    test_x, test_y = read_cifar_batch(folder / CIFAR_TEST_FILE)
    parts = {"train": (np.concatenate([x for x, _ in train]), np.concatenate([y for _, y in train])),
             "test": (test_x, test_y)}
    return build_from_arrays("cifar10", str(folder), parts, class_names, preset=preset, seed=seed,
                             image_size=image_size, query_per_class=query_per_class, train_per_class=train_per_class,
                             max_queries=max_queries)
