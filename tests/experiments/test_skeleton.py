"""The run skeleton the family runners share: digest, sweep points, trial keys (the formats finished runs resume by)."""
import hashlib
import json

import pytest

from padhash.config import to_dict
from padhash.errors import PadhashError
from padhash.experiments import skeleton


def test_digest_is_the_sha256_of_the_parts_config_dicts():
    from padhash.data import DataConfig
    from padhash.hashing import TrainConfig

    parts = (DataConfig(name="digits"), TrainConfig(bits=16), "key|x", [3, 1])
    text = json.dumps([to_dict(p) for p in parts], sort_keys=True, default=str)
    assert skeleton.digest(*parts) == hashlib.sha256(text.encode()).hexdigest()[:10]
    assert skeleton.digest(TrainConfig(bits=16)) != skeleton.digest(TrainConfig(bits=32))


def test_every_family_keys_its_trials_the_same_way():
    from padhash.experiments.adversarial import _trial_keys
    from padhash.experiments import backdoor
    from padhash.experiments.poisoning import PoisoningRun

    assert skeleton.trial_key("", "seed=0", "dhta") == "seed=0|dhta"
    assert skeleton.trial_key("n_t=1,victim.bits=16", "seed=0", "dhta") == "n_t=1,victim.bits=16|seed=0|dhta"
    assert _trial_keys(["none", "dhta"], "", "seed=3") == {"none": "seed=3|none", "dhta": "seed=3|dhta"}
    assert PoisoningRun._trial_key(None, None, None, 0, 2, "padhash") == "seed=0|pair=2|padhash"
    assert PoisoningRun._trial_key(None, "attack.alpha", 0.1, 0, 2, "padhash") == "attack.alpha=0.1|seed=0|pair=2|padhash"
    # the backdoor family keys each trial by the skeleton's sweep label and trial_key directly
    assert backdoor.trial_key is skeleton.trial_key and backdoor.sweep_points is skeleton.sweep_points


def test_sweep_points_are_the_product_of_the_axes_in_order():
    from padhash.experiments.adversarial import query_config_from_dict

    cfg = query_config_from_dict({"sweep": {"n_t": [1, 9], "victim.bits": [16, 32]}})
    points = skeleton.sweep_points(cfg)
    assert [label for _, label in points] == ["n_t=1,victim.bits=16", "n_t=1,victim.bits=32",
                                              "n_t=9,victim.bits=16", "n_t=9,victim.bits=32"]
    at = skeleton.apply_point(cfg, points[1][0])
    assert (at.n_t, at.victim.bits) == (1, 32) and (cfg.n_t, cfg.victim.bits) != (1, 32)  # a copy
    assert skeleton.sweep_points(query_config_from_dict({})) == [({}, "")]


def test_one_sweep_meaning_in_every_family():
    from padhash.experiments.backdoor_config import config_from_dict as backdoor_config
    from padhash.experiments.poisoning_config import config_from_dict as poisoning_config

    for build in (backdoor_config, poisoning_config):
        with pytest.raises(PadhashError, match="sweep: unknown key 'victim.bitz'"):
            build({"sweep": {"victim.bitz": [16]}})
    with pytest.raises(PadhashError, match="one axis at a time"):
        poisoning_config({"sweep": {"victim.bits": [16], "pairs": [1]}})
    # CIBA Table 5 is a grid (blend ratio × ε): the backdoor family takes two axes, not three
    assert len(skeleton.sweep_points(backdoor_config({"sweep": {"victim.bits": [16, 32], "seed": [1, 2]}}))) == 4
    with pytest.raises(PadhashError, match="at most two axes"):
        backdoor_config({"sweep": {"victim.bits": [16], "seed": [1], "blend": [0.5]}})
    point = skeleton.with_value(backdoor_config({"sweep": {"victim.bits": [16, 32]}}), "victim.bits", 32)
    assert point.victim.bits == 32
    from padhash.experiments.backdoor_config import with_value

    assert with_value(backdoor_config({"sweep": {"victim.bits": [16, 32]}}), "victim.bits", 32).sweep == {}
