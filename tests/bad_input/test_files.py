"""Files a user or an adversary hands over: refused with one line and nothing executed; benign variants read;
written files atomic, byte-identical across identical runs, and a full disk keeps the last good one."""
import io
import os
import pickle
import shutil

import numpy as np
import pytest
import torch
from safetensors import SafetensorError

import padhash.io as pio
from padhash.data import load_dataset
from padhash.data.cifar import RestrictedUnpickler, _latin1_bytes
from padhash.errors import PadhashError
from padhash.records import ResultsFile
from padhash.experiments.retrieval import load_victim
from padhash.hashing import TrainConfig, train_hash_model
from padhash.hashing.trainer import CHECKPOINT_NAME
from tests.bad_input.helpers import TRAIN, assert_one_line, cli, dhta_config


class _Evil:
    def __reduce__(self):
        return (open, ("/tmp/padhash-pwned", "w"))


def _evil_torch(path):
    torch.save({"w": _Evil()}, path)
    return path


WEIGHTS = {
    "pt": lambda t: _evil_torch(t / "w.pt"),
    "pth": lambda t: _evil_torch(t / "w.pth"),
    "renamed_safetensors": lambda t: _evil_torch(t / "w.safetensors"),
}


@pytest.mark.parametrize("name", sorted(WEIGHTS))
def test_malicious_weights_refused_without_torchs_unsafe_advice(name, tmp_path, tiny_npz, capsys):
    path = WEIGHTS[name](tmp_path)
    code, _, err = cli([*TRAIN, "--data-root", tiny_npz, "--weights", path, "--out", tmp_path / "r"], capsys)
    assert_one_line(code, err, path.name)
    assert "weights_only" not in err and "False" not in err
    assert not os.path.exists("/tmp/padhash-pwned")


def test_malicious_npz_and_codes_refused(tiny_run, tmp_path, capsys):
    np.savez(tmp_path / "obj.npz", x_train=np.array([_Evil()], dtype=object))
    code, _, err = cli([*TRAIN, "--data-root", tmp_path / "obj.npz", "--out", tmp_path / "r"], capsys)
    assert_one_line(code, err, "obj.npz", "unpickling")
    run = shutil.copytree(tiny_run, tmp_path / "run")
    np.savez(run / "codes.npz", query_codes=np.array([_Evil()], dtype=object))
    assert_one_line(*cli(["eval", run], capsys)[::2], "codes.npz")


def test_pickled_checkpoint_on_the_resume_path_refused(tiny_run, tmp_path, capsys):
    run = shutil.copytree(tiny_run, tmp_path / "run")
    (run / "checkpoint" / CHECKPOINT_NAME).write_bytes(pickle.dumps(_Evil()))
    code, _, err = cli([*TRAIN, "--data-root", tiny_run.parent / "tiny.npz", "--out", run], capsys)
    assert_one_line(code, err, CHECKPOINT_NAME, "not a readable safetensors file")
    assert not os.path.exists("/tmp/padhash-pwned")


def test_repickled_python3_cifar_batch_reads_and_evil_still_refused():
    batch = {"data": np.zeros((2, 3072), np.uint8), "labels": [np.int64(3), np.int64(4)]}
    out = RestrictedUnpickler(io.BytesIO(pickle.dumps(batch, protocol=2)), "b").load()
    assert [int(v) for v in out["labels"]] == [3, 4] and out["data"].shape == (2, 3072)
    with pytest.raises(PadhashError, match="refused to unpickle"):
        RestrictedUnpickler(io.BytesIO(pickle.dumps({"data": _Evil()}, protocol=2)), "b").load()
    with pytest.raises(pickle.UnpicklingError):  # _codecs.encode only ever makes latin-1 bytes
        _latin1_bytes("text", "utf-16")


def test_malicious_cifar_meta_refused(tmp_path):
    (tmp_path / "batches.meta").write_bytes(pickle.dumps({"label_names": _Evil()}))
    with pytest.raises(PadhashError, match="batches.meta: refused to unpickle"):
        load_dataset("cifar10", str(tmp_path))


def test_results_json_holding_a_list(tmp_path, capsys):
    (tmp_path / "results.json").write_text("[1, 2]")
    with pytest.raises(PadhashError, match="results.json: expected a JSON object"):
        ResultsFile.load(tmp_path)
    with pytest.raises(PadhashError, match="results.json"):
        ResultsFile(tmp_path, {"a": 1})
    command = ["attack", "dhta", "--config", dhta_config(tmp_path / "c.yaml"), "--out", tmp_path, "--no-progress"]
    assert_one_line(*cli(command, capsys)[::2], "results.json", "expected a JSON object")
    assert (tmp_path / "results.json").read_text() == "[1, 2]"


def test_image_size_metadata_not_an_integer(tiny_run, tmp_path, capsys):
    run = shutil.copytree(tiny_run, tmp_path / "run")
    state = pio.load_tensors(run / "model.safetensors")
    pio.save_tensors(run / "model.safetensors", state, metadata={"image_size": "big", "bits": "16"})
    with pytest.raises(PadhashError, match="image_size must be a positive integer"):
        load_victim(run)
    command = ["attack", "dhta", "--config", dhta_config(tmp_path / "c.yaml"), "--victim", run, "--out",
               tmp_path / "out", "--no-progress"]
    assert_one_line(*cli(command, capsys)[::2], "model.safetensors", "image_size must be a positive integer")


