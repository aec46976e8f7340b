"""The PADHASH runner on executors: a tiny ladder writes the same results.json bytes on local, processes and local
Ray; a worker killed mid-trial costs only a retry; a resumed run skips finished trials and loads the shared models."""
import json
import shutil

import pytest
import yaml

from padhash.experiments import poisoning_trial
from padhash.runs import LOCK_NAME
from tests.experiments.test_executors import _attack as run_attack, _bytes, check_killed_worker
from tests.poisoning.helpers import tiny_config

KILLED = "seed=0|pair=0|witches_brew"


@pytest.fixture(scope="module")
def reference(tiny_npz, tmp_path_factory):
    """The local run (3 trials on one pair; the executor: section in the config): the bytes every executor writes."""
    root = tmp_path_factory.mktemp("ph-exec")
    config = tiny_config(tiny_npz, pairs=1, methods=["none", "witches_brew", "label_flip"],
                         executor={"kind": "processes", "workers": 2})  # the command line's --executor wins
    (root / "padhash.yaml").write_text(yaml.safe_dump(config))
    assert _attack(root, root / "local", "local") == 0
    return root


def _attack(root, out, executor, *extra):
    return run_attack(root, out, executor, *extra, command="padhash")


def _copy_shared(reference, out):
    """The parent's shared models (clean victim, surrogate) and bases, not the trials' poisons or poisoned victims."""
    src = reference / "local"
    for folder in [*src.glob("models/victim-clean-*"), *src.glob("models/surrogate-*"), src / "bases"]:
        shutil.copytree(folder, out / folder.relative_to(src))
    (out / LOCK_NAME).touch()


def test_the_executor_section_stays_out_of_results(reference):
    results = json.loads(_bytes(reference / "local"))
    assert "executor" not in results["config"]
    assert [t["key"] for t in results["trials"]] == [f"seed=0|pair=0|{m}" for m in ("none", "witches_brew", "label_flip")]
    assert len(list((reference / "local" / "bases").glob("*.json"))) == 1  # the pair's bases, chosen once


def test_resume_skips_finished_trials_and_loads_the_shared_models(reference, tmp_path, monkeypatch):
    out = tmp_path / "resume"
    shutil.copytree(reference / "local", out)
    results = json.loads(_bytes(out))
    results["trials"] = [t for t in results["trials"] if t["key"] != KILLED]
    (out / "results.json").write_text(json.dumps(results))
    shared = {p: p.stat().st_mtime_ns for p in out.glob("models/*/*") if "victim-clean" in str(p) or "surrogate" in str(p)}
    assert shared
    ran = []
    real = poisoning_trial.poisoning_trial
    monkeypatch.setattr(poisoning_trial, "poisoning_trial", lambda t, key: ran.append(key) or real(t, key))
    assert _attack(reference, out, "local") == 0
    assert ran == [KILLED]  # only the missing record is computed again
    assert _bytes(out) == _bytes(reference / "local")
    assert {p: p.stat().st_mtime_ns for p in shared} == shared  # shared checkpoints loaded, never rewritten


@pytest.mark.slow
@pytest.mark.parametrize("executor", ["processes", "ray"])
def test_executor_writes_the_local_bytes_and_survives_a_killed_worker(reference, tmp_path, monkeypatch, executor):
    check_killed_worker(_attack, _copy_shared, reference, tmp_path, executor, KILLED, monkeypatch)
