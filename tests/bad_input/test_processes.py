"""Cases that need a real process: a closed stdout (`| head`), SIGINT, and SIGKILL then resume."""
import os
import shutil
import signal
import subprocess

import pytest

from tests.bad_input.helpers import ROOT, TRAIN, padhash_process, wait_for, write_npz


def test_closed_stdout_exits_quietly(tmp_path):
    read, write = os.pipe()
    os.close(read)  # `padhash datasets | head` after head left
    proc = padhash_process(["datasets"], stdout=write)
    os.close(write)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 2 and "Traceback" not in err and "BrokenPipe" not in err, err


@pytest.mark.slow
def test_read_only_install_and_home_still_run_the_numba_kernels(tiny_run, small_tmpfs):
    """numba caches beside the source or in the user's cache folder; with neither writable it raised "cannot cache
    function". Here the package lies on a read-only tmpfs and HOME / XDG_CACHE_HOME cannot be written."""
    install = small_tmpfs(64 * 2**20)
    shutil.copytree(ROOT / "src" / "padhash", install / "padhash", ignore=shutil.ignore_patterns("__pycache__"))
    small_tmpfs(64 * 2**20, read_only=True)
    unwritable = {"PYTHONPATH": str(install), "HOME": "/proc/padhash-home", "XDG_CACHE_HOME": "/proc/padhash-cache"}
    proc = padhash_process(["eval", tiny_run, "--index", "numba"], stdout=subprocess.PIPE,
                           env_extra={**unwritable, "NUMBA_CACHE_DIR": ""})
    out, err = proc.communicate(timeout=900)  # every kernel compiles, uncached
    assert proc.returncode == 0 and "Traceback" not in err and "cannot cache" not in err, err
    assert "mAP" in out and not list(install.rglob("*.nbi"))


def _long_train(tmp_path, out, epochs):
    npz = write_npz(tmp_path / "tiny.npz", n_train=128)
    return [*TRAIN, "--data-root", npz, "--epochs", str(epochs), "--batch-size", "16", "--out", out]


@pytest.mark.slow
def test_sigint_exits_130_with_a_resume_hint(tmp_path):
    out = tmp_path / "r"
    proc = padhash_process(_long_train(tmp_path, out, 500), stdout=subprocess.DEVNULL)
    wait_for(out / "checkpoint" / "checkpoint.safetensors", proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "run the same command again to resume" in err and "Traceback" not in err


@pytest.mark.slow
def test_kill_9_during_train_resumes_to_byte_identical_files(tmp_path):
    argv = _long_train(tmp_path, tmp_path / "whole", 3)
    assert padhash_process(argv, stdout=subprocess.DEVNULL).wait(timeout=300) == 0
    out = tmp_path / "killed"
    proc = padhash_process(_long_train(tmp_path, out, 3), stdout=subprocess.DEVNULL)
    wait_for(out / "checkpoint" / "checkpoint.safetensors", proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    resumed = padhash_process(_long_train(tmp_path, out, 3), stdout=subprocess.DEVNULL)
    _, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    assert not list(out.rglob("*.tmp")), "no partial file left"
    for name in ("model.safetensors", "codes.npz", "checkpoint/checkpoint.safetensors"):
        assert (out / name).read_bytes() == (tmp_path / "whole" / name).read_bytes(), name
