"""The poisoning report states each sweep group's own budget."""
from padhash.reports.poisoning import tables


def _trial(method, alpha, value):
    return {"key": f"attack.alpha={value}|seed=0|pair=0|{method}", "method": method, "seed": 0, "pair_index": 0,
            "alpha": alpha, "sweep_axis": "attack.alpha", "sweep_value": value, "trigger_index": 1, "target_class": 2,
            "asr": 1.0, "asr_clean_db": 1.0, "asr_noise": 1.0, "asr_jpeg": 1.0, "target_fraction": [1.0],
            "map": 0.9, "map_poisoned": 0.9, "trigger_dist_target": 0, "poison_count": 4}


def test_a_sweep_over_alpha_reports_each_groups_alpha():
    results = {"config": {"attack": {"eps": 16 / 255, "alpha": 0.2}, "eval": {"topk": 40, "threshold": 0.3},
                          "victim": {"method": "csq", "bits": 32}, "data": {"name": "digits"}},
               "trials": [_trial(m, a, v) for v in (0.1, 0.4) for m, a in (("none", None), ("padhash", v))]}
    text = "\n".join(tables(results))
    assert "ε = 16/255, α = 0.1." in text and "ε = 16/255, α = 0.4." in text and "α = 0.2" not in text
