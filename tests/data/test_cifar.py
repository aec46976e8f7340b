import io
import pickle
import struct

import numpy as np
import pytest
import torch

from padhash.data import load_dataset
from padhash.data.cifar import RestrictedUnpickler, restricted_load
from padhash.errors import PadhashError

class Py2Pickler(pickle._Pickler):
    """Writes str and bytes as Python 2's STRING opcodes and names numpy.core.multiarray, like the official
    CIFAR-10 batches (which Python 3 reads with encoding="bytes")."""

    def save_bytes(self, obj):
        n = len(obj)
        self.write((pickle.SHORT_BINSTRING + bytes([n]) if n < 256 else pickle.BINSTRING + struct.pack("<i", n)) + obj)
        self.memoize(obj)

    def save_str(self, obj):
        self.save_bytes(obj.encode("latin-1"))

    dispatch = dict(pickle._Pickler.dispatch)
    dispatch[bytes] = save_bytes
    dispatch[str] = save_str


def _py2_dump(obj, path):
    buf = io.BytesIO()
    Py2Pickler(buf, protocol=2).dump(obj)
    path.write_bytes(buf.getvalue().replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n"))


def _fake_cifar(folder, per_batch=20, test=30, seed=0):
    rng = np.random.default_rng(seed)
    folder.mkdir(exist_ok=True)
    for name, n in [(f"data_batch_{i}", per_batch) for i in range(1, 6)] + [("test_batch", test)]:
        _py2_dump({"batch_label": name, "labels": [int(v) for v in np.arange(n) % 10],
                   "data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                   "filenames": [f"img_{i}.png" for i in range(n)]}, folder / name)
    _py2_dump({"label_names": [f"c{i}" for i in range(10)], "num_cases_per_batch": per_batch, "num_vis": 3072},
              folder / "batches.meta")
    return folder


def test_fake_batches_look_like_python2_ones(tmp_path):
    folder = _fake_cifar(tmp_path / "cifar")
    raw = (folder / "data_batch_1").read_bytes()
    assert b"cnumpy.core.multiarray\n_reconstruct" in raw and b"_codecs" not in raw
    batch = restricted_load(folder / "data_batch_1")
    assert set(batch) == {b"batch_label", b"labels", b"data", b"filenames"} and batch[b"data"].dtype == np.uint8


def test_cifar10_paper_preset(tmp_path):
    folder = _fake_cifar(tmp_path / "cifar")
    ds = load_dataset("cifar10", str(folder))
    assert ds.class_names == [f"c{i}" for i in range(10)]
    assert len(ds.train) == 100 and ds.train is ds.database and len(ds.query) == 30
    with open(folder / "data_batch_2", "rb") as fh:
        raw = pickle.load(fh, encoding="bytes")[b"data"][3]  # our own file: plain pickle is fine here
    expected = torch.from_numpy(raw.reshape(3, 32, 32)).float() / 255  # rows are R plane, G plane, B plane
    assert torch.allclose(ds.train.images([23])[0], expected)


def test_cifar10_deephash_preset(tmp_path):
    folder = _fake_cifar(tmp_path / "cifar", per_batch=40, test=40)
    ds = load_dataset("cifar10", str(folder), preset="deephash", query_per_class=2, train_per_class=5, seed=1)
    assert torch.all(ds.query.labels.sum(0) == 2) and torch.all(ds.train.labels.sum(0) == 5)
    assert len(ds.database) == 240 - 70 and ds.train is not ds.database
    with pytest.raises(PadhashError, match="too few for per-class split"):
        load_dataset("cifar10", str(folder), preset="deephash")  # 24 images per class < 100 + 500


class _Evil:
    def __reduce__(self):
        import os
        return (os.system, ("echo pwned",))


def test_restricted_unpickler_refuses_other_globals(tmp_path):
    evil = tmp_path / "data_batch_1"
    evil.write_bytes(pickle.dumps({b"data": _Evil()}, protocol=4))
    with pytest.raises(PadhashError, match=r"data_batch_1: refused to unpickle (posix|os|nt)\.system"):
        restricted_load(evil)
    folder = _fake_cifar(tmp_path / "cifar")
    (folder / "test_batch").write_bytes(pickle.dumps({b"data": _Evil()}, protocol=4))
    with pytest.raises(PadhashError, match="test_batch: refused to unpickle"):
        load_dataset("cifar10", str(folder))
    assert set(RestrictedUnpickler.ALLOWED) == {("numpy.core.multiarray", "_reconstruct"),
                                                ("numpy._core.multiarray", "_reconstruct"),
                                                ("numpy", "ndarray"), ("numpy", "dtype"),
                                                # Python 3 re-pickled batches: checked wrappers, never code
                                                ("numpy.core.multiarray", "scalar"),
                                                ("numpy._core.multiarray", "scalar"), ("_codecs", "encode")}


@pytest.mark.parametrize("damage, message", [
    (lambda f: (f / "data_batch_3").unlink(), "data_batch_3: no such file"),
    (lambda f: (f / "batches.meta").unlink(), "batches.meta: no such file"),
    (lambda f: (f / "data_batch_1").write_bytes(b"garbage"), "data_batch_1: not a readable CIFAR-10 python batch"),
    (lambda f: (f / "data_batch_2").write_bytes(pickle.dumps({b"data": np.zeros((5, 3072), np.uint8),
                                                               b"labels": [0] * 4})),
     "data_batch_2: 5 images but labels of shape (4,)"),
    (lambda f: (f / "test_batch").write_bytes(pickle.dumps({b"data": np.zeros((5, 100), np.uint8),
                                                             b"labels": [0] * 5})),
     "test_batch: data must be uint8 of shape (N, 3072)"),
    (lambda f: (f / "data_batch_4").write_bytes(pickle.dumps({b"labels": [0]})),
     "data_batch_4: not a CIFAR-10 python batch"),
    (lambda f: (f / "data_batch_5").write_bytes(pickle.dumps({b"data": np.zeros((2, 3072), np.uint8),
                                                               b"labels": [0, 10]})),
     "data_batch_5: labels must be 0..9"),
])
def test_cifar10_errors_name_the_file(tmp_path, damage, message):
    folder = _fake_cifar(tmp_path / "cifar")
    damage(folder)
    with pytest.raises(PadhashError) as info:
        load_dataset("cifar10", str(folder))
    assert message in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(PadhashError, match="no such folder"):
        load_dataset("cifar10", str(tmp_path / "nowhere"))
