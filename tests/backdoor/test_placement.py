"""The trigger pasted after the victim's augmentation (CIBA's code), in the full and the frozen regime, and CIBA's
own victim loss."""
import torch

import padhash.hashing.trainer as trainer
from padhash.attacks.backdoor import TriggerAfterAugment, apply_trigger
from padhash.hashing import TrainConfig, make_loss, train_hash_model
from padhash.hashing.frozen import cached_views
from padhash.models import FeatureCache, build_model
from tests.hashing.test_trainer import TinySplit


def test_hook_pastes_only_on_poison_rows_at_the_corner():
    x = torch.rand(4, 3, 8, 8)
    patch = torch.rand(3, 2, 2)
    out = TriggerAfterAugment(torch.tensor([5, 7]), patch)(x, torch.tensor([7, 1, 2, 5]))
    assert torch.equal(out[[0, 3]], apply_trigger(x[[0, 3]], patch))
    assert torch.equal(out[[1, 2]], x[[1, 2]])


def test_every_training_presentation_of_a_poison_carries_the_whole_trigger(monkeypatch):
    split = TinySplit(n=16, size=16)
    patch = torch.rand(3, 4, 4)
    hook = TriggerAfterAugment(torch.tensor([0, 3, 9]), patch)
    seen = []
    forward = trainer.HashModel.forward

    def spy(self, x):
        if torch.is_grad_enabled():  # training presentations (not the trainer's no-grad fit check)
            seen.append(x.detach().clone())
        return forward(self, x)

    def spy_hook(x, idx):
        out = hook(x, idx)
        seen_idx.append(idx.clone())
        return out

    seen_idx = []
    monkeypatch.setattr(trainer.HashModel, "forward", spy)
    cfg = TrainConfig(method="csq", bits=8, epochs=2, batch_size=8, seed=1)
    train_hash_model(split, 3, cfg, progress=False, after_augment=spy_hook)
    assert len(seen) == len(seen_idx) == 4
    for x, idx in zip(seen, seen_idx):
        rows = torch.isin(idx, hook.indices)
        assert rows.any()
        assert torch.equal(x[rows][..., 12:, 12:], patch.expand(int(rows.sum()), -1, -1, -1))


def test_frozen_views_of_a_poison_are_trigger_of_the_view(tmp_path):
    split = TinySplit(n=6, size=32)
    model = build_model("efficientnet_lite0", 8, weights="imagenet", resolution=32, finetune="frozen")
    model.feature_cache = FeatureCache(tmp_path, progress=False)
    patch = torch.rand(3, 4, 4)
    hook = TriggerAfterAugment(torch.tensor([2]), patch)
    views = cached_views(model, split, ("id", "flip"), hook)
    x = split.images()
    cache = FeatureCache(progress=False)
    want_id = cache.features(model, apply_trigger(x[2:3], patch))
    want_flip = cache.features(model, apply_trigger(x[2:3].flip(-1), patch))  # the trigger stays bottom-right
    assert torch.allclose(views[2, 0], want_id[0], atol=1e-5) and torch.allclose(views[2, 1], want_flip[0], atol=1e-5)
    # clean rows: the cached flip (computed in another batch: equal up to float rounding)
    assert torch.allclose(views[0, 1], cache.features(model, x[0:1], "flip")[0], atol=1e-5)


def test_ciba_loss_is_its_reference_formula_and_trains():
    torch.manual_seed(0)
    u = torch.randn(6, 8)
    labels = torch.eye(3)[torch.tensor([0, 0, 1, 1, 2, 2])]
    loss = make_loss("ciba", 3, 8)
    h = u.tanh()
    s = 2 * (labels @ labels.T > 0).float() - 1
    assert torch.allclose(loss(u, labels), ((h @ h.T / 6 - s) ** 2).sum() / 36)
    lam = make_loss("ciba", 3, 8, lam=0.5)
    assert torch.allclose(lam(u, labels), loss(u, labels) + 0.5 * (h.sign() - h).pow(2).sum())
    cfg = TrainConfig(method="ciba", bits=8, epochs=1, batch_size=8, optimizer="sgd", lr=1e-3,
                      weight_decay=5e-4, schedule="constant", backbone_lr_scale=0.1)
    train_hash_model(TinySplit(n=16, size=16), 3, cfg, progress=False)
