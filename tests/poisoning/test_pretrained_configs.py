"""The paper-table configs on the pretrained regimes (frozen; partial and full) parse, keep its threat model, and
the defense config builds its PADHASH poisons with the Table I settings (so the same poisons are faced)."""
from pathlib import Path

import pytest

from padhash.config import load_yaml

from padhash.experiments.defenses import load_defense_config
from padhash.experiments.poisoning import load_poisoning_config, surrogate_members

CONFIGS = Path(__file__).parent.parent.parent / "configs"
TABLES = sorted(CONFIGS.glob("padhash-pretrained-*.yaml"))


def test_the_table_configs_exist():
    names = {p.stem.removeprefix("padhash-pretrained-") for p in TABLES}
    assert {"table1-csq", "table1-dpn", "table4-lite1", "table4-ensemble", "table5-method", "table9-alpha",
            "fig5-ratio", "stolen"} <= names


@pytest.mark.parametrize("path", TABLES, ids=lambda p: p.stem)
def test_pretrained_table_config_parses_on_its_regime(path):
    cfg = load_poisoning_config(path)
    name = path.stem.removeprefix("padhash-pretrained-")
    regime = name if name in ("partial", "full") else "frozen"  # the regime configs; every table config is frozen
    assert cfg.data.name == "digits" and cfg.victim.finetune == regime and cfg.victim.weights == "imagenet"
    assert cfg.victim.backbone == "efficientnet_lite0" and cfg.victim.resolution == 64
    assert cfg.attack.eps <= 16 / 255 + 1e-9 and cfg.attack.bases_from == "stolen" and cfg.pairs == 3
    # every surrogate member starts from public ImageNet weights (never a random init of another network)
    assert all(weights == "imagenet" for _, weights in surrogate_members(cfg))


def test_defense_config_faces_the_table1_poisons():
    """Same attack and surrogate settings = the same poison digests (RUN/poisons), pairs and victims."""
    cfg = load_defense_config(CONFIGS / "defend-padhash-pretrained.yaml")
    table1 = load_yaml(CONFIGS / "padhash-pretrained-table1-csq.yaml")
    assert cfg.source == "padhash"
    for part in ("data", "victim", "surrogate", "attack", "eval", "pairs", "seeds"):
        assert cfg.padhash[part] == table1[part], part
