"""The PADHASH ladder end to end on the real stack (embedded digits, small CNN), tiny settings."""
import pytest

pytest.importorskip("padhash.data", reason="foundation data module not present")  # noqa: E402


@pytest.mark.slow
def test_tiny_ladder_on_digits(tmp_path):
    from padhash.experiments.poisoning import config_from_dict, run_poisoning

    cfg = config_from_dict({
        "data": {"name": "digits"},
        "victim": {"method": "csq", "bits": 16, "backbone": "smallcnn", "epochs": 4},
        "surrogate": {"stolen_fraction": 0.1, "epochs": 2},
        "attack": {"steps": 3, "poison_count": 8},
        "pairs": 1,
    })
    results = run_poisoning(cfg, tmp_path, progress=False)
    by_method = {t["method"]: t for t in results["trials"]}
    assert set(by_method) == {"none", "witches_brew", "padhash", "label_flip"}
    assert by_method["label_flip"]["asr"] == 1.0  # 8 copies of the trigger labelled y_t: the ceiling is reached
    for m in ("witches_brew", "padhash"):
        assert by_method[m]["linf"] <= 16 / 255 + 1e-6
        assert 0 <= by_method[m]["map_poisoned"] <= 1
    assert (tmp_path / "report.md").exists()
