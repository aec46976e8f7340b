"""Issue 15: the pretrained regime's threat model (stolen-share bases, gray-box surrogate), refusals, feature cache."""
import pytest
import torch

from padhash.errors import PadhashError
from padhash.experiments.poisoning import PoisoningRun, config_from_dict, surrogate_members
from tests.poisoning.helpers import tiny_config


def _frozen(npz, attack=None, **over):
    return tiny_config(npz, victim={"method": "csq", "bits": 16, "backbone": "efficientnet_lite0",
                                    "weights": "imagenet", "finetune": "frozen", "resolution": 32, "epochs": 2,
                                    "batch_size": 16, "hflip": False},
                       attack=attack or {"steps": 1, "poison_count": 6, "shift": 0, "flip": False}, **over)


def test_bases_come_from_the_stolen_share_by_default(tiny_npz, tmp_path):
    from padhash.data import stolen_subset
    from padhash.rng import derive_seed

    cfg = config_from_dict(tiny_config(tiny_npz))
    assert cfg.attack.bases_from == "stolen"
    run = PoisoningRun(cfg, tmp_path, progress=False)
    ds = run.dataset(cfg.data)
    stolen = set(stolen_subset(ds.train, cfg.surrogate.stolen_fraction, derive_seed(0, "attacker")).tolist())
    target = torch.zeros(ds.num_classes)
    target[1] = 1.0
    bases = run.bases(cfg, 0, 0, target)
    assert len(bases) == 6 and set(bases) <= stolen and all(ds.train.labels[i, 1] > 0 for i in bases)


def test_surrogate_defaults_to_the_victims_backbone_and_weights(tiny_npz):
    cfg = config_from_dict(_frozen(tiny_npz))
    assert surrogate_members(cfg) == [("efficientnet_lite0", "imagenet")]
    listed = config_from_dict(_frozen(tiny_npz, surrogate={"backbones": ["efficientnet_lite1"],
                                                           "weights": ["imagenet"]}))
    assert surrogate_members(listed) == [("efficientnet_lite1", "imagenet")]


@pytest.mark.parametrize("method", ["hashnet", "dch", "dpsh"])
def test_pairwise_surrogate_losses_are_refused(tiny_npz, method):
    with pytest.raises(PadhashError, match="pairwise"):
        config_from_dict(tiny_config(tiny_npz, surrogate={"stolen_fraction": 0.5, "method": method}))
    # without a crafted rung nothing is matched, so the victim may use them
    config_from_dict(tiny_config(tiny_npz, methods=["none", "label_flip"],
                                 victim={"method": method, "bits": 16, "epochs": 1, "hflip": False}))


def test_frozen_crafting_must_augment_as_the_victim_trains(tiny_npz):
    with pytest.raises(PadhashError, match="shift"):
        config_from_dict(_frozen(tiny_npz, attack={"steps": 1, "poison_count": 6, "shift": 2, "flip": False}))


def test_frozen_victim_retrains_on_cached_features_only_the_poisons_are_new(tiny_npz, tmp_path):
    cfg = config_from_dict(_frozen(tiny_npz, feature_cache=str(tmp_path / "shared")))
    run = PoisoningRun(cfg, tmp_path / "run", progress=False)
    ds = run.dataset(cfg.data)
    run.clean_victim(cfg, 0)
    seen = run.features.computed
    assert seen == len(ds.train) and list((tmp_path / "shared").iterdir())
    base_idx = [0, 1, 2]
    poisons = (ds.train.images(base_idx) + 4 / 255).clamp(0, 1)
    run.poisoned_victim(cfg, 0, "k", base_idx, poisons)
    assert run.features.computed == seen + 3  # the retraining passed only the poisons through the backbone
