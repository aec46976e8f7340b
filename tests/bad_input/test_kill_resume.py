"""SIGKILL a small poisoning ladder (none / witches_brew / padhash / label_flip) at several points, resume it with the
same command each time: the finished run folder equals an uninterrupted run's, byte for byte, no partial file left.

Where the process is when it dies is made certain by tests/bad_input/stall.py: the chosen call stalls (after writing
what the real run wrote up to it) and touches a marker outside the run folder; the test kills on that marker."""
import signal
import subprocess

import pytest
import yaml

from padhash.records import ResultsFile
from tests.bad_input.helpers import padhash_process, wait_for
from tests.poisoning.helpers import tiny_config, write_tiny_digits

# (name, the stall: function, regex on its path arguments, nth matching call, before / after the real call)
KILL_POINTS = [
    ("crafting witches_brew, step 2", "padhash.attacks.poisoning.craft:strict_matching_loss", "", 2, "before"),
    ("retraining the poisoned victim, after epoch 1", "padhash.hashing.trainer:_save_checkpoint",
     r"models/victim-[0-9a-f]+/", 1, "after"),
    ("writing results.json (temp file written, not renamed)", "os:replace", r"results\.json$", 1, "before"),
]


def _files(run):
    """Every file of a run folder but the per-trial logs, which gain one section per attempt (a killed run has more)."""
    return {str(p.relative_to(run)): p.read_bytes() for p in sorted(run.rglob("*"))
            if p.is_file() and p.relative_to(run).parts[0] != "logs"}


def _state(run):
    trials = [t["method"] for t in ResultsFile.load(run)["trials"]] if (run / "results.json").exists() else []
    crafted = sorted(p.name for p in (run / "poisons").glob("*.safetensors")) if (run / "poisons").exists() else []
    return trials, len(crafted), sorted(p.name for p in run.rglob("*.tmp"))


@pytest.mark.slow
def test_kill_9_during_a_poisoning_ladder_resumes_to_byte_identical_results(tmp_path):
    npz = write_tiny_digits(tmp_path / "digits.npz")
    config = tmp_path / "ladder.yaml"
    config.write_text(yaml.safe_dump(tiny_config(npz, pairs=1, victim={**tiny_config(npz)["victim"], "epochs": 2})))
    argv = lambda out: ["attack", "padhash", "--config", config, "--out", out, "--no-progress"]  # noqa: E731
    whole = padhash_process(argv(tmp_path / "whole"), stdout=subprocess.DEVNULL)  # meanwhile, on the other core

    out, states = tmp_path / "killed", []
    for i, (where, *stall) in enumerate(KILL_POINTS):
        marker = tmp_path / f"stalled-{i}"
        proc = padhash_process(argv(out), stall=[*stall, marker], stdout=subprocess.DEVNULL)
        wait_for(marker, proc)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
        states.append(_state(out))
    # each kill hit where it was meant to: mid-crafting (nothing crafted kept), mid-retraining (the poisons kept, no
    # trial yet), mid-write (the record's temp file beside the old results.json)
    assert states == [(["none"], 0, []), (["none"], 1, []), (["none"], 1, states[2][2])], states
    assert len(states[2][2]) == 1 and states[2][2][0].startswith(".results.json."), states

    resumed = padhash_process(argv(out), stdout=subprocess.DEVNULL)
    _, err = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, err
    _, err = whole.communicate(timeout=600)
    assert whole.returncode == 0, err
    assert not list(out.rglob("*.tmp")), "no partial file left"
    expected, got = _files(tmp_path / "whole"), _files(out)
    assert got["results.json"] == expected["results.json"]
    assert sorted(got) == sorted(expected)
    assert [name for name in expected if got[name] != expected[name]] == []
    assert [t["method"] for t in ResultsFile.load(out)["trials"]] == ["none", "witches_brew", "padhash", "label_flip"]
