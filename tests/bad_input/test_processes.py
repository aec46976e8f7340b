"""Cases that need a real process: a closed stdout (`| head`), SIGINT, and SIGKILL then resume."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.bad_input.helpers import TRAIN, write_npz

SRC = str(Path(__file__).resolve().parents[2] / "src")


def _padhash(argv, **kwargs):
    env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "padhash", *map(str, argv)], env=env, stderr=subprocess.PIPE,
                            text=True, **kwargs)


def _wait_for(path: Path, proc, timeout=120):
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def test_closed_stdout_exits_quietly(tmp_path):
    read, write = os.pipe()
    os.close(read)  # `padhash datasets | head` after head left
    proc = _padhash(["datasets"], stdout=write)
    os.close(write)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2 and "Traceback" not in err and "BrokenPipe" not in err, err


def _long_train(tmp_path, out, epochs):
    npz = write_npz(tmp_path / "tiny.npz", n_train=128)
    return [*TRAIN, "--data-root", npz, "--epochs", str(epochs), "--batch-size", "16", "--out", out]


@pytest.mark.slow
def test_sigint_exits_130_with_a_resume_hint(tmp_path):
    out = tmp_path / "r"
    proc = _padhash(_long_train(tmp_path, out, 500), stdout=subprocess.DEVNULL)
    _wait_for(out / "checkpoint" / "checkpoint.safetensors", proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "run the same command again to resume" in err and "Traceback" not in err


@pytest.mark.slow
def test_kill_9_during_train_resumes_to_byte_identical_files(tmp_path):
    argv = _long_train(tmp_path, tmp_path / "whole", 3)
    assert _padhash(argv, stdout=subprocess.DEVNULL).wait(timeout=300) == 0
    out = tmp_path / "killed"
    proc = _padhash(_long_train(tmp_path, out, 3), stdout=subprocess.DEVNULL)
    _wait_for(out / "checkpoint" / "checkpoint.safetensors", proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    resumed = _padhash(_long_train(tmp_path, out, 3), stdout=subprocess.DEVNULL)
    _, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    assert not list(out.rglob("*.tmp")), "no partial file left"
    for name in ("model.safetensors", "codes.npz", "checkpoint/checkpoint.safetensors"):
        assert (out / name).read_bytes() == (tmp_path / "whole" / name).read_bytes(), name
