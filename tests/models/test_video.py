import pytest
import torch

from padhash.attacks.adversarial.targeted import TargetedAttackConfig, targeted_attack, uniform_noise
from padhash.data import load_dataset
from padhash.errors import PadhashError
from padhash.hashing import TrainConfig, encode, train_hash_model
from padhash.hashing.trainer import model_from_config
from padhash.models import FeatureCache, VideoHashModel, build_video_model


def test_video_model_shapes_and_fusions():
    torch.manual_seed(0)
    clips = torch.rand(3, 4, 3, 16, 16)
    for fusion in ("lstm", "mean"):
        model = build_video_model("smallcnn", 12, fusion).eval()
        assert model(clips).shape == (3, 12) and model.features(clips).shape == (3, 4, 256)
    mean = build_video_model("smallcnn", 12, "mean").eval()
    # mean-pooling is order-free; the LSTM is not
    assert torch.allclose(mean(clips), mean(clips.flip(1)), atol=1e-5)
    lstm = build_video_model("smallcnn", 12, "lstm").eval()
    assert not torch.allclose(lstm(clips), lstm(clips.flip(1)), atol=1e-5)
    with pytest.raises(PadhashError, match="fusion 'gru' is not one of"):
        build_video_model("smallcnn", 12, "gru")


def test_frozen_video_features_cached_per_frame(tmp_path):
    model = build_video_model("smallcnn", 8, "lstm", finetune="frozen").eval()
    cache = FeatureCache(tmp_path, progress=False)
    clips = torch.rand(2, 3, 3, 16, 16)
    clips[1, 0] = clips[0, 0]  # a frame shared by two clips is computed once
    feats = cache.features(model, clips)
    assert feats.shape == (2, 3, 256) and cache.computed == 5
    assert torch.allclose(feats, model.features(clips), atol=1e-5)


def test_train_encode_attack_clip_set(tmp_path):
    ds = load_dataset("digits-motion", clips_per_class=4, clip_length=4, frame_stride=4, image_size=16)
    cfg = TrainConfig(method="dvh", bits=8, epochs=1, batch_size=16, fusion="lstm", finetune="frozen", hflip=False)
    model = train_hash_model(ds.train, ds.num_classes, cfg, progress=False, feature_cache=FeatureCache(tmp_path))
    assert isinstance(model, VideoHashModel) and encode(model, ds.query).shape == (len(ds.query), 8)
    assert isinstance(model_from_config(cfg, 16), VideoHashModel)
    clips = ds.query.images()
    target = -encode(model, ds.query).float()
    eps = 4 / 255
    adv = targeted_attack(model, clips, target, TargetedAttackConfig(eps=eps, steps=3, tanh_scale=0.1))
    assert adv.shape == clips.shape and (adv - clips).abs().max() <= eps + 1e-6
    assert (uniform_noise(clips, eps, torch.Generator().manual_seed(0)) - clips).abs().max() <= eps + 1e-6


def test_clip_data_needs_fusion():
    ds = load_dataset("digits-motion", clips_per_class=2, clip_length=2, image_size=16)
    with pytest.raises(PadhashError, match="clip data needs train.fusion"):
        train_hash_model(ds.train, ds.num_classes, TrainConfig(epochs=1), progress=False)
