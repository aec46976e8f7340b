import json

import numpy as np
import pytest
import torch

from padhash.cli import main
from padhash.experiments.retrieval import load_victim
from padhash.hashing import encode


@pytest.fixture
def tiny_npz(tmp_path):
    """Three colour classes of 16×16 noise images, as HWC uint8 arrays (the npz loader's format)."""
    rng = np.random.default_rng(0)

    def make(n):
        y = np.arange(n) % 3
        x = rng.integers(0, 100, size=(n, 16, 16, 3))
        x[np.arange(n), :, :, y] += 150
        return x.astype(np.uint8), y

    x_train, y_train = make(48)
    x_test, y_test = make(12)
    path = tmp_path / "tiny.npz"
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    return path


def run(argv, capsys):
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def tiny_train_args(npz, out, *extra):
    return ["train", "--dataset", "npz", "--data-root", npz, "--method", "dpn", "--bits", 16, "--epochs", 2,
            "--batch-size", 16, "--out", out, "--no-progress", *extra]


def test_train_writes_the_run_and_eval_recomputes_it(tiny_npz, tmp_path, capsys):
    out = tmp_path / "run"
    code, stdout, _ = run(tiny_train_args(tiny_npz, out, "--topk", 10), capsys)
    assert code == 0 and "mAP@all" in stdout
    for name in ("config.yaml", "model.safetensors", "metrics.json", "codes.npz"):
        assert (out / name).is_file()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["k"] == 10 and 0 <= metrics["precision_at_k"] <= 1
    assert metrics["map"] > metrics["map_random_codes"] + 0.2  # colour classes are easy
    with np.load(out / "codes.npz") as codes:
        assert codes["query_codes"].dtype == np.int8 and codes["query_codes"].shape == (12, 16)
        assert set(np.unique(codes["db_codes"])) <= {-1, 1}
        assert codes["query_labels"].shape == (12, 3) and codes["db_labels"].shape == (48, 3)
        stored_db = torch.from_numpy(codes["db_codes"])

    code, stdout, _ = run(["eval", out], capsys)
    recomputed = json.loads(stdout.splitlines()[-1])
    assert code == 0 and recomputed["map"] == pytest.approx(metrics["map"])
    code, stdout, _ = run(["eval", out, "--topk", 5], capsys)
    assert json.loads(stdout.splitlines()[-1])["k"] == 5

    # the victim reloads with the same codes (what `--victim RUN` attacks)
    from padhash.data import load_dataset

    model, cfg = load_victim(out)
    ds = load_dataset("npz", str(tiny_npz))
    assert cfg.train.method == "dpn" and torch.equal(encode(model, ds.database), stored_db)

    # re-running the same command resumes from the finished checkpoint; another config is refused
    code, _, _ = run(tiny_train_args(tiny_npz, out, "--topk", 10), capsys)
    assert code == 0 and json.loads((out / "metrics.json").read_text())["map"] == metrics["map"]
    code, _, err = run(tiny_train_args(tiny_npz, out, "--topk", 10, "--bits", 8), capsys)
    assert code == 2 and "different config" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("argv, message", [
    (["train", "--out", "{tmp}/r", "--bits", "0"], "bits must be a positive integer"),
    (["train", "--out", "{tmp}/r", "--epochs", "many"], "invalid int value"),
    (["train", "--out", "{tmp}/r", "--method", "lsh"], "invalid choice"),
    (["train", "--out", "{tmp}/r", "--dataset", "nosuch"], "unknown dataset"),
    (["train", "--out", "{tmp}/r", "--dataset", "npz", "--data-root", "{tmp}/missing.npz"], "missing.npz"),
    (["train", "--out", "{tmp}/r", "--weights", "{tmp}/w.safetensors"], "no such weights file"),
    (["train", "--out", "{tmp}/r", "--config", "{tmp}/nope.yaml"], "no such config file"),
    (["train", "--out", "{tmp}/r", "--config", "{tmp}/bad.yaml"], "unknown key"),
    (["train", "--out", "{tmp}/r", "--topk", "0"], "topk"),
    (["train", "--out", "{tmp}/r", "--device", "cuda:99"], "no such CUDA device"),
    (["train", "--out", "{tmp}/r", "--device", "gpu"], "not a device"),
    (["eval", "{tmp}/none"], "no such run folder"),
])
def test_bad_input_gives_one_line_and_exit_code_2(tmp_path, capsys, argv, message):
    (tmp_path / "bad.yaml").write_text("train: {method: csq, colour: red}\n")
    code = None
    try:
        code = main([a.replace("{tmp}", str(tmp_path)) for a in argv])
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert message in err and len(err.splitlines()) <= 2 and "Traceback" not in err
    assert not (tmp_path / "r" / "model.safetensors").exists()


def test_datasets_lists_loaders(capsys):
    code, stdout, _ = run(["datasets"], capsys)
    assert code == 0 and "digits" in stdout and "npz" in stdout


@pytest.mark.slow
def test_train_on_embedded_digits(tmp_path, capsys):
    out = tmp_path / "digits"
    code, _, _ = run(["train", "--dataset", "digits", "--method", "csq", "--bits", 32, "--backbone", "smallcnn",
                      "--epochs", 1, "--out", out, "--no-progress"], capsys)
    metrics = json.loads((out / "metrics.json").read_text())
    assert code == 0 and metrics["dataset"] == "digits" and metrics["num_query"] > 100
    assert metrics["map"] > 3 * metrics["map_random_codes"]


def test_shipped_retrieval_configs_parse():
    from pathlib import Path

    from padhash.config import from_dict, load_yaml
    from padhash.experiments.retrieval import RetrievalConfig

    paths = sorted((Path(__file__).parent.parent / "configs").glob("retrieval-*.yaml"))
    assert len(paths) >= 3
    for path in paths:  # full configs name weight files that exist only on a GPU machine: parse, don't check
        cfg = from_dict(RetrievalConfig, load_yaml(path), path.name)
        assert cfg.train.bits > 0 and cfg.train.epochs > 0
