import numpy as np
import pytest
import torch

from padhash.data import load_dataset, shared_cifar10_subset
from padhash.errors import PadhashError


def _arrays(rng, n_train=40, n_test=10, classes=4, size=8):
    return dict(x_train=rng.integers(0, 256, (n_train, size, size, 3), dtype=np.uint8),
                y_train=np.arange(n_train) % classes,
                x_test=rng.integers(0, 256, (n_test, size, size, 3), dtype=np.uint8),
                y_test=np.arange(n_test) % classes)


def _save(tmp_path, name="toy.npz", **arrays):
    path = tmp_path / name
    np.savez(path, **arrays)
    return str(path)


def test_npz_paper_preset_hwc_uint8(tmp_path):
    arrays = _arrays(np.random.default_rng(0))
    arrays["class_names"] = np.array(["a", "b", "c", "d"])
    ds = load_dataset("npz", _save(tmp_path, **arrays))
    assert ds.name == "toy" and ds.class_names == ["a", "b", "c", "d"]
    assert ds.train is ds.database and len(ds.train) == 40 and len(ds.query) == 10
    x = ds.query.images()
    expected = torch.from_numpy(arrays["x_test"]).permute(0, 3, 1, 2).float() / 255
    assert x.shape == (10, 3, 8, 8) and torch.allclose(x, expected)
    assert torch.equal(ds.query.labels.argmax(1), torch.from_numpy(arrays["y_test"]))


def test_npz_nchw_float_multihot_with_database_and_resize(tmp_path):
    rng = np.random.default_rng(1)

    def y(n):  # multi-hot, every item carries at least one label
        return (rng.random((n, 3)) < 0.5).astype(np.int64) | np.eye(3, dtype=np.int64)[np.arange(n) % 3]
    path = _save(tmp_path, x_train=rng.random((12, 3, 8, 8), dtype=np.float32), y_train=y(12),
                 x_test=rng.random((6, 3, 8, 8), dtype=np.float32), y_test=y(6),
                 x_db=rng.random((9, 3, 8, 8), dtype=np.float32), y_db=y(9))
    ds = load_dataset("npz", path, image_size=4, max_queries=3)
    assert len(ds.train) == 12 and len(ds.database) == 9 and ds.train is not ds.database
    assert len(ds.query) == 3 and ds.database.images().shape == (9, 3, 4, 4)
    assert ds.num_classes == 3 and ds.database.labels.max() == 1 and (ds.database.labels.sum(1) >= 1).all()


def test_npz_deephash_preset_counts_and_determinism(tmp_path):
    path = _save(tmp_path, **_arrays(np.random.default_rng(2), n_train=80, n_test=20))
    ds = load_dataset("npz", path, preset="deephash", query_per_class=3, train_per_class=5, seed=7)
    assert torch.all(ds.query.labels.sum(0) == 3) and torch.all(ds.train.labels.sum(0) == 5)
    assert len(ds.database) == 100 - 12 - 20
    again = load_dataset("npz", path, preset="deephash", query_per_class=3, train_per_class=5, seed=7)
    assert torch.equal(ds.train.images(), again.train.images())
    mixed = _arrays(np.random.default_rng(2), n_train=80, n_test=20)
    mixed["x_test"] = mixed["x_test"].astype(np.float32) / 255  # float parts pooled with uint8 ones
    as_float = load_dataset("npz", _save(tmp_path, "mixed.npz", **mixed), preset="deephash", query_per_class=3,
                            train_per_class=5, seed=7)
    assert torch.allclose(as_float.database.images(), ds.database.images(), atol=1e-6)
    # the three splits are disjoint and cover the pooled images
    pooled = torch.cat([ds.query.images(), ds.train.images(), ds.database.images()]).flatten(1)
    assert len(torch.unique(pooled, dim=0)) == 100


