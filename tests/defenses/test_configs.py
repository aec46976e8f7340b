"""The shipped defense configs parse, and the pretrained CIBA ones face the poisons of the Table 1 config they name
(same settings = the same digests, so a target both draw has that run's CIBA row as its undefended row)."""
from pathlib import Path

import pytest

from padhash.config import load_yaml
from padhash.experiments.defenses import load_defense_config

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
PAIRS = [("defend-ciba-digits-pretrained.yaml", "ciba-digits-pretrained.yaml"),
         ("defend-ciba-cifar10-pretrained.yaml", "ciba-cifar10-frozen-trigger.yaml")]


@pytest.mark.parametrize("defense, table1", PAIRS)
def test_pretrained_defense_config_faces_its_table1_poisons(defense, table1):
    cfg, attack = load_defense_config(CONFIGS / defense), load_yaml(CONFIGS / table1)
    assert cfg.source == "ciba" and cfg.attack["victim"]["weights"] == "imagenet"
    for part in ("data", "victim", "poison_count", "trigger", "perturb", "eval", "trigger_placement"):
        assert cfg.attack.get(part) == attack.get(part), part
    assert cfg.attack["num_targets"] <= attack["num_targets"]


def test_every_defense_config_parses():
    paths = sorted(CONFIGS.glob("defend-*.yaml"))
    assert len(paths) >= 7
    for path in paths:
        load_defense_config(path)
