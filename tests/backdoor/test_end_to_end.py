"""A tiny CIBA run on digits through the real stack: results.json schema, report, resume, CLI errors."""
import json

import pytest

from padhash.cli import main
from padhash.experiments.backdoor import config_from_dict, run_backdoor

TINY = {
    "data": {"name": "digits", "image_size": 16, "options": {"train_per_class": 20, "max_queries": 40}},
    "victim": {"method": "csq", "bits": 16, "epochs": 1, "batch_size": 32},
    "methods": ["none", "tri", "ciba", "label_flip"],
    "num_targets": 1,
    "poison_count": 12,
    "trigger": {"size": 2, "steps": 10, "batch_size": 8},
    "perturb": {"steps": 3, "batch_size": 6},
    "eval": {"topk": 50},
}


@pytest.mark.slow
def test_tiny_ciba_run_writes_results_and_resumes(tmp_path):
    cfg = config_from_dict(dict(TINY))
    results = run_backdoor(cfg, tmp_path / "run", progress=False)
    assert set(results["aggregates"]) == {"none", "tri", "ciba", "label_flip"}
    trials = {t["method"]: t for t in results["trials"]}
    for method, t in trials.items():
        assert 0.0 <= t["t_map"] <= 1.0 and 0.0 <= t["asr"] <= 1.0
        assert 0.0 < t["map"] <= 1.0 and 0.0 < t["map_poisoned"] <= 1.0
    assert trials["none"]["map_poisoned"] == trials["none"]["map"]
    assert trials["ciba"]["psnr"] > 15  # ε = 8/255 plus a 2×2 patch on 16×16
    assert trials["tri"]["poison_count"] == 12
    # CIBA Fig. 8: every row records the triggered queries' PR and precision@k curves towards the target
    for t in trials.values():
        assert len(t["pr_target"]["precision"]) == len(t["pr_target"]["recall"]) == 17  # radius 0..16 bits
        assert t["precision_curve_target"]["k"] == [1, 5, 10, 20, 50]
    # CIBA Fig. 4: code spread of the poisons before the trigger; "none" = the same images unperturbed, and Tri
    # adds no perturbation, so the two agree; the dirty-label ceiling's images are other pictures: none recorded
    assert trials["tri"]["code_spread"] == trials["none"]["code_spread"]
    assert 0.0 <= trials["ciba"]["code_spread"] <= 16 and "code_spread" not in trials["label_flip"]
    assert sum(trials["ciba"]["code_spread_histogram"]["fraction"]) == pytest.approx(1.0)
    report = (tmp_path / "run" / "report.md").read_text()
    assert "CIBA" in report and "Tri" in report and "t-MAP" in report and "code spread" in report
    figures = {p.name for p in (tmp_path / "run" / "figures").glob("*.png")}
    tsne = f"tsne-target{trials['ciba']['target_class']}.png"  # CIBA Fig. 3
    assert {"pr-triggered.png", "precision-triggered.png", "code-spread.png", tsne} <= figures and tsne in report
    # resume: a finished run recomputes nothing and returns the same numbers
    again = run_backdoor(cfg, tmp_path / "run", progress=False)
    assert again["trials"] == results["trials"]
    # a dropped trial is recomputed to the same value from the cached trigger, poisons and checkpoints
    data = json.loads((tmp_path / "run" / "results.json").read_text())
    data["trials"] = [t for t in data["trials"] if t["method"] != "ciba"]
    (tmp_path / "run" / "results.json").write_text(json.dumps(data))
    redone = {t["method"]: t for t in run_backdoor(cfg, tmp_path / "run", progress=False)["trials"]}
    assert redone["ciba"]["t_map"] == trials["ciba"]["t_map"]


def test_cli_rejects_bad_config_in_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("poison_count: 10\nperturb: {eps: 2}\n")
    assert main(["attack", "ciba", "--config", str(bad), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "perturb.eps" in err
    bad.write_text("methods: [ciba, magic]\n")
    assert main(["attack", "ciba", "--config", str(bad), "--out", str(tmp_path / "o")]) == 2
    assert "magic" in capsys.readouterr().err


def test_cli_rejects_unknown_sweep_key(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("sweep: {perturb.lamda: [0, 1]}\n")
    assert main(["attack", "ciba", "--config", str(bad), "--out", str(tmp_path / "o")]) == 2
    assert "perturb.lamda" in capsys.readouterr().err


@pytest.mark.slow
def test_two_axis_sweep_is_a_grid_in_results_and_report(tmp_path):
    cfg = config_from_dict(dict(TINY, methods=["none"], sweep={"trigger.steps": [2, 4], "eval.topk": [20, 50]}))
    results = run_backdoor(cfg, tmp_path / "run", progress=False)
    assert set(results["aggregates"]) == {f"none@trigger.steps={s},eval.topk={k}" for s in (2, 4) for k in (20, 50)}
    report = (tmp_path / "run" / "report.md").read_text()
    assert "None: t-MAP@K over trigger.steps × eval.topk" in report and "| trigger.steps=4 |" in report
    assert (tmp_path / "run" / "figures" / "t_map-sweep.png").exists()
