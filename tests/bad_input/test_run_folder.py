"""Nothing a user owns is overwritten: foreign folders refused, failed first calls cleaned up, one command per
folder at a time (the lock), nested entry points of one command allowed."""
import fcntl
import os

import pytest

from padhash.errors import PadhashError
from padhash.runs import LOCK_NAME, run_folder
from tests.bad_input.helpers import DHTA_TINY, TRAIN, assert_one_line, cli, dhta_config


def test_out_holding_the_users_files_is_refused(tmp_path, tiny_npz, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "model.safetensors").write_bytes(b"my model")
    (out / "metrics.json").write_text("{}")
    code, _, err = cli([*TRAIN, "--data-root", tiny_npz, "--out", out], capsys)
    assert_one_line(code, err, "not a padhash run", "metrics.json")
    assert (out / "model.safetensors").read_bytes() == b"my model" and sorted(os.listdir(out)) == [
        "metrics.json", "model.safetensors"]


def test_failed_first_call_leaves_no_config_so_the_corrected_command_reuses_the_folder(tmp_path, tiny_npz, capsys):
    out = tmp_path / "r"
    out.mkdir()  # an empty folder the user made stays, empty
    code, _, err = cli([*TRAIN, "--data-root", tmp_path / "small.npz", "--out", out], capsys)
    assert code == 2 and os.listdir(out) == []
    code, _, err = cli([*TRAIN, "--data-root", tiny_npz, "--out", out], capsys)
    assert code == 0, err


def test_a_different_config_on_a_finished_run_is_refused(tiny_run, tiny_npz, capsys):
    before = (tiny_run / "config.yaml").read_text()
    code, _, err = cli([*TRAIN, "--data-root", tiny_npz, "--bits", "8", "--out", tiny_run], capsys)
    assert_one_line(code, err, "different config")
    assert (tiny_run / "config.yaml").read_text() == before


def test_concurrent_commands_on_one_out_are_refused_by_the_lock(tmp_path, tiny_npz, capsys):
    out = tmp_path / "busy"
    out.mkdir()
    fd = os.open(out / LOCK_NAME, os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)  # another command holds the folder (flock locks per open file)
    try:
        code, _, err = cli([*TRAIN, "--data-root", tiny_npz, "--out", out], capsys)
        assert_one_line(code, err, "another padhash command is running")
        assert sorted(os.listdir(out)) == [LOCK_NAME]
        with pytest.raises(PadhashError, match="another padhash command"):  # the Python API, same check
            with run_folder(out):
                pass
    finally:
        os.close(fd)
    code, _, err = cli([*TRAIN, "--data-root", tiny_npz, "--out", out], capsys)
    assert code == 0, err


def test_the_lock_is_reentrant_within_one_command(tmp_path):
    with run_folder(tmp_path / "r") as out:
        with run_folder(out):  # a nested entry point (e.g. a defense running its attack) does not deadlock
            (out / "results.json").write_text('{"trials": [1]}')
    with run_folder(tmp_path / "r"):  # released afterwards
        pass


def test_a_run_folder_inside_is_padhash_content(tmp_path):
    (tmp_path / "d" / "attack").mkdir(parents=True)
    (tmp_path / "d" / "attack" / "results.json").write_text('{"trials": []}')
    with run_folder(tmp_path / "d"):
        pass


@pytest.mark.slow
def test_a_second_dhta_run_of_another_config_on_the_same_out_is_refused_and_the_first_kept(tmp_path, capsys):
    """Issue #21's data loss: both runs exited 0 and the second one's results were gone."""
    out = tmp_path / "run"
    configs = [dhta_config(tmp_path / f"dhta-{i}.yaml", attack={**DHTA_TINY["attack"], "steps": iterations})
               for i, iterations in enumerate((2, 3))]
    command = lambda cfg: ["attack", "dhta", "--config", cfg, "--out", out, "--no-progress"]  # noqa: E731
    code, _, err = cli(command(configs[0]), capsys)
    assert code == 0, err
    before = {p: p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    assert {out / "results.json", out / "report.md"} <= set(before)
    code, stdout, err = cli(command(configs[1]), capsys)
    assert_one_line(code, err, "results.json", "different config")
    assert "full report" not in stdout
    assert {p: p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()} == before
