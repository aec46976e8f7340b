"""Executors: a tiny DHTA sweep on digits writes the same results.json bytes on local, processes and local Ray;
a worker killed mid-trial costs only a retry; a run killed as a whole resumes."""
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import yaml

from padhash.runs import LOCK_NAME
from padhash.cli import main
from padhash.errors import PadhashError
from padhash.executors import TEST_KILL_ENV, ExecutorConfig, executor_config, log_path

pytestmark = pytest.mark.slow

# Two seeds × three methods = 6 trials, each well under a second; one thread per trial so every executor computes
# with the same thread count (CPU float reductions can depend on it).
CONFIG = {"data": {"name": "digits", "image_size": 16, "options": {"train_per_class": 30}},
          "victim": {"epochs": 2, "bits": 16, "batch_size": 64}, "queries": 4, "n_t": 3,
          "attack": {"steps": 4, "eps": 8 / 255, "step_fraction": 0.25},
          "methods": ["none", "dhta", "anchor"], "seeds": [0, 1], "eval": {"topk": 50, "grid_queries": 1}}
KILLED = "seed=1|dhta"


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The local run: its results.json is what every executor must write; its victims/ seed the other runs."""
    root = tmp_path_factory.mktemp("exec")
    (root / "dhta.yaml").write_text(yaml.safe_dump(CONFIG))
    assert _attack(root, root / "local", "local") == 0
    return root


def _attack(root, out, executor, *extra, command="dhta"):
    """`padhash attack <command>` with root/<command>.yaml, one thread per trial (also the PADHASH tests')."""
    return main(["attack", command, "--config", str(root / f"{command}.yaml"), "--out", str(out), "--no-progress",
                 "--executor", executor, "--threads", "1", *extra])


def _copy_victims(reference, out):
    shutil.copytree(reference / "local" / "victims", out / "victims")
    (out / LOCK_NAME).touch()  # a padhash run folder that already holds its trained victims


def _bytes(run):
    return (run / "results.json").read_bytes()


def check_killed_worker(attack, copy_shared, reference, tmp_path, executor, killed, monkeypatch):
    """`attack(reference, out, executor, ...)` on a folder holding what the parent shares (`copy_shared`), with the
    worker running trial `killed` SIGKILLing itself on its first attempt: the retry completes the run, with the local
    run's results.json bytes and both attempts in its log."""
    if executor == "ray":
        pytest.importorskip("ray")
    out = tmp_path / executor
    copy_shared(reference, out)
    monkeypatch.setenv(TEST_KILL_ENV, killed)
    assert attack(reference, out, executor, "--workers", "2") == 0
    assert _bytes(out) == _bytes(reference / "local")
    assert log_path(out / "logs", killed).with_suffix(".killed").exists()
    assert log_path(out / "logs", killed).read_text().count("--- trial") == 2  # killed attempt + retry


@pytest.mark.parametrize("executor", ["processes", "ray"])
def test_executor_writes_the_local_bytes_and_survives_a_killed_worker(reference, tmp_path, monkeypatch, executor):
    check_killed_worker(_attack, _copy_victims, reference, tmp_path, executor, KILLED, monkeypatch)


def test_whole_run_killed_resumes_to_the_same_bytes(reference, tmp_path):
    out = tmp_path / "killed"
    _copy_victims(reference, out)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    cmd = [sys.executable, "-m", "padhash", "attack", "dhta", "--config", str(reference / "dhta.yaml"), "--out",
           str(out), "--no-progress", "--executor", "local", "--threads", "1"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if (out / "results.json").exists():
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert _attack(reference, out, "local") == 0
    assert _bytes(out) == _bytes(reference / "local")


def test_a_failing_trial_is_one_line_after_the_others(reference, tmp_path):
    out = tmp_path / "bad"
    _copy_victims(reference, out)
    (reference / "bad.yaml").write_text(yaml.safe_dump({**CONFIG, "n_t": 10 ** 6}))
    with pytest.raises(PadhashError, match=r"6 of 6 trials failed \(first: seed=0\|none: no target label"):
        from padhash.experiments.adversarial import query_config_from_dict
        from padhash.experiments.adversarial_query import run_query_attack
        run_query_attack(query_config_from_dict(yaml.safe_load((reference / "bad.yaml").read_text())), out,
                         progress=False)


def test_executor_config_merges_section_and_flags():
    cfg = executor_config({"kind": "processes", "workers": 4}, workers=2, ray_address=None)
    assert cfg == ExecutorConfig(kind="processes", workers=2)
    with pytest.raises(PadhashError, match="executor.kind"):
        executor_config({"kind": "slurm"})
    with pytest.raises(PadhashError, match="ray_address: only with kind ray"):
        executor_config(ray_address="auto")


def test_ray_that_does_not_start_is_a_one_line_error(tmp_path, monkeypatch):
    ray = pytest.importorskip("ray")
    from padhash.executors import TrialSpec, run_trials
    from padhash.records import ResultsFile

    def timed_out(**kwargs):
        raise Exception("The current node timed out during startup.\nmore")
    monkeypatch.setattr(ray, "init", timed_out)
    with pytest.raises(PadhashError, match=r"^Ray did not start \(a local instance\): The current node timed out"):
        run_trials([TrialSpec("a", None)], dict, ExecutorConfig(kind="ray"), ResultsFile(tmp_path, {}),
                   progress=False)
