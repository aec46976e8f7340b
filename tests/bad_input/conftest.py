"""Fixtures of the bad-input table: a tiny .npz data set and a trained tiny run."""
import pytest

from padhash.cli import main
from tests.bad_input.helpers import TRAIN, write_npz


@pytest.fixture
def tiny_npz(tmp_path):
    return write_npz(tmp_path / "tiny.npz")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A finished `padhash train` run (one epoch on the tiny .npz) to damage in copies."""
    folder = tmp_path_factory.mktemp("run")
    npz = write_npz(folder / "tiny.npz")
    assert main([*TRAIN, "--data-root", str(npz), "--out", str(folder / "run")]) == 0
    return folder / "run"

