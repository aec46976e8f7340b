"""Every defense against a tiny CIBA-poisoned digits set, through the real stack."""
import pytest

from padhash.experiments.defenses import defense_config_from_dict, run_defense

TINY = {
    "source": "ciba",
    "attack": {
        "data": {"name": "digits", "image_size": 16, "options": {"train_per_class": 20, "max_queries": 40}},
        "victim": {"method": "csq", "bits": 16, "epochs": 1, "batch_size": 32},
        "num_targets": 1, "poison_count": 10,
        "trigger": {"size": 4, "steps": 10, "batch_size": 8},
        "perturb": {"steps": 2, "batch_size": 5},
        "eval": {"topk": 50},
    },
    "dp": {"clip": 0.3, "microbatch": 8},
    "noise_scales": [0.0, 0.1],
    "prune": {"fractions": [0.0, 0.5, 0.9]},
    "preprocess": {"jpeg_quality": [50], "noise_std": ["8/255"]},
}


@pytest.mark.slow
def test_all_defenses_on_tiny_ciba_poisons(tmp_path):
    cfg = defense_config_from_dict(dict(TINY))
    results = run_defense(cfg, tmp_path / "d", ["spectral", "dp", "prune", "preprocess"], progress=False)
    rows = {(t["defense"], str(t["setting"])): t for t in results["trials"]}
    assert ("undefended", "-") in rows
    spectral = next(t for (d, _), t in rows.items() if d == "spectral")
    assert spectral["poisons_removed"] + spectral["poisons_kept"] == 10
    assert spectral["removed"] == 10 * 15  # ⌈1.5 × 10⌉ per class, 10 classes
    assert {s for d, s in rows if d == "prune"} == {"0", "128", "230"}
    assert rows[("prune", "0")]["t_map"] == rows[("undefended", "-")]["t_map"]  # nothing pruned = the model itself
    assert {s for d, s in rows if d == "dp"} == {"clip=0.3,sigma=0.0", "clip=0.3,sigma=0.1"}
    assert ("jpeg", "50") in rows and ("gaussian", "8.0/255") in rows
    for t in results["trials"]:
        assert 0 <= t["t_map"] <= 1 and 0 <= t["map_poisoned"] <= 1
    assert "spectral signatures" in (tmp_path / "d" / "report.md").read_text()
    assert (tmp_path / "d" / "figures").is_dir()


TINY_PADHASH = {
    "source": "padhash",
    "padhash": {
        "data": {"name": "digits", "image_size": 8, "options": {"max_queries": 20}},
        "victim": {"method": "csq", "bits": 16, "backbone": "smallcnn", "epochs": 1, "hflip": False},
        "surrogate": {"stolen_fraction": 0.1, "epochs": 1},
        "attack": {"steps": 2, "poison_count": 8, "flip": False, "shift": 1},
        "pairs": 1,
    },
    "preprocess": {"jpeg_quality": [50], "noise_std": []},
}


@pytest.mark.slow
def test_defenses_reuse_the_padhash_runs_poisoned_victim(tmp_path):
    """The defenses take the PADHASH run's own poisons and retrained victim (same model name), not new ones."""
    from padhash.experiments.poisoning import config_from_dict, run_poisoning

    run_poisoning(config_from_dict({**TINY_PADHASH["padhash"], "methods": ["padhash"]}), tmp_path / "d" / "attack",
                  progress=False)
    models = sorted(p.name for p in (tmp_path / "d" / "attack" / "models").iterdir())
    results = run_defense(defense_config_from_dict(dict(TINY_PADHASH)), tmp_path / "d", ["spectral", "preprocess"],
                          progress=False)
    assert sorted(p.name for p in (tmp_path / "d" / "attack" / "models").iterdir()) == models
    rows = {(t["defense"], str(t["setting"])): t for t in results["trials"]}
    assert ("undefended", "-") in rows and ("jpeg", "50") in rows
    spectral = next(t for (d, _), t in rows.items() if d == "spectral")
    assert spectral["poisons_removed"] + spectral["poisons_kept"] == 8


@pytest.mark.slow
def test_defend_runs_the_ciba_attack_stage_on_processes_to_the_same_bytes(tmp_path):
    from padhash.executors import ExecutorConfig

    runs = {}
    for kind in ("local", "processes"):
        results = run_defense(defense_config_from_dict(dict(TINY)), tmp_path / kind, ["preprocess"],
                              progress=False, executor=ExecutorConfig(kind, workers=2, threads=1))
        runs[kind] = ((tmp_path / kind / "attack" / "results.json").read_bytes(), results["trials"])
    assert runs["processes"] == runs["local"]


@pytest.mark.slow
def test_defend_runs_the_padhash_attack_stage_on_processes_to_the_same_bytes(tmp_path):
    from padhash.executors import ExecutorConfig

    runs = {}
    for kind in ("local", "processes"):
        results = run_defense(defense_config_from_dict(dict(TINY_PADHASH)), tmp_path / kind, ["preprocess"],
                              progress=False, executor=ExecutorConfig(kind, workers=2, threads=1))
        runs[kind] = ((tmp_path / kind / "attack" / "results.json").read_bytes(), results["trials"])
    assert runs["processes"] == runs["local"]
