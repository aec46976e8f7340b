import os

import pytest
import torch

# Two cores on CI: one intra-op thread per test process keeps timings predictable.
torch.set_num_threads(int(os.environ.get("PADHASH_TEST_THREADS", "2")))

SHARED_DATA = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data")


@pytest.fixture
def shared_cifar_path():
    """../shared/data/cifar10_subset.npz, or skip when the shared data is absent."""
    path = os.path.abspath(os.path.join(SHARED_DATA, "cifar10_subset.npz"))
    if not os.path.exists(path):
        pytest.skip("shared CIFAR-10 subset not present")
    return path
