"""Every shipped CIBA config parses and validates (a typo in a key or a value fails here, not an hour into a run)."""
from pathlib import Path

import pytest

from padhash.experiments.backdoor_config import load_backdoor_config

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
BACKDOOR_FILES = sorted([*CONFIGS.glob("ciba-*.yaml"), *CONFIGS.glob("full/ciba-*.yaml")])


def test_the_backdoor_configs_are_found():
    assert len(BACKDOOR_FILES) >= 20


@pytest.mark.parametrize("path", BACKDOOR_FILES, ids=lambda p: p.name)
def test_backdoor_configs_parse(path):
    cfg = load_backdoor_config(path)
    assert cfg.methods and cfg.poison_count >= 1 and cfg.trigger_placement == "after_augment"
