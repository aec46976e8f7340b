"""The PADHASH ladder end to end on the embedded digits (the real loader's paper preset), tiny settings."""
import pytest


@pytest.mark.slow
def test_tiny_ladder_on_digits(tmp_path):
    from padhash.experiments.poisoning import config_from_dict, run_poisoning

    cfg = config_from_dict({
        "data": {"name": "digits", "image_size": 8, "options": {"max_queries": 20}},
        "victim": {"method": "csq", "bits": 16, "backbone": "smallcnn", "epochs": 1, "hflip": False},
        "surrogate": {"stolen_fraction": 0.1, "epochs": 1},
        "attack": {"steps": 2, "poison_count": 8, "flip": False, "shift": 1},
        "pairs": 1,
    })
    results = run_poisoning(cfg, tmp_path, progress=False)
    by_method = {t["method"]: t for t in results["trials"]}
    assert set(by_method) == {"none", "witches_brew", "padhash", "label_flip"}
    assert by_method["none"]["map_poisoned"] == by_method["none"]["map"]  # `none` is the clean victim itself
    for t in by_method.values():  # digits' paper preset: train = database, so the poisons are searched
        assert t["poisons_in_database"] is True and t["database_size"] == 1618
    for m in ("witches_brew", "padhash"):
        assert by_method[m]["linf"] <= 16 / 255 + 1e-6
        assert 0 <= by_method[m]["map_poisoned"] <= 1 and -1 <= by_method[m]["grad_cosine"] <= 1
    assert by_method["label_flip"]["poison_dist_target_victim"] >= 0
    assert (tmp_path / "report.md").exists()
