"""run_trials runs one trial per identity and relabels its record for the others (PGD at each noise level of a
sweep); the transfer experiment gives PGD one identity across noise levels and the noise-robust attack one each."""
import dataclasses

import pytest

from padhash.executors import ExecutorConfig, TrialSpec, run_trials
from padhash.experiments.adversarial import AttackTrial, transfer_config_from_dict
from padhash.experiments.adversarial_transfer import _relabel, crafting_attack, trial_identity
from padhash.records import ResultsFile

CALLS: list[str] = []


def _trial(config, key):
    CALLS.append(key)
    return {"key": key, "value": config}


def _copy(record, spec):
    return {**record, "key": spec.key, "copied_from": record["key"]}


def _specs():
    return [TrialSpec("a", 1, "x"), TrialSpec("b", 2, "y"), TrialSpec("c", 1, "x"), TrialSpec("d", 3)]


def test_trials_of_one_identity_run_once_and_the_others_get_its_record(tmp_path):
    CALLS.clear()
    results = ResultsFile(tmp_path, {"c": 1})
    run_trials(_specs(), _trial, ExecutorConfig(), results, progress=False, relabel=_copy)
    assert CALLS == ["a", "b", "d"]
    assert [t["key"] for t in results.trials] == ["a", "b", "c", "d"]  # in the trials' order
    assert results.get("c") == {"key": "c", "value": 1, "copied_from": "a"}


def test_a_resumed_run_copies_a_finished_source_without_running_anything(tmp_path):
    results = ResultsFile(tmp_path, {"c": 1})
    for key, value in (("a", 1), ("b", 2), ("d", 3)):
        results.add({"key": key, "value": value})
    CALLS.clear()
    run_trials(_specs(), _trial, ExecutorConfig(), results, progress=False, relabel=_copy)
    assert CALLS == [] and results.get("c")["copied_from"] == "a"


def test_shared_identities_without_relabel_are_refused_before_anything_runs(tmp_path):
    CALLS.clear()
    with pytest.raises(ValueError, match="relabel"):
        run_trials(_specs(), _trial, ExecutorConfig(), ResultsFile(tmp_path, {}), progress=False)
    assert CALLS == []


def _noise_level_trials(method):
    cfg = transfer_config_from_dict({"sweep": {"attack.noise_level": [8 / 255, 16 / 255]},
                                     "methods": ["none", "pgd", "di", "transfer", "white_box"]})
    return [AttackTrial(dataclasses.replace(cfg, attack=dataclasses.replace(cfg.attack, noise_level=level)),
                        {"attack.noise_level": level}, f"attack.noise_level={level:.4f}", 0, method, "RUN", None,
                        "band") for level in (8 / 255, 16 / 255)]


@pytest.mark.parametrize("method,shared", [("none", True), ("pgd", True), ("di", True), ("white_box", True),
                                           ("transfer", False), ("transfer_mi", False)])
def test_only_methods_that_read_the_noise_level_are_crafted_at_each_level(method, shared):
    low, high = _noise_level_trials(method)
    assert (trial_identity(low) == trial_identity(high)) is shared
    if crafting_attack(method, low.cfg) is not None:  # the identity follows what the crafting reads
        assert (crafting_attack(method, low.cfg).effective() == crafting_attack(method, high.cfg).effective()) is shared


def test_a_relabelled_transfer_record_names_its_own_sweep_point():
    low, high = _noise_level_trials("pgd")
    record = {"key": "k-low", "method": "pgd@pairs=band,x", "eps": low.cfg.attack.eps, "transfer_rate": 0.5,
              "sweep": {"attack.noise_level": 8 / 255}}
    copy = _relabel(record, TrialSpec("k-high", high))
    assert copy["key"] == "k-high" and copy["reused_from"] == "k-low" and copy["transfer_rate"] == 0.5
    assert copy["sweep"] == {"attack.noise_level": 16 / 255} and copy["method"] == f"pgd@pairs=band,{high.label}"


ORPHAN_SCRIPT = """
import os, sys, time
from padhash.executors import ExecutorConfig, TrialSpec, run_trials
from padhash.records import ResultsFile

def slow(config, key):
    open(config, "w").write(str(os.getpid()))
    time.sleep(120)
    return {"key": key}

if __name__ == "__main__":
    run_trials([TrialSpec("t", sys.argv[2])], slow, ExecutorConfig(kind="processes", workers=1, threads=1),
               ResultsFile(sys.argv[1], {}), progress=False)
"""


def test_a_worker_stops_when_its_parent_is_killed(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    script, pid_file = tmp_path / "orphan.py", tmp_path / "worker.pid"
    script.write_text(ORPHAN_SCRIPT)
    parent = subprocess.Popen([sys.executable, str(script), str(tmp_path / "run"), str(pid_file)])
    deadline = time.time() + 60
    while not (pid_file.exists() and pid_file.read_text()) and time.time() < deadline:
        time.sleep(0.2)
    worker = int(pid_file.read_text())
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.time() + 15
    while time.time() < deadline:
        try:
            os.kill(worker, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    os.kill(worker, signal.SIGKILL)
    raise AssertionError("the worker outlived its killed parent by 15 s")
