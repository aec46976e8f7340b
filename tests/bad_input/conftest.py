"""Fixtures of the bad-input table: a tiny .npz data set, a trained tiny run, a small tmpfs."""
import subprocess

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


@pytest.fixture
def small_tmpfs(tmp_path):
    """mount(size, read_only=False) -> a fresh tmpfs of that many bytes (remounted when called again); unmounted
    afterwards. Skips where mounting is not permitted (it needs root / CAP_SYS_ADMIN)."""
    folder = tmp_path / "tmpfs"
    folder.mkdir()
    mounted = []

    def mount(size, read_only=False):
        options = f"{'remount,' if mounted else ''}{'ro' if read_only else 'rw'},size={size}"
        try:
            done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True,
                                  text=True)
        except OSError as exc:
            pytest.skip(f"cannot run mount to make a small tmpfs ({exc})")
        if done.returncode != 0:
            if not mounted:
                pytest.skip(f"mounting a tmpfs is not permitted here (needs root): {done.stderr.strip()}")
            pytest.fail(done.stderr)
        mounted.append(size)
        return folder

    yield mount
    if mounted:
        subprocess.run(["umount", str(folder)], check=True)
