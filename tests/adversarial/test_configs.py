"""Every shipped adversarial config parses and validates (no data is loaded); bad keys are one-line errors."""
from pathlib import Path

import pytest

from padhash.config import load_yaml
from padhash.errors import PadhashError
from padhash.experiments.adversarial import (
    QUERY_DEFAULTS,
    TRANSFER_DEFAULTS,
    query_config_from_dict,
    sweep_points,
    transfer_config_from_dict,
)

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
QUERY_FILES = sorted([*CONFIGS.glob("dhta-*.yaml"), *CONFIGS.glob("full/dhta-*.yaml")])
TRANSFER_FILES = sorted([*CONFIGS.glob("transfer-*.yaml"), *CONFIGS.glob("full/transfer-*.yaml")])


def test_every_table_has_a_cpu_config_and_a_full_variant():
    names = {p.name for p in QUERY_FILES + TRANSFER_FILES if p.parent == CONFIGS}
    full = {p.name for p in QUERY_FILES + TRANSFER_FILES if p.parent.name == "full"}
    for table in ("dhta-table1", "dhta-table3", "dhta-table5", "dhta-table6", "dhta-fig7"):
        assert f"{table}.yaml" in names and f"{table}.yaml" in full
    assert any(n.startswith("transfer-") for n in names) and any(n.startswith("transfer-") for n in full)


@pytest.mark.parametrize("path", QUERY_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_query_configs_parse(path):
    cfg = query_config_from_dict(load_yaml(path), path.name)
    assert sweep_points(cfg)


@pytest.mark.parametrize("path", TRANSFER_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_transfer_configs_parse(path):
    cfg = transfer_config_from_dict(load_yaml(path), path.name)
    assert all((s.backbone, s.method) != (cfg.victim.backbone, cfg.victim.method) for s in cfg.surrogates)


def test_defaults_parse_and_bad_values_name_the_key():
    assert query_config_from_dict(dict(QUERY_DEFAULTS)).queries == 30
    assert transfer_config_from_dict(dict(TRANSFER_DEFAULTS)).pairs == 32
    with pytest.raises(PadhashError, match=r"config\.sweep: unknown key 'attack\.bogus'"):
        query_config_from_dict({"sweep": {"attack.bogus": [1]}})
    with pytest.raises(PadhashError, match="methods"):
        query_config_from_dict({"methods": ["pgd"]})
    with pytest.raises(PadhashError, match="pair_selection"):
        transfer_config_from_dict({"pair_selection": ["best"]})
    two_axes = query_config_from_dict({"sweep": {"n_t": [1, 3], "victim.bits": [16, 32]}})
    assert [label for _, label in sweep_points(two_axes)][:2] == ["n_t=1,victim.bits=16", "n_t=1,victim.bits=32"]


def test_report_header_names_a_swept_setting_instead_of_the_base_value():
    from padhash.reports.adversarial import query_header
    cfg = {"data": {"name": "npz"}, "victim": {"method": "csq", "backbone": "efficientnet_lite0", "bits": 32},
           "queries": 30, "seeds": [0], "n_t": 9, "eval": {"topk": 1000, "drop_empty": False},
           "attack": {"eps": 8 / 255, "steps": 2000, "optimizer": "normalized", "step_fraction": 0.08},
           "sweep": {"attack.steps": [10, 100], "victim.bits": [16, 64]}}
    header = query_header(cfg)
    assert "attack.steps swept over [10, 100]" in header and "2000 iterations" not in header
    assert "victim.bits swept over [16, 64]" in header and "32 bits" not in header
    assert "n_t = 9" in header and "ε = 8.00/255" in header
    del cfg["sweep"]
    assert "2000 iterations" in query_header(cfg) and "32 bits" in query_header(cfg)
