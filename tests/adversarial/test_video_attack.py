"""#18: DHTA on clips moves the adversarial clip's code toward the target code.

The shipped clip config (configs/dhta-video-digits-motion.yaml) once used a small CNN trained from scratch, whose
clip codes did not move at ε = 8/255 (Hamming to the anchor stayed at 16 of 32 bits for every query over 100
iterations: input gradients ~250× smaller than the pretrained frame backbone's, and the frame features had to move
~87 % to flip a bit). These tests run that config's recipe at toy scale and fail on such a victim."""
import dataclasses
from pathlib import Path

import pytest
import torch

from padhash.attacks.adversarial import TargetedAttackConfig, targeted_attack
from padhash.config import load_yaml
from padhash.data import DataConfig
from padhash.experiments.adversarial import _Models, query_config_from_dict
from padhash.models import FeatureCache, build_video_model

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def _hamming(u, target):
    return ((u.shape[1] - (torch.where(u >= 0, 1.0, -1.0) * target).sum(1)) / 2)


def test_the_gradient_reaches_every_frame_of_a_frozen_cached_video_model():
    torch.manual_seed(0)
    model = build_video_model("efficientnet_lite0", 16, "lstm", weights="imagenet", finetune="frozen",
                              resolution=32).eval()
    model.feature_cache = FeatureCache()  # encode-time cache; the attack must differentiate the frames themselves
    clips = torch.rand(2, 4, 3, 16, 16, requires_grad=True)
    (grad,) = torch.autograd.grad(model(clips).sum(), clips)
    assert (grad.flatten(2).abs().sum(2) > 0).all()  # every frame of every clip gets a gradient
    assert model.feature_cache.computed == 0


@pytest.mark.slow
def test_the_shipped_clip_config_victim_is_moved_to_the_anchor(tmp_path):
    cfg = query_config_from_dict(load_yaml(CONFIGS / "dhta-video-digits-motion.yaml"))
    data = dataclasses.replace(cfg.data, options={**cfg.data.options, "clips_per_class": 8})
    victim = dataclasses.replace(cfg.victim, epochs=5)
    models = _Models(tmp_path, "cpu", False, None, str(tmp_path / "features"))
    _, model = models.trained("victim", data, victim)
    ds = models.dataset(data)
    db = models.codes("v", model, ds.database, "database").float()
    clips = ds.query.images(torch.arange(3))
    labels = ds.database.labels.argmax(1)
    target = torch.stack([db[labels != ds.query.labels[i].argmax()][0] for i in range(3)])  # another class's code
    before = _hamming(model(clips), target)
    adv = targeted_attack(model, clips, target, cfg.attack)  # the config's budget: ε 8/255, 30 iterations, α 0.1
    after = _hamming(model(adv), target)
    assert (adv - clips).abs().max() <= cfg.attack.eps + 1e-6
    # measured (deterministic seeds): this config 10.3 -> 7.3 bits; the old small-CNN config 9.3 -> 8.0 (it fails)
    assert before.mean() >= 8 and after.mean() <= before.mean() - 2.5, (before, after)
