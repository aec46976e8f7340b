import torch
from torch import nn

from padhash.defenses.dp import DPConfig, dp_step
from padhash.hashing import train_hash_model


def setup(seed=0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 4))
    x = torch.randn(8, 3, 2, 2) * 10
    y = torch.randn(8, 4)
    return model, x, y, lambda u, labels, index: (u - labels).pow(2).sum()


def flat(model):
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def test_clipping_bounds_the_step():
    model, x, y, loss = setup()
    before = flat(model)
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    dp_step(model, loss, x, y, None, opt, DPConfig(clip=0.3, noise=0.0, microbatch=1), torch.Generator())
    step = (flat(model) - before).norm()
    assert 0.05 < step <= 0.3 + 1e-5  # the average of 8 vectors of norm ≤ 0.3 (the raw gradient is far larger)


def test_noise_is_seeded_and_changes_the_step():
    runs = []
    for noise, seed in ((0.5, 1), (0.5, 1), (0.0, 1)):
        model, x, y, loss = setup()
        opt = torch.optim.SGD(model.parameters(), lr=1.0)
        dp_step(model, loss, x, y, None, opt, DPConfig(clip=0.3, noise=noise, microbatch=2),
                torch.Generator().manual_seed(seed))
        runs.append(flat(model))
    assert torch.equal(runs[0], runs[1])
    assert (runs[0] - runs[2]).norm() > 1.0  # 0.5 std over 52 coordinates


def test_frozen_backbone_dp_trains_the_hash_layer_on_cached_features():
    """The frozen regime: every training image passes the backbone once (not once per epoch), and only the hash
    layer moves."""
    from padhash.data.splits import TensorSplit
    from padhash.hashing import TrainConfig
    from padhash.models import FeatureCache

    gen = torch.Generator().manual_seed(0)
    train = TensorSplit(torch.rand(12, 3, 32, 32, generator=gen), torch.eye(3)[torch.arange(12) % 3])
    cfg = TrainConfig(method="csq", bits=8, backbone="efficientnet_lite0", weights="imagenet", finetune="frozen",
                      resolution=32, epochs=3, batch_size=6, hflip=False, seed=1)
    cache = FeatureCache()
    model = train_hash_model(train, 3, cfg, dp=DPConfig(clip=0.3, noise=0.01, microbatch=2), progress=False,
                             feature_cache=cache)
    assert cache.computed == len(train)  # 3 epochs, one backbone pass per image
    fresh = train_hash_model(train, 3, cfg, dp=DPConfig(clip=0.3, noise=0.0, microbatch=2), progress=False)
    backbone = lambda m: torch.cat([p.flatten() for p in m.backbone.parameters()])  # noqa: E731
    assert torch.equal(backbone(model), backbone(fresh))  # the frozen backbone never moved
    assert not torch.equal(model.hash_layer.weight, fresh.hash_layer.weight)  # the noise reached the hash layer


def test_dp_is_the_trainers_loop_with_only_the_step_replaced():
    """Clip never reached, no noise, one micro-batch per batch: dp_step is the plain step, so the weights are the
    plain trainer's bit for bit (same recipe, data order, augmentation); with noise they are not."""
    from tests.hashing.test_trainer import TinySplit, same, tiny_cfg, weights

    split, cfg = TinySplit(), tiny_cfg(method="csq")
    plain = weights(train_hash_model(split, 3, cfg, progress=False))
    neutral = DPConfig(clip=1e9, noise=0.0, microbatch=cfg.batch_size)
    assert same(plain, weights(train_hash_model(split, 3, cfg, dp=neutral, progress=False)))
    noisy = DPConfig(clip=1e9, noise=0.01, microbatch=cfg.batch_size)
    assert not same(plain, weights(train_hash_model(split, 3, cfg, dp=noisy, progress=False)))


def test_dp_training_resumes_bit_identically_and_its_checkpoint_is_not_plain_trainings(tmp_path, monkeypatch):
    import pytest

    from padhash.errors import PadhashError
    from tests.hashing.test_trainer import TinySplit, die_after_first_checkpoint, same, tiny_cfg, weights

    split, cfg, dp = TinySplit(), tiny_cfg(), DPConfig(clip=0.3, noise=0.05, microbatch=2)
    whole = weights(train_hash_model(split, 3, cfg, dp=dp, checkpoint_dir=tmp_path / "a", progress=False))
    undo = die_after_first_checkpoint(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        train_hash_model(split, 3, cfg, dp=dp, checkpoint_dir=tmp_path / "b", progress=False)
    undo()
    assert same(whole, weights(train_hash_model(split, 3, cfg, dp=dp, checkpoint_dir=tmp_path / "b",
                                                 progress=False)))  # the noise generator resumed too
    with pytest.raises(PadhashError, match="different training config"):
        train_hash_model(split, 3, cfg, checkpoint_dir=tmp_path / "a", progress=False)
    with pytest.raises(PadhashError, match="dp: clip must be > 0"):
        train_hash_model(split, 3, cfg, dp=DPConfig(clip=0.0), progress=False)
