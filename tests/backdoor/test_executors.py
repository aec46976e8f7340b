"""The CIBA runner on executors: a tiny Table 1 run writes the same results.json bytes on local, processes and
local Ray; a worker killed mid-trial costs only a retry; the executor: section stays out of results.json."""
import json
import shutil

import pytest
import yaml

from padhash.cli import main
from padhash.runs import LOCK_NAME
from tests.backdoor.test_end_to_end import TINY
from tests.experiments.test_executors import _attack as run_attack, _bytes, check_killed_worker

KILLED = "target=2|tri"  # num_targets 1 on digits with seed 0 draws target 2 (asserted below)
METHODS = ["none", "tri", "label_flip"]


def _attack(root, out, executor, *extra):
    return run_attack(root, out, executor, *extra, command="ciba")


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The local run (the config's executor: section is overridden by --executor local): the bytes to match."""
    root = tmp_path_factory.mktemp("ciba-exec")
    config = {**TINY, "methods": METHODS, "executor": {"kind": "processes", "workers": 2}}
    (root / "ciba.yaml").write_text(yaml.safe_dump(config))
    assert _attack(root, root / "local", "local") == 0
    return root


def _copy_shared(reference, out):
    """What the parent prepares (the clean victim and the trigger), not the trials' poisons or backdoored victims."""
    for folder in ("victim", "triggers"):
        shutil.copytree(reference / "local" / folder, out / folder)
    (out / LOCK_NAME).touch()


@pytest.mark.slow
def test_the_executor_section_stays_out_of_results(reference):
    results = json.loads(_bytes(reference / "local"))
    assert "executor" not in results["config"]
    assert [t["key"] for t in results["trials"]] == [f"target=2|{m}" for m in METHODS]
    assert len(list((reference / "local" / "triggers").glob("*.safetensors"))) == 1  # shared, crafted once


@pytest.mark.slow
@pytest.mark.parametrize("executor", ["processes", "ray"])
def test_executor_writes_the_local_bytes_and_survives_a_killed_worker(reference, tmp_path, monkeypatch, executor):
    check_killed_worker(_attack, _copy_shared, reference, tmp_path, executor, KILLED, monkeypatch)


def test_a_bad_executor_section_is_one_line_before_anything_trains(tmp_path, capsys):
    (tmp_path / "ciba.yaml").write_text(yaml.safe_dump({**TINY, "executor": {"kind": "processes", "workers": 0}}))
    assert main(["attack", "ciba", "--config", str(tmp_path / "ciba.yaml"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "executor.workers" in err
    assert not (tmp_path / "o" / "victim").exists()


@pytest.mark.slow
def test_two_workers_craft_two_targets_triggers_side_by_side_with_the_local_bytes(tmp_path):
    """The parent trains only the clean victim; the first trials (one per target, rows outer) craft the triggers,
    each once (the other trials of a target wait on its lock), and the numbers are the local run's."""
    (tmp_path / "ciba.yaml").write_text(yaml.safe_dump({**TINY, "num_targets": 2, "methods": ["none", "tri"]}))
    assert _attack(tmp_path, tmp_path / "local", "local") == 0
    assert _attack(tmp_path, tmp_path / "processes", "processes", "--workers", "2") == 0
    assert _bytes(tmp_path / "local") == _bytes(tmp_path / "processes")
    keys = [t["key"] for t in json.loads(_bytes(tmp_path / "processes"))["trials"]]
    assert [k.split("|")[1] for k in keys] == ["none", "none", "tri", "tri"]
    assert len(list((tmp_path / "processes" / "triggers").glob("*.safetensors"))) == 2
