"""The study's configs stay loadable by the pipeline and inside the issue's definitions (ε, budget, ASR@40/0.3)."""
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = sorted((ROOT / "configs" / "study").glob("*.yaml")) + [ROOT / "configs" / "padhash-cpu.yaml"]


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_study_config_loads_within_the_definitions(path):
    from padhash.experiments.poisoning import load_poisoning_config

    cfg = load_poisoning_config(path)
    assert cfg.attack.eps <= 16 / 255 + 1e-12          # never relaxed
    assert cfg.attack.poison_count is None and cfg.attack.poison_ratio <= 0.01  # ≤ 1 % of training
    assert cfg.eval.topk == 40 and cfg.eval.threshold == 0.3
    assert cfg.methods == ["none", "witches_brew", "padhash", "label_flip"]     # every attack beside floor and ceiling


def test_study_configs_exist():
    assert len(CONFIGS) >= 10