BAD_NPZ = [
    (lambda a: a.pop("y_test"), "missing array(s) y_test"),
    (lambda a: a.update(y_train=np.arange(39) % 4), "y_train: expected 40 labels"),
    (lambda a: a.update(x_train=np.zeros((40, 8, 8), np.uint8)), "x_train: expected images of shape"),
    (lambda a: a.update(x_test=np.zeros((10, 8, 6, 3), np.uint8)), "x_test: images must be square"),
    (lambda a: a.update(x_test=np.full((10, 8, 8, 3), 2.0)), "x_test: float images must lie in [0, 1]"),
    (lambda a: a.update(y_train=np.arange(40) % 3, y_test=np.arange(10) % 3, class_names=np.array(list("abcd"))),
     "y_train: no images for class(es) 3 (d)"),
    (lambda a: a.update(y_train=np.eye(4)[np.arange(40) % 4], y_test=np.eye(5)[np.arange(10) % 5]),
     "y_test: 5 label columns, expected 4"),
    (lambda a: a.update(y_test=np.eye(4)[np.arange(10) % 4] * 2), "y_test: multi-hot labels must be 0 or 1"),
    (lambda a: a.update(y_test=np.arange(10) % 4 + 1, class_names=np.array(list("abcd"))),
     "y_test: class index out of range 0..3"),
    (lambda a: a.update(y_test=np.arange(10) + 0.5), "y_test: class indices must be integers"),
    (lambda a: a.update(x_test=np.zeros((10, 4, 4, 3), np.uint8)), "x_test images are 4 pixels wide"),
]


@pytest.mark.parametrize("corrupt, message", BAD_NPZ)
def test_npz_errors_name_the_file(tmp_path, corrupt, message):
    arrays = _arrays(np.random.default_rng(3))
    corrupt(arrays)
    path = _save(tmp_path, **arrays)
    with pytest.raises(PadhashError) as info:
        load_dataset("npz", path)
    text = str(info.value)
    assert text.startswith(path) and message in text and "\n" not in text


def test_npz_unreadable_and_missing(tmp_path):
    with pytest.raises(PadhashError, match="no such file"):
        load_dataset("npz", str(tmp_path / "absent.npz"))
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(PadhashError, match="bad.npz: not a readable .npz file"):
        load_dataset("npz", str(bad))
    objects = tmp_path / "objects.npz"
    np.savez(objects, **_arrays(np.random.default_rng(0)), class_names=np.array([1, "b"], dtype=object))
    with pytest.raises(PadhashError, match="objects.npz: cannot read without unpickling"):
        load_dataset("npz", str(objects))
    with pytest.raises(PadhashError, match="unknown preset"):
        load_dataset("npz", _save(tmp_path, **_arrays(np.random.default_rng(0))), preset="both")
    with pytest.raises(PadhashError, match="deephash' only"):
        load_dataset("npz", _save(tmp_path, **_arrays(np.random.default_rng(0))), train_per_class=3)


def test_shared_cifar10_subset(shared_cifar_path):
    ds = shared_cifar10_subset()
    assert ds is not None and ds.class_names[0] == "airplane" and ds.num_classes == 10
    assert len(ds.train) == 4660 and len(ds.query) == 932 and ds.train is ds.database
    assert ds.query.images([0]).shape == (1, 3, 32, 32)
    assert torch.all(ds.train.labels.sum(0) >= 435)
    small = load_dataset("cifar10-subset", max_queries=100, seed=3)
    assert len(small.query) == 100 and torch.all(small.query.labels.sum(0) >= 8)
    assert torch.equal(small.query.labels, load_dataset("cifar10-subset", max_queries=100, seed=3).query.labels)


def test_shared_cifar10_subset_absent_is_none(tmp_path, monkeypatch):
    monkeypatch.setenv("PADHASH_SHARED_DATA", str(tmp_path))
    assert shared_cifar10_subset() is None
    with pytest.raises(PadhashError, match="cifar10_subset.npz: no such file"):
        load_dataset("cifar10-subset")


def test_a_missing_relative_root_names_the_working_directory_it_was_read_from(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(PadhashError, match=r"\.\./shared/data/x\.npz: no such file or folder .*working directory, "
                                           + str(tmp_path)):
        load_dataset("npz", "../shared/data/x.npz")
    (tmp_path / "here.npz").write_bytes(b"")  # relative and present: the loader's own checks take over
    with pytest.raises(PadhashError, match="not a readable .npz"):
        load_dataset("npz", "here.npz")
