"""The backbone registry: each backbone registers its builder once (`@register_backbone`), as timm's models do, so
adding a network is one new module and nobody edits a central table.

A builder takes `weights` (None = random initialisation; "imagenet" = the weights a pinned package ships, where
the backbone has them; anything else = a LOCAL file of the backbone's state dict) and returns a `Backbone`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from padhash.errors import PadhashError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
PACKAGED = "imagenet"  # `weights: imagenet` = the ImageNet weights inside a pinned package (never downloaded)


@dataclass
class Backbone:
    """A feature extractor and what a HashModel must know to use it."""
    module: nn.Module                  # normalized NCHW images -> (N, feature_dim) penultimate features
    feature_dim: int
    stages: list[nn.Module]            # input to output; `partial` fine-tuning trains the last N of them
    mean: tuple[float, ...] = IMAGENET_MEAN   # the normalisation its weights expect (part of the model)
    std: tuple[float, ...] = IMAGENET_STD
    resolution: int | None = None      # default input side the model upsamples to (None = the images' own)
    weights_id: str = field(default="random")  # what the weights are (a feature cache keys on it)
    channels_last: bool = False        # compute in channels-last memory layout (faster on CPU where measured)
    # forward_stages(module, x, lo, hi): stages lo..hi-1 of normalized x (hi None = through the pooled features);
    # lets `partial` fine-tuning cache the frozen stages' output. A plain function of the module (deepcopy-safe).
    forward_stages: Callable[[nn.Module, torch.Tensor, int, int | None], torch.Tensor] | None = None


Builder = Callable[[str | None], Backbone]
BACKBONES: dict[str, Builder] = {}


def register_backbone(name: str) -> Callable[[Builder], Builder]:
    """Decorator: make `name` a backbone that `build_model` / `--backbone` accept."""
    def decorate(builder: Builder) -> Builder:
        if name in BACKBONES:
            raise PadhashError(f"register_backbone: {name!r} is already a backbone; give yours another name")
        BACKBONES[name] = builder
        return builder
    return decorate


def create_backbone(name: str, weights: str | None = None) -> Backbone:
    # the built-in backbones register on import of their modules
    import padhash.models.backbones  # noqa: F401
    import padhash.models.efficientnet  # noqa: F401

    if name not in BACKBONES:
        raise PadhashError(f"unknown backbone {name!r} (known: {', '.join(BACKBONES)})")
    return BACKBONES[name](weights)
