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
