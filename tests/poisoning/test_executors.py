"""The PADHASH ladder on the executors: a tiny 2-pair ladder writes the same results.json on local, on a pool of
2 processes × 1 thread and on local Ray (crafting diagnostics to float32 rounding, see DIAGNOSTICS), while the
worker running one crafted trial is killed mid-run."""
import json
import shutil

import pytest
import yaml

from padhash.cli import main
from padhash.experiments.executors import TEST_KILL_ENV, log_path
from padhash.runs import LOCK_NAME
from tests.experiments.helpers import padhash_in_fresh_process

from .helpers import tiny_config

pytestmark = pytest.mark.slow

KILLED = "seed=0|pair=1|padhash"
# Crafting diagnostics (gradient cosines and norms, matching losses) were seen to differ in their last float32
# digit between processes (the first crafted trial in a fresh worker vs. the same trial later in a process), with
# identical poisons and every other number identical; they are compared to 1e-5 relative, everything else exactly.
DIAGNOSTICS = ("grad_cosine", "grad_norm_ratio", "matching_loss")


def _assert_same_results(run, reference):
    got, want = (json.loads((r / "results.json").read_text()) for r in (run, reference))
    if got == want:
        return
    def split(data):
        exact = json.loads(json.dumps(data))
        loose = []
        for record in exact["trials"] + list(exact["aggregates"].values()):
            for name in sorted(n for n in record if n.startswith(DIAGNOSTICS)):
                value = record.pop(name)
                loose += [value[k] for k in ("mean", "std", "n")] if isinstance(value, dict) else [value]
        return exact, loose
    (got_exact, got_loose), (want_exact, want_loose) = split(got), split(want)
    assert got_exact == want_exact
    assert got_loose == pytest.approx(want_loose, rel=1e-5)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, tiny_npz):
    """The local run (2 pairs × 4 rungs = 8 trials): the bytes every executor must write."""
    root = tmp_path_factory.mktemp("padhash-exec")
    (root / "padhash.yaml").write_text(yaml.safe_dump(tiny_config(tiny_npz)))
    done = padhash_in_fresh_process(["attack", "padhash", "--config", root / "padhash.yaml", "--out", root / "local",
                                     "--no-progress", "--executor", "local", "--threads", "1"])
    assert done.returncode == 0, done.stderr
    return root


def _attack(root, out, executor, *extra):
    return main(["attack", "padhash", "--config", str(root / "padhash.yaml"), "--out", str(out), "--no-progress",
                 "--executor", executor, "--threads", "1", *extra])


@pytest.mark.parametrize("executor", ["processes", "ray"])
def test_ladder_writes_the_local_bytes_and_survives_a_killed_worker(reference, tmp_path, monkeypatch, executor):
    if executor == "ray":
        pytest.importorskip("ray")
    out = tmp_path / executor
    (out / "models").mkdir(parents=True)
    for pattern in ("victim-clean-*", "surrogate-*"):  # what the parent trains for the trials to share
        for shared in (reference / "local" / "models").glob(pattern):
            shutil.copytree(shared, out / "models" / shared.name)
    (out / LOCK_NAME).touch()  # a padhash run folder that already holds its shared models
    monkeypatch.setenv(TEST_KILL_ENV, KILLED)  # that trial's worker SIGKILLs itself on its first attempt
    assert _attack(reference, out, executor, "--workers", "2") == 0
    _assert_same_results(out, reference / "local")
    assert log_path(out / "logs", KILLED).read_text().count("--- trial") == 2  # killed attempt + retry
    assert len(list((out / "logs").glob("*.log"))) == 8


def test_the_executor_section_of_a_config_stays_out_of_results(reference, tmp_path):
    data = yaml.safe_load((reference / "padhash.yaml").read_text())
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({**data, "executor": {"kind": "local", "threads": 1}}))
    out = tmp_path / "resumed"
    shutil.copytree(reference / "local", out)  # every trial done: the run only rewrites the report
    assert main(["attack", "padhash", "--config", str(tmp_path / "c.yaml"), "--out", str(out), "--no-progress"]) == 0
    assert (out / "results.json").read_bytes() == (reference / "local" / "results.json").read_bytes()
