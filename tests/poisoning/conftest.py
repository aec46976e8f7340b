"""Tiny real data for the pipeline tests: scikit-learn digits of 3 classes at their native 8×8, as a .npz that the
real `npz` loader reads with its paper preset (train = database = x_train, queries = x_test)."""
import numpy as np
import pytest
from sklearn.datasets import load_digits

CLASSES, TRAIN_PER_CLASS, TEST_PER_CLASS = (0, 1, 7), 20, 4


@pytest.fixture(scope="session")
def tiny_npz(tmp_path_factory):
    bunch = load_digits()
    images = np.repeat(bunch.images[:, None] / 16.0, 3, axis=1).astype(np.float32)  # NCHW [0, 1]
    train, test = [], []
    for new, digit in enumerate(CLASSES):
        idx = np.flatnonzero(bunch.target == digit)
        train += [(i, new) for i in idx[:TRAIN_PER_CLASS]]
        test += [(i, new) for i in idx[TRAIN_PER_CLASS:TRAIN_PER_CLASS + TEST_PER_CLASS]]
    path = tmp_path_factory.mktemp("data") / "tiny_digits.npz"
    np.savez(path, x_train=images[[i for i, _ in train]], y_train=np.array([c for _, c in train]),
             x_test=images[[i for i, _ in test]], y_test=np.array([c for _, c in test]),
             class_names=np.array([str(d) for d in CLASSES]))
    return str(path)

