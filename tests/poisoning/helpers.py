"""A tiny hash net and CSQ-like loss for the crafting unit tests, the tiny real-stack pipeline config and its data."""
import numpy as np
import torch
from torch import nn

CLASSES, TRAIN_PER_CLASS, TEST_PER_CLASS = (0, 1, 7), 20, 4


def write_tiny_digits(path) -> str:
    """scikit-learn digits of 3 classes at their native 8×8, as a .npz that the real `npz` loader reads with its
    paper preset (train = database = x_train, queries = x_test)."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.repeat(bunch.images[:, None] / 16.0, 3, axis=1).astype(np.float32)  # NCHW [0, 1]
    train, test = [], []
    for new, digit in enumerate(CLASSES):
        idx = np.flatnonzero(bunch.target == digit)
        train += [(i, new) for i in idx[:TRAIN_PER_CLASS]]
        test += [(i, new) for i in idx[TRAIN_PER_CLASS:TRAIN_PER_CLASS + TEST_PER_CLASS]]
    np.savez(path, x_train=images[[i for i, _ in train]], y_train=np.array([c for _, c in train]),
             x_test=images[[i for i, _ in test]], y_test=np.array([c for _, c in test]),
             class_names=np.array([str(d) for d in CLASSES]))
    return str(path)


class TinyHashNet(nn.Module):
    def __init__(self, bits: int = 8, size: int = 8):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten())
        self.hash_layer = nn.Linear(4 * size * size, bits)

    def forward(self, x):
        return self.hash_layer(self.features(x))


class CentreLoss(nn.Module):
    """CSQ-like: BCE of (u+1)/2 towards the ±1 centre of the label."""

    def __init__(self, num_classes: int, bits: int, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.centers = torch.randint(0, 2, (num_classes, bits), generator=g).float() * 2 - 1

    def forward(self, u, labels, index=None):
        centre = (labels @ self.centers).sign()
        p = (torch.tanh(u) + 1) / 2
        return nn.functional.binary_cross_entropy(p.clamp(1e-6, 1 - 1e-6), (centre + 1) / 2)


def tiny_config(npz_path: str, **over) -> dict:
    """The ladder on the tiny digits with the real stack: small CNN, 8 bits, a few epochs and crafting steps."""
    data = {
        "data": {"name": "npz", "root": npz_path},
        "victim": {"method": "csq", "bits": 16, "backbone": "smallcnn", "epochs": 3, "batch_size": 16,
                   "hflip": False},
        "surrogate": {"stolen_fraction": 0.5},
        "attack": {"steps": 2, "poison_count": 6, "eps": 16 / 255, "shift": 1, "flip": False},
        "eval": {"topk": 10},
        "pairs": 2,
        "seeds": [0],
    }
    data.update(over)
    return data
