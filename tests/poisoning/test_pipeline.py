"""The pipeline on a stand-in foundation (tests/poisoning/fake_stack.py): ladder, ASR wiring, label flip, resume."""
import json

import pytest

from padhash.errors import PadhashError
from tests.poisoning import fake_stack


@pytest.fixture
def stack(monkeypatch):
    fake_stack.install(monkeypatch)
    from padhash.experiments import poisoning

    return poisoning


def _cfg(poisoning, **over):
    data = {
        "data": {"name": "blobs"},
        "victim": {"epochs": 8, "bits": 8},
        "surrogate": {"stolen_fraction": 0.5},
        "attack": {"steps": 3, "poison_count": 6, "eps": 16 / 255, "shift": 1},
        "pairs": 2,
        "seeds": [0],
    }
    data.update(over)
    return poisoning.config_from_dict(data)


def test_ladder_runs_and_label_flip_reaches_the_target(stack, tmp_path):
    results = stack.run_poisoning(_cfg(stack), tmp_path, progress=False)
    methods = {t["method"] for t in results["trials"]}
    assert methods == {"none", "witches_brew", "padhash", "label_flip"}
    assert len(results["trials"]) == 8
    agg = results["aggregates"]
    assert agg["label_flip"]["asr"]["mean"] == pytest.approx(1.0)  # the dirty-label ceiling works end to end
    assert agg["none"]["asr"]["mean"] == pytest.approx(0.0)
    for t in results["trials"]:
        if t["method"] in ("witches_brew", "padhash"):
            assert t["linf"] <= 16 / 255 + 1e-6 and t["poison_count"] == 6
            assert t["alpha"] == (0.0 if t["method"] == "witches_brew" else 0.2)
            assert "grad_cosine_before" in t and "poison_dist_target_surrogate" in t
    assert (tmp_path / "report.md").read_text().count("PADHASH") >= 1
    assert list((tmp_path / "figures").glob("poisons_*padhash.png"))


def test_asr_is_the_share_of_target_labels_in_the_top_k(stack, tmp_path):
    """Recompute ASR@K from the victim's codes by hand: ascending Hamming, ties by index, success at ≥ threshold."""
    cfg = _cfg(stack, methods=["none"], pairs=3, eval={"topk": 10, "threshold": 0.3})
    run = stack.PoisoningRun(cfg, tmp_path, progress=False)
    results = run.run()
    ds = run.dataset(cfg.data)
    victim = run.clean_victim(cfg, 0)
    db = fake_stack.encode(victim, ds.database).float()
    for t in results["trials"]:
        code = fake_stack.encode(victim, ds.query.images(t["trigger_indices"])).float()
        dist = (code.shape[1] - code @ db.T) / 2
        top = sorted(range(len(db)), key=lambda i: (float(dist[0, i]), i))[:10]
        share = float((ds.database.labels[top, t["target_class"]] > 0).float().mean())
        assert t["target_fraction"][0] == pytest.approx(share)
        assert t["asr"] == (1.0 if share >= 0.3 else 0.0)


def test_resume_after_a_kill_gives_the_same_results(stack, tmp_path, monkeypatch):
    cfg = _cfg(stack, pairs=1, victim={"epochs": 3, "bits": 8})
    full = stack.run_poisoning(cfg, tmp_path / "full", progress=False)

    # kill the second run while it trains the second poisoned victim
    calls = {"n": 0}
    real_train = fake_stack.train_hash_model

    def dying(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:  # clean victim, surrogate, first poisoned victim done: die in the next one
            raise KeyboardInterrupt
        return real_train(*args, **kwargs)

    import sys
    monkeypatch.setattr(sys.modules["padhash.hashing"], "train_hash_model", dying)
    with pytest.raises(KeyboardInterrupt):
        stack.run_poisoning(cfg, tmp_path / "killed", progress=False)
    partial = json.loads((tmp_path / "killed" / "results.json").read_text())
    assert 0 < len(partial["trials"]) < 4
    monkeypatch.setattr(sys.modules["padhash.hashing"], "train_hash_model", real_train)
    resumed = stack.run_poisoning(cfg, tmp_path / "killed", progress=False)
    strip = lambda r: sorted(json.dumps({k: v for k, v in t.items()}, sort_keys=True) for t in r["trials"])  # noqa: E731
    assert strip(resumed) == strip(full)


def test_sweep_and_bad_config(stack, tmp_path):
    cfg = _cfg(stack, methods=["none", "padhash"], pairs=1, victim={"epochs": 2, "bits": 8}, sweep={"attack.alpha": [0.0, 0.5]})
    results = stack.run_poisoning(cfg, tmp_path, progress=False)
    assert sorted(t["alpha"] for t in results["trials"] if t["method"] == "padhash") == [0.0, 0.5]
    assert (tmp_path / "figures" / "asr_vs_sweep.png").exists()
    with pytest.raises(PadhashError, match="methods"):
        _cfg(stack, methods=["nothing"])
    with pytest.raises(PadhashError, match="sweep"):
        _cfg(stack, sweep={"attack.nope": [1]})
    with pytest.raises(PadhashError, match="budget"):
        stack.run_poisoning(_cfg(stack, attack={"poison_count": 500}, methods=["padhash"]), tmp_path / "b", progress=False)


def test_every_shipped_config_loads(stack):
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "configs"
    paths = sorted(root.glob("padhash-*.yaml")) + sorted((root / "full").glob("padhash-*.yaml"))
    assert len(paths) >= 20
    for path in paths:
        cfg = stack.load_poisoning_config(path)
        assert cfg.attack.eps <= 16 / 255 + 1e-9, path.name  # never above the paper's ε


def test_cli_runs_the_ladder_and_reports_bad_configs(stack, tmp_path):
    # the poisoning commands alone (the other families' CLI modules import the real foundation)
    from padhash.cli import ArgumentParser, Commands
    from padhash.cli import poisoning as cli

    parser = ArgumentParser(prog="padhash")
    cli.register(Commands(parser))
    config = tmp_path / "c.yaml"
    config.write_text("data: {name: blobs}\nvictim: {epochs: 3, bits: 8}\nattack: {steps: 2, poison_count: 3}\n"
                      "surrogate: {stolen_fraction: 0.5}\npairs: 1\n")
    args = parser.parse_args(["attack", "label_flip", "--config", str(config), "--out", str(tmp_path / "run"),
                              "--no-progress"])
    assert args.func(args) == 0
    assert {t["method"] for t in json.loads((tmp_path / "run" / "results.json").read_text())["trials"]} == \
        {"none", "label_flip"}
    config.write_text("attack: {eps: lots}\n")
    args = parser.parse_args(["attack", "padhash", "--config", str(config), "--out", str(tmp_path / "bad")])
    with pytest.raises(PadhashError, match="attack.eps"):
        args.func(args)
