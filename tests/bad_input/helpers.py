"""Shared inputs for the bad-input table: a tiny .npz data set, how to run the CLI (in this process or as a real
one, optionally stalled at a chosen call by tests/bad_input/stall.py) and check its one line."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from padhash.cli import main

TRAIN = ["train", "--dataset", "npz", "--method", "dpn", "--bits", "16", "--epochs", "1", "--batch-size", "16",
         "--no-progress"]
# the cheapest DHTA run: 16-px digits, 20 training images per class, a one-epoch victim, 2 queries, 2 iterations
DHTA_TINY = {"data": {"name": "digits", "image_size": 16, "options": {"train_per_class": 20}},
             "victim": {"epochs": 1, "bits": 16, "batch_size": 64}, "queries": 2, "n_t": 3,
             "methods": ["none", "dhta"], "attack": {"steps": 2, "eps": 8 / 255},
             "eval": {"topk": 50, "grid_queries": 1}}


def dhta_config(path, **over):
    """DHTA_TINY (top-level keys replaced by `over`) written to `path`; returns the path."""
    import yaml

    Path(path).write_text(yaml.safe_dump({**DHTA_TINY, **over}))
    return path


def arrays(n, size=16, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    x = rng.integers(0, 100, size=(n, size, size, 3))
    x[np.arange(n), :, :, y] += 150
    return x.astype(np.uint8), y


def write_npz(path, n_train=48, n_test=12, size=16, **extra):
    xt, yt = arrays(n_train, size)
    xq, yq = arrays(n_test, size, seed=1)
    np.savez(path, **{"x_train": xt, "y_train": yt, "x_test": xq, "y_test": yq, **extra})
    return path


def cli(argv, capsys):
    """(exit code, stdout, stderr) of `padhash ARGV` in this process."""
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def assert_one_line(code, err, *needles):
    """The contract of every bad input: exit code 2, one line on stderr, no traceback, the key path / file named."""
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("padhash"), err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


ROOT = Path(__file__).resolve().parents[2]


def padhash_process(argv, stall=None, env_extra=None, **kwargs):
    """`padhash ARGV` as a real process (stderr piped, text); `stall` = the arguments of tests/bad_input/stall.py."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)]), "OMP_NUM_THREADS": "1",
           **(env_extra or {})}
    entry = ["-m", "tests.bad_input.stall", *map(str, stall), "--"] if stall else ["-m", "padhash"]
    return subprocess.Popen([sys.executable, *entry, *map(str, argv)], env=env, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_default_sigint, **kwargs)


def _default_sigint() -> None:
    """The child starts with Ctrl-C as a user's shell gives it: an ignored or blocked SIGINT in the test process
    (left by a library earlier in the session) is inherited through exec and would make the SIGINT test hang."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def wait_for(path: Path, proc, timeout=300):
    """Wait until `path` exists while `proc` still runs (its stderr in the failure message when it ended)."""
    deadline = time.monotonic() + timeout
    while not Path(path).exists():
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)
