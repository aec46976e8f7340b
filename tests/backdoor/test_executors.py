"""CIBA on the executors: a tiny Table 1 ladder (4 trials) writes the same results.json bytes on local, on a pool
of 2 processes × 1 thread and on local Ray."""
import json
import shutil

import pytest
import yaml

from padhash.cli import main
from padhash.experiments.executors import log_path
from padhash.runs import LOCK_NAME
from tests.experiments.helpers import padhash_in_fresh_process

from .test_end_to_end import TINY

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    root = tmp_path_factory.mktemp("ciba-exec")
    (root / "ciba.yaml").write_text(yaml.safe_dump(TINY))
    done = padhash_in_fresh_process(["attack", "ciba", "--config", root / "ciba.yaml", "--out", root / "local",
                                     "--no-progress", "--executor", "local", "--threads", "1"])
    assert done.returncode == 0, done.stderr
    return root


def _attack(root, out, executor, *extra):
    return main(["attack", "ciba", "--config", str(root / "ciba.yaml"), "--out", str(out), "--no-progress",
                 "--executor", executor, "--threads", "1", *extra])


@pytest.mark.parametrize("executor", ["processes", "ray"])
def test_ciba_ladder_writes_the_local_bytes(reference, tmp_path, executor):
    if executor == "ray":
        pytest.importorskip("ray")
    out = tmp_path / executor
    shutil.copytree(reference / "local" / "victim", out / "victim")  # the clean victim the parent shares
    (out / LOCK_NAME).touch()
    assert _attack(reference, out, executor, "--workers", "2") == 0
    assert (out / "results.json").read_bytes() == (reference / "local" / "results.json").read_bytes()
    keys = [t["key"] for t in json.loads((out / "results.json").read_text())["trials"]]
    assert len(keys) == 4 and all(log_path(out / "logs", k).is_file() for k in keys)