def test_safetensors_files_are_byte_identical_for_identical_content(tmp_path):
    tensors = {"b": torch.ones(3), "a": torch.zeros(2, 2)}
    meta = {f"key{i}": str(i) for i in range(20)}
    pio.save_tensors(tmp_path / "one.safetensors", tensors, metadata=meta)
    pio.save_tensors(tmp_path / "two.safetensors", tensors, metadata=dict(reversed(list(meta.items()))))
    assert (tmp_path / "one.safetensors").read_bytes() == (tmp_path / "two.safetensors").read_bytes()
    from safetensors import safe_open

    with safe_open(str(tmp_path / "two.safetensors"), framework="pt") as fh:
        assert fh.metadata() == meta
    assert torch.equal(pio.load_tensors(tmp_path / "one.safetensors")["a"], tensors["a"])


def _full_disk(monkeypatch, after=0):
    """safetensors' writer fails with ENOSPC (after `after` good writes), leaving a partial temp file."""
    real, calls = pio.save_file, []

    def save_file(tensors, path, metadata=None):
        calls.append(path)
        if len(calls) > after:
            open(path, "wb").write(b"partial")
            raise SafetensorError("Error while serializing: IoError(No space left on device (os error 28))")
        return real(tensors, path, metadata=metadata)
    monkeypatch.setattr(pio, "save_file", save_file)


def test_disk_full_while_writing_keeps_the_last_good_file(tmp_path, monkeypatch):
    pio.save_tensors(tmp_path / "c.safetensors", {"a": torch.zeros(2)})
    good = (tmp_path / "c.safetensors").read_bytes()
    _full_disk(monkeypatch)
    with pytest.raises(PadhashError, match="c.safetensors: could not be written .*No space left"):
        pio.save_tensors(tmp_path / "c.safetensors", {"a": torch.ones(2)})
    assert (tmp_path / "c.safetensors").read_bytes() == good
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.safetensors"]  # temp file removed


def test_disk_full_during_training_resumes_from_the_last_good_checkpoint(tmp_path, monkeypatch):
    ds = load_dataset("digits")
    train = ds.train.subset(torch.arange(64))
    cfg = TrainConfig(method="dpn", bits=8, epochs=2, batch_size=32)
    reference = train_hash_model(train, ds.num_classes, cfg, checkpoint_dir=tmp_path / "a", progress=False)
    with monkeypatch.context() as m:
        _full_disk(m, after=1)  # epoch 1's checkpoint is written, epoch 2's hits the full disk
        with pytest.raises(PadhashError, match="No space left"):
            train_hash_model(train, ds.num_classes, cfg, checkpoint_dir=tmp_path / "b", progress=False)
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == [CHECKPOINT_NAME]
    resumed = train_hash_model(train, ds.num_classes, cfg, checkpoint_dir=tmp_path / "b", progress=False)
    for key, value in reference.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key


def test_numba_cache_falls_back_to_a_temporary_folder(monkeypatch):
    import os

    import numba

    from padhash.retrieval import numba_cache

    monkeypatch.setenv("NUMBA_CACHE_DIR", "")  # so that monkeypatch restores it afterwards
    monkeypatch.setattr(numba.config, "CACHE_DIR", numba.config.CACHE_DIR)
    monkeypatch.setattr(numba_cache, "_writable", lambda folder: False)  # read-only install and HOME
    numba_cache.ensure_writable_cache()
    folder = os.environ["NUMBA_CACHE_DIR"]
    assert "padhash-numba-" in folder and os.path.isdir(folder) and numba.config.CACHE_DIR == folder


def test_disk_full_on_a_real_tmpfs_out_exits_2_and_resumes_from_the_last_good_checkpoint(tmp_path, tiny_npz,
                                                                                          small_tmpfs, capsys,
                                                                                          monkeypatch):
    from safetensors import safe_open

    import padhash.hashing.trainer as trainer

    argv = [*TRAIN, "--data-root", tiny_npz, "--epochs", "2"]
    assert cli([*argv, "--out", tmp_path / "whole"], capsys)[0] == 0
    size = (tmp_path / "whole" / "checkpoint" / CHECKPOINT_NAME).stat().st_size
    out = small_tmpfs(size * 3 // 2) / "run"  # room for epoch 1's checkpoint, not for epoch 2's beside it

    code, _, err = cli([*argv, "--out", out], capsys)
    assert_one_line(code, err, CHECKPOINT_NAME, "No space left on device")
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*"))
    assert files == [".padhash.lock", "checkpoint", f"checkpoint/{CHECKPOINT_NAME}", "config.yaml"]  # no temp file
    with safe_open(str(out / "checkpoint" / CHECKPOINT_NAME), framework="pt") as fh:
        assert fh.metadata()["epoch"] == "1"  # the last good one, whole

    small_tmpfs(size * 8)  # space again: the same command resumes at epoch 2
    real_save, saved = trainer._save_checkpoint, []
    monkeypatch.setattr(trainer, "_save_checkpoint", lambda path, fp, epoch, *a: (saved.append(epoch),
                                                                                  real_save(path, fp, epoch, *a)))
    code, _, err = cli([*argv, "--out", out], capsys)
    assert code == 0, err
    assert saved == [2]
    for name in ("model.safetensors", "codes.npz", f"checkpoint/{CHECKPOINT_NAME}"):
        assert (out / name).read_bytes() == (tmp_path / "whole" / name).read_bytes(), name
