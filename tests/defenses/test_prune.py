import torch
from torch import nn

from padhash.defenses.prune import dormant_order, prune_channels, pruning_curve


class TinyHash(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(12, 6), nn.ReLU())
        self.hash_layer = nn.Linear(6, 4)

    def features(self, x):
        return self.body(x)

    def forward(self, x):
        return self.hash_layer(self.features(x))


def test_dormant_order_and_pruning_zero_columns():
    model = TinyHash()
    with torch.no_grad():
        model.body[1].bias.copy_(torch.tensor([5.0, -50, 1, -50, 3, 0.5]))  # channels 1 and 3 never fire
    x = torch.rand(20, 3, 2, 2)
    order = dormant_order(model, x)
    assert set(order[:2].tolist()) == {1, 3}
    pruned = prune_channels(model, order[:2])
    assert pruned.hash_layer.weight[:, [1, 3]].eq(0).all()
    assert model.hash_layer.weight[:, [1, 3]].ne(0).all()  # the original is untouched
    # dormant channels carry nothing on clean data: cutting them leaves the output unchanged
    assert torch.allclose(pruned(x), model(x))
    rows = pruning_curve(model, x, [0, 2, 6], lambda m: {"out_norm": m(x).norm().item()})
    assert [r["pruned"] for r in rows] == [0, 2, 6]
    assert rows[0]["out_norm"] == rows[1]["out_norm"] != rows[2]["out_norm"]


def test_frozen_backbone_activations_come_from_its_feature_cache():
    """The frozen regime: the channel means read the cached features (one backbone pass per image, ever) and
    equal a direct pass within float rounding."""
    from padhash.defenses.prune import mean_activations
    from padhash.hashing import TrainConfig
    from padhash.hashing.trainer import model_from_config
    from padhash.models import FeatureCache

    cfg = TrainConfig(method="csq", bits=8, backbone="efficientnet_lite0", weights="imagenet", finetune="frozen",
                      resolution=32)
    model = model_from_config(cfg, 32)
    images = torch.rand(6, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    direct = mean_activations(model, images)
    model.feature_cache = FeatureCache()
    cached = mean_activations(model, images)
    again = mean_activations(model, images)
    assert model.feature_cache.computed == 6 and torch.equal(cached, again)
    assert torch.allclose(direct, cached, atol=1e-5)
