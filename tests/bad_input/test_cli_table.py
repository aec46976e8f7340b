"""Issue #21's table, through the CLI: every bad input is exit code 2, one line naming the file or key path, no
traceback, and a run that failed before doing work leaves no folder behind (the corrected command can use it)."""
import os
import shutil
import zipfile

import numpy as np
import pytest
import torch

from tests.bad_input.helpers import TRAIN, assert_one_line, cli, write_npz


def _npz_with_bad_member(tmp):
    path = write_npz(tmp / "bad.npz")
    good = dict(np.load(path))
    with zipfile.ZipFile(path, "w") as archive:
        for name, value in good.items():
            if name == "x_test":
                archive.writestr("x_test.npy", b"\x93NUMPY\x01\x00\x20\x00{'descr': '<u1', 'shape': (3,")
            else:
                with archive.open(f"{name}.npy", "w") as fh:
                    np.lib.format.write_array(fh, value)
    return path


def _npz_with_corrupt_member(tmp):
    """A stored (uncompressed) member whose data bytes are damaged: the zip's CRC check fails on reading."""
    good = dict(np.load(write_npz(tmp / "ok.npz")))
    with zipfile.ZipFile(tmp / "crc.npz", "w") as archive:
        for name, value in good.items():
            with archive.open(f"{name}.npy", "w") as fh:
                np.lib.format.write_array(fh, value)
    raw = bytearray((tmp / "crc.npz").read_bytes())
    raw[raw.find(b"x_test.npy") + 200] ^= 0xFF  # inside x_test's array data
    (tmp / "crc.npz").write_bytes(bytes(raw))
    return tmp / "crc.npz"


def _truncated_npz(tmp):
    path = write_npz(tmp / "cut.npz")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _binary_config(tmp):
    (tmp / "bin.yaml").write_bytes(b"\xff\xfe\x00\x81binary")
    return ["--config", tmp / "bin.yaml"]


def _python_object_yaml(tmp):
    (tmp / "evil.yaml").write_text("train: !!python/object/apply:os.system ['echo pwned']\n")
    return ["--config", tmp / "evil.yaml"]


def _config(tmp, text):
    (tmp / "c.yaml").write_text(text)
    return ["--config", tmp / "c.yaml"]


# name -> (data set maker or None for the tiny one, extra argv maker, expected words in the one line)
CASES = {
    "images_too_small_for_the_network": (lambda t: write_npz(t / "s.npz", size=2), lambda t: [], ["do not fit"]),
    "npz_member_with_bad_npy_header": (_npz_with_bad_member, lambda t: [], ["bad.npz"]),
    "npz_member_with_corrupt_data": (_npz_with_corrupt_member, lambda t: [], ["crc.npz"]),
    "npz_truncated": (_truncated_npz, lambda t: [], ["cut.npz"]),
    "npz_empty_query_split": (lambda t: write_npz(t / "e.npz", n_test=0), lambda t: [], ["query split", "0 image"]),
    "npz_one_image": (lambda t: write_npz(t / "o.npz", n_train=1, n_test=1), lambda t: [], ["train split"]),
    "lr_inf": (None, lambda t: ["--lr", "inf"], ["train.lr", "finite"]),
    "lr_nan": (None, lambda t: ["--lr", "nan"], ["train.lr", "finite"]),
    "lr_negative": (None, lambda t: ["--lr", "-1"], ["lr"]),
    "lr_zero": (None, lambda t: ["--lr", "0"], ["lr"]),
    "lr_wrong_type": (None, lambda t: _config(t, "train: {lr: fast}\n"), ["train.lr", "number"]),
    "seed_negative": (None, lambda t: ["--seed", "-1"], ["train.seed", "non-negative"]),
    "seed_negative_in_train_config": (None, lambda t: _config(t, "train: {seed: -1}\n"),
                                      ["train.seed", "non-negative"]),
    "data_seed_negative": (None, lambda t: _config(t, "data: {seed: -3}\n"), ["data.seed"]),
    "seed_wrong_type": (None, lambda t: _config(t, "train: {seed: 1.5}\n"), ["train.seed", "integer"]),
    "bits_huge": (None, lambda t: ["--bits", "100000"], ["bits", "32768"]),
    "bits_zero": (None, lambda t: ["--bits", "0"], ["bits"]),
    "epochs_negative": (None, lambda t: ["--epochs", "-1"], ["epochs"]),
    "batch_size_one": (None, lambda t: ["--batch-size", "1"], ["batch_size"]),
    "batch_size_zero": (None, lambda t: ["--batch-size", "0"], ["batch_size"]),
    "topk_zero": (None, lambda t: ["--topk", "0"], ["topk"]),
    "weight_decay_nan": (None, lambda t: _config(t, "train: {weight_decay: .nan}\n"), ["train.weight_decay"]),
    "device_tpu9": (None, lambda t: ["--device", "tpu9"], ["train.device", "tpu9"]),
    "config_binary_not_utf8": (None, _binary_config, ["bin.yaml", "UTF-8"]),
    "config_python_object_yaml": (None, _python_object_yaml, ["evil.yaml"]),
    "config_missing": (None, lambda t: ["--config", t / "nope.yaml"], ["nope.yaml"]),
    "config_is_a_folder": (None, lambda t: ["--config", t], ["config"]),
    "data_root_missing": (lambda t: t / "missing.npz", lambda t: [], ["missing.npz"]),
    "data_root_is_a_folder": (lambda t: t, lambda t: [], [""]),
    "weights_missing": (None, lambda t: ["--weights", t / "w.pt"], ["w.pt"]),
}
if not torch.cuda.is_available():
    CASES["device_cuda_without_gpu"] = (None, lambda t: ["--device", "cuda"], ["device", "cuda"])


