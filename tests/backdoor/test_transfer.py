"""The CIBA Table 4 transfer study (ensemble / hold-out crafters, victims of each backbone) on tiny digits."""
import pytest

from padhash.errors import PadhashError
from padhash.experiments.backdoor import config_from_dict, run_backdoor

BACKBONES = ["smallcnn", "resnet18"]
TINY = {
    "data": {"name": "digits", "image_size": 16, "options": {"train_per_class": 12, "max_queries": 30}},
    "victim": {"method": "csq", "bits": 16, "epochs": 1, "batch_size": 32},
    "num_targets": 1,
    "poison_count": 8,
    "trigger": {"size": 4, "steps": 4, "batch_size": 8},
    "perturb": {"steps": 2, "batch_size": 8},
    "eval": {"topk": 30, "max_queries": 20},
    "transfer": {"backbones": BACKBONES, "settings": ["ensemble", "holdout"]},
}


@pytest.mark.slow
def test_tiny_transfer_run_has_one_result_per_backbone_and_setting(tmp_path):
    results = run_backdoor(config_from_dict(dict(TINY)), tmp_path / "run", progress=False)
    trials = results["trials"]
    cells = sorted((t["victim_backbone"], t["setting"]) for t in trials)
    assert cells == sorted((b, s) for b in BACKBONES for s in ("none", "ensemble", "holdout"))
    for t in trials:
        crafters = t["crafters"]
        if t["setting"] == "holdout":
            assert crafters == [b for b in BACKBONES if b != t["victim_backbone"]]
        else:
            assert crafters == BACKBONES
        for metric in ("t_map", "asr", "map", "map_poisoned"):
            assert 0.0 <= t[metric] <= 1.0, (t["method"], metric)
        assert (t["map_poisoned"] == t["map"]) == (t["setting"] == "none")
    # every setting of a column scores against the same clean model of that column's backbone
    for b in BACKBONES:
        assert len({t["map"] for t in trials if t["victim_backbone"] == b}) == 1
    assert set(results["aggregates"]) == {f"{'none' if s == 'none' else 'ciba'}@{s}:{b}"
                                          for b in BACKBONES for s in ("none", "ensemble", "holdout")}
    # the trials craft one trigger and one poison set per crafter set (ensemble + one hold-out per backbone), once
    for folder, suffix in (("triggers", ""), ("poisons", "-ciba")):
        names = sorted(p.name.split("-t")[0] for p in (tmp_path / "run" / folder).glob("*.safetensors"))
        assert names == sorted(f"ens-{c}{suffix}" for c in ("smallcnn+resnet18", "resnet18", "smallcnn")), folder
    report = (tmp_path / "run" / "report.md").read_text()
    assert "Transfer (CIBA Table 4)" in report
    table = report.split("Transfer (CIBA Table 4)")[1]
    assert all(b in table for b in BACKBONES) and "holdout" in table and "–" not in table


@pytest.mark.parametrize("transfer", [{"backbones": ["smallcnn"]}, {"backbones": ["smallcnn", "resnet18"],
                                                                    "settings": ["holdout", "oracle"]}])
def test_transfer_config_is_checked(transfer):
    with pytest.raises(PadhashError, match="transfer"):
        config_from_dict({**TINY, "transfer": transfer})
