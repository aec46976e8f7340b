"""`HashModel` = Normalize → backbone → hash layer, and ensembles of them.

Normalization (ImageNet mean/std, as every reference network expects) is the model's first layer, so callers feed
[0, 1] pixels and every attack budget ε is measured in pixel space.
"""
from __future__ import annotations

import torch
from torch import nn

from padhash.errors import PadhashError
from padhash.models.backbones import BACKBONES, build_backbone

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Normalize(nn.Module):
    def __init__(self, mean=IMAGENET_MEAN, std=IMAGENET_STD):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class HashModel(nn.Module):
    """[0,1] images → real-valued codes u (N, bits), no tanh; the binary code is sign(u)."""

    def __init__(self, backbone: nn.Module, feature_dim: int, bits: int, backbone_name: str, image_size: int = 32):
        super().__init__()
        self.bits = bits
        self.backbone_name = backbone_name
        self.image_size = image_size
        self.normalize = Normalize()
        self.backbone = backbone
        self.hash_layer = nn.Linear(feature_dim, bits)
        # DeepHash-pytorch's ResNet hash layer: weights ~ N(0, 0.01), bias 0
        nn.init.normal_(self.hash_layer.weight, std=0.01)
        nn.init.zeros_(self.hash_layer.bias)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features (N, D), the input of the hash layer."""
        return self.backbone(self.normalize(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.hash_layer(self.features(x))


class HashEnsemble(nn.Module):
    """Several hash models of the same code length; the output is the mean of their u (black-box surrogates)."""

    def __init__(self, members: list[HashModel]):
        super().__init__()
        if not members:
            raise PadhashError("an ensemble needs at least one member model")
        bits = {m.bits for m in members}
        if len(bits) != 1:
            raise PadhashError(f"ensemble members must share one code length, got {sorted(bits)}")
        self.members = nn.ModuleList(members)
        self.bits = bits.pop()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([m(x) for m in self.members]).mean(0)


def build_model(backbone: str, bits: int, *, image_size: int = 32, weights: str | None = None) -> HashModel:
    """A fresh HashModel. `weights`: a LOCAL file with the backbone's pretrained state dict (never downloaded).

    torchvision backbones accept 32×32 inputs as they are (AlexNet upsamples to 63 px inside); the papers resize
    CIFAR-10 to 224×224 instead, which a data set's `image_size` option reproduces."""
    if isinstance(bits, bool) or not isinstance(bits, int) or bits < 1:
        raise PadhashError(f"bits must be a positive integer, got {bits!r}")
    if backbone not in BACKBONES:
        raise PadhashError(f"unknown backbone {backbone!r} (known: {', '.join(BACKBONES)})")
    net, dim = build_backbone(backbone, weights)
    return HashModel(net, dim, bits, backbone, image_size)
