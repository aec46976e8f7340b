"""Python-API misuse a user can reach is a PadhashError (one line), not a ValueError from deep inside."""
import pytest
import torch

from padhash.errors import PadhashError


def test_dpsh_indices_without_a_memory():
    from padhash.hashing import make_loss

    loss = make_loss("dpsh", 2, 8)  # no num_train: no memory of training codes
    with pytest.raises(PadhashError, match="num_train"):
        loss(torch.randn(4, 8), torch.eye(2)[[0, 1, 0, 1]], index=torch.arange(4))


def test_a_backbone_name_registered_twice():
    from padhash.models import register_backbone

    with pytest.raises(PadhashError, match="'smallcnn' is already a backbone"):
        register_backbone("smallcnn")(lambda weights=None: None)


def test_feature_cache_unknown_view():
    from padhash.models import FeatureCache, build_model

    model = build_model("efficientnet_lite0", 8, weights="imagenet", resolution=32, finetune="frozen")
    with pytest.raises(PadhashError, match="view 'rot90' is not one of id, flip"):
        FeatureCache(progress=False).features(model, torch.rand(2, 3, 32, 32), "rot90")