@pytest.mark.parametrize("name", sorted(CASES))
def test_train_bad_input(name, tmp_path, tiny_npz, capsys):
    make_data, extra, needles = CASES[name]
    data = make_data(tmp_path) if make_data else tiny_npz
    out = tmp_path / "out"
    code, _, err = cli([*TRAIN, "--data-root", data, *extra(tmp_path), "--out", out], capsys)
    assert_one_line(code, err, *needles)
    assert not out.exists(), "a run that failed before doing work must leave nothing behind"
    assert not (tmp_path / "pwned").exists()


OUT_CASES = {
    "out_is_a_file": (lambda t: t / "f", ["is a file"]),
    "out_below_a_file": (lambda t: t / "f" / "sub", ["lies below"]),
    "out_under_proc": (lambda t: "/proc/padhash-out", ["/proc/padhash-out", "cannot create"]),
    "out_name_too_long": (lambda t: t / ("a" * 300), ["longer than the file system allows"]),
}


@pytest.mark.parametrize("name", sorted(OUT_CASES))
def test_train_bad_out(name, tmp_path, tiny_npz, capsys):
    (tmp_path / "f").write_text("the user's file")
    make_out, needles = OUT_CASES[name]
    code, _, err = cli([*TRAIN, "--data-root", tiny_npz, "--out", make_out(tmp_path)], capsys)
    assert_one_line(code, err, *needles)
    assert (tmp_path / "f").read_text() == "the user's file"


@pytest.mark.parametrize("name", ["out_in_a_read_only_folder", "out_is_a_read_only_folder"])
def test_train_out_on_a_read_only_file_system(name, tiny_npz, small_tmpfs, capsys):
    folder = small_tmpfs(64 * 1024, read_only=True)  # read-only even for root, unlike a chmod
    out = folder / "run" if name == "out_in_a_read_only_folder" else folder
    code, _, err = cli([*TRAIN, "--data-root", tiny_npz, "--out", out], capsys)
    assert_one_line(code, err, str(out), "Read-only file system" if out != folder else "not writable")


def test_train_out_the_user_cannot_write(tmp_path, tiny_npz, capsys):
    if os.geteuid() == 0:
        pytest.skip("root writes into any folder; the read-only file system cases stand for it")
    folder = tmp_path / "locked"
    folder.mkdir(mode=0o555)
    try:
        code, _, err = cli([*TRAIN, "--data-root", tiny_npz, "--out", folder / "run"], capsys)
        assert_one_line(code, err, "cannot create the run folder")
    finally:
        folder.chmod(0o755)


def test_topk_beyond_database_is_clipped_with_a_warning(tmp_path, tiny_npz, capsys):
    code, _, err = cli([*TRAIN, "--data-root", tiny_npz, "--topk", "100000", "--out", tmp_path / "r"], capsys)
    assert code == 0 and "warning: topk 100000 is beyond the database size; clipped to 48" in err


def test_eval_truncated_codes(tiny_run, tmp_path, capsys):
    run = shutil.copytree(tiny_run, tmp_path / "run")
    data = (run / "codes.npz").read_bytes()
    (run / "codes.npz").write_bytes(data[: len(data) // 2])
    assert_one_line(*cli(["eval", run], capsys)[::2], "codes.npz")


def test_eval_run_whose_config_holds_a_non_number(tiny_run, tmp_path, capsys):
    run = shutil.copytree(tiny_run, tmp_path / "run")
    text = (run / "config.yaml").read_text()
    assert "bits: 16" in text
    (run / "config.yaml").write_text(text.replace("bits: 16", "bits: many"))
    assert_one_line(*cli(["eval", run], capsys)[::2], "config.yaml", "train.bits", "integer")


def test_eval_missing_run_and_bad_topk(tiny_run, tmp_path, capsys):
    assert_one_line(*cli(["eval", tmp_path / "nope"], capsys)[::2], "nope")
    assert_one_line(*cli(["eval", tiny_run, "--topk", "-5"], capsys)[::2], "topk")
