"""PADHASH Table VII on multi-label data: eval.match decides when an item carries a multi-hot y_t (#18)."""
from pathlib import Path

import pytest

from padhash.errors import PadhashError
from padhash.experiments.poisoning_config import config_from_dict, load_poisoning_config

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def test_table7_configs_pick_their_reading_of_carries():
    mosaic = load_poisoning_config(CONFIGS / "padhash-table7-mosaic.yaml")
    assert (mosaic.data.name, mosaic.eval.match, mosaic.attack.target_classes) == ("digits-mosaic", "all", 2)
    assert mosaic.victim.weights == "imagenet" and mosaic.victim.finetune == "frozen"
    # single-label data: no item has both target classes, so the CIFAR config counts either
    assert load_poisoning_config(CONFIGS / "padhash-table7.yaml").eval.match == "any"


def test_an_unknown_match_is_one_clear_error():
    with pytest.raises(PadhashError, match="eval.match"):
        config_from_dict({"eval": {"match": "some"}})
