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
    if cfg.attack.poison_count is None:
        assert cfg.attack.poison_ratio <= 0.01                                   # ≤ 1 % of training
    else:
        from padhash.experiments.skeleton import DatasetCache

        assert cfg.attack.poison_count <= 0.01 * len(DatasetCache().dataset(cfg.data).train)
    assert cfg.eval.topk == 40 and cfg.eval.threshold == 0.3
    assert cfg.methods[0] == "none" and "witches_brew" in cfg.methods          # every attack beside its floor
    # and its ceiling, in this run or (a diagnostic variant) in the run of the config its header names
    assert "label_flip" in cfg.methods or "ceiling: " in path.read_text().splitlines()[0]


def test_study_configs_exist():
    assert len(CONFIGS) >= 10
