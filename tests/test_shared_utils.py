"""The shared plumbing: typed configs, atomic files, results.json aggregation and resume, reports, preprocessing."""
from dataclasses import dataclass, field
from typing import Literal, Optional

import pytest
import torch

from padhash.config import from_dict, load_config, to_dict
from padhash.defenses.preprocess import gaussian_noise, jpeg
from padhash.errors import PadhashError
from padhash.records import ResultsFile, aggregate
from padhash.reports.common import markdown_table, mean_std, save_curves, save_image_grid
from padhash.io import atomic_write_json, load_tensors, read_json, save_tensors
from padhash.rng import derive_seed


@dataclass
class Inner:
    bits: int = 32
    eps: float = 16 / 255


@dataclass
class Outer:
    name: str = "digits"
    mode: Literal["a", "b"] = "a"
    inner: Inner = field(default_factory=Inner)
    alphas: list[float] = field(default_factory=lambda: [0.0])
    root: Optional[str] = None


def test_from_dict_nested_fraction_and_scalar_list():
    cfg = from_dict(Outer, {"inner": {"bits": 64, "eps": "8/255"}, "alphas": 0.2, "mode": "b"})
    assert cfg.inner.bits == 64 and cfg.inner.eps == pytest.approx(8 / 255)
    assert cfg.alphas == [0.2] and cfg.mode == "b"
    assert to_dict(cfg)["inner"] == {"bits": 64, "eps": pytest.approx(8 / 255)}


@pytest.mark.parametrize(
    "data, fragment",
    [
        ({"inner": {"bitz": 3}}, "config.inner: unknown key(s) bitz"),
        ({"inner": {"bits": "many"}}, "config.inner.bits: expected an integer"),
        ({"mode": "c"}, "config.mode: 'c' is not one of"),
        ({"inner": {"eps": "1/0"}}, "config.inner.eps: expected a number"),
    ],
)
def test_from_dict_errors_name_the_key(data, fragment):
    with pytest.raises(PadhashError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        from_dict(Outer, data)


def test_load_config_errors(tmp_path):
    with pytest.raises(PadhashError, match="no such config file"):
        load_config(Outer, tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(PadhashError, match="not valid YAML"):
        load_config(Outer, bad)
    good = tmp_path / "good.yaml"
    good.write_text("name: cifar10\ninner:\n  bits: 16\n")
    assert load_config(Outer, good, {"root": "/x"}) == Outer(name="cifar10", inner=Inner(bits=16), root="/x")


def test_safetensors_roundtrip_and_corrupt_file(tmp_path):
    path = tmp_path / "w.safetensors"
    save_tensors(path, {"a": torch.arange(6.0).view(2, 3)})
    assert torch.equal(load_tensors(path)["a"], torch.arange(6.0).view(2, 3))
    path.write_bytes(b"garbage")
    with pytest.raises(PadhashError, match="not a readable safetensors file"):
        load_tensors(path)
    assert not list(tmp_path.glob(".*tmp"))  # no temp files left behind


def test_read_json_errors(tmp_path):
    with pytest.raises(PadhashError, match="no such file"):
        read_json(tmp_path / "nope.json")
    (tmp_path / "x.json").write_text("{")
    with pytest.raises(PadhashError, match="not valid JSON"):
        read_json(tmp_path / "x.json")


def test_aggregate_mean_std_skips_identifiers():
    trials = [
        {"method": "padhash", "asr": 1.0, "trigger_index": 3, "seed": 1, "ok": True},
        {"method": "padhash", "asr": 0.0, "trigger_index": 5, "seed": 2, "ok": False},
        {"method": "none", "asr": 0.0, "map": float("nan")},
    ]
    agg = aggregate(trials)
    assert agg["padhash"]["asr"] == {"mean": 0.5, "std": 0.5, "n": 2}
    assert "trigger_index" not in agg["padhash"] and "seed" not in agg["padhash"] and "ok" not in agg["padhash"]
    assert "map" not in agg["none"]  # NaN is not a measurement


def test_results_file_resume_and_config_guard(tmp_path):
    results = ResultsFile(tmp_path, {"seed": 0})
    results.add({"key": "padhash/0", "method": "padhash", "asr": 1.0})
    results.set_extra("map_clean", 0.8)
    again = ResultsFile(tmp_path, {"seed": 0})
    assert again.has("padhash/0") and not again.has("padhash/1")
    assert again.extra == {"map_clean": 0.8}
    data = ResultsFile.load(tmp_path)
    assert data["aggregates"]["padhash"]["asr"]["mean"] == 1.0
    with pytest.raises(PadhashError, match="different config"):
        ResultsFile(tmp_path, {"seed": 1})
    atomic_write_json(tmp_path / "results.json", {"trials": []})
    with pytest.raises(PadhashError, match="missing 'config'"):
        ResultsFile.load(tmp_path)


def test_report_helpers(tmp_path):
    table = markdown_table(["method", "asr"], [["none", 0.25], ["padhash", "0.9 ± 0.1"]])
    assert table.splitlines()[2] == "| none | 0.2500 |"
    agg = aggregate([{"method": "none", "asr": 0.5}])
    assert mean_std(agg, "none", "asr") == "0.500 ± 0.000" and mean_std(agg, "none", "map") == "–"
    imgs = [torch.rand(3, 8, 8) for _ in range(3)]
    save_image_grid([imgs, imgs[:2]], tmp_path / "grid.png", row_titles=["a", "b"], marks=[[None, True, False], [None, None]])
    save_curves({"x": ([0, 1], [0.1, 0.2])}, tmp_path / "c.png", xlabel="ratio", ylabel="ASR")
    assert (tmp_path / "grid.png").stat().st_size > 0 and (tmp_path / "c.png").stat().st_size > 0


def test_preprocess_jpeg_and_noise_are_bounded_and_reproducible():
    x = torch.rand(2, 3, 16, 16)
    y = jpeg(x, quality=85)
    assert y.shape == x.shape and 0 <= y.min() and y.max() <= 1
    assert (y - x).abs().mean() < 0.2
    assert torch.equal(jpeg(x, 85), y)  # deterministic
    a = gaussian_noise(x, 8 / 255, torch.Generator().manual_seed(0))
    b = gaussian_noise(x, 8 / 255, torch.Generator().manual_seed(0))
    assert torch.equal(a, b) and 0 <= a.min() and a.max() <= 1
    with pytest.raises(PadhashError):
        jpeg(x, quality=0)


def test_derive_seed_is_stable_and_distinct():
    assert derive_seed(0, "victim", 1) == derive_seed(0, "victim", 1)
    assert derive_seed(0, "victim", 1) != derive_seed(0, "attacker", 1)


def test_artifact_lock_is_held_beside_the_file_until_the_block_ends(tmp_path):
    import fcntl
    import os

    from padhash.runs import artifact_lock

    target = tmp_path / "triggers" / "victim-t2.safetensors"
    with artifact_lock(target):  # creates the folder too
        fd = os.open(target.parent / ".victim-t2.safetensors.lock", os.O_RDWR)
        with pytest.raises(BlockingIOError):  # another maker (another open file) would wait here
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released on leaving the block
    os.close(fd)
