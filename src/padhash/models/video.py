"""Video hash models: a frame backbone applied to every frame, a temporal fusion, then the hash layer.

`VideoHashModel` is a `HashModel` whose input is a clip (N, T, 3, H, W) and whose `hash_layer` is a
`TemporalHead` over the per-frame features (N, T, D): `lstm` (DHTA §4.3: an LSTM fuses the frames, its last hidden
state feeds a linear hash layer) or `mean` (mean-pooling of the frame features: the no-temporal-model baseline).
Everything else is HashModel's: normalisation inside the graph (so ε is in pixels of every frame), fine-tuning
regimes, and in the frozen regime the trainer and `encode` take per-FRAME features from a FeatureCache, keyed by
frame content like any image's.
"""
from __future__ import annotations

import torch
from torch import nn

from padhash.errors import PadhashError
from padhash.models.hash_model import HashModel
from padhash.models.registry import create_backbone

FUSIONS = ("lstm", "mean")
LSTM_HIDDEN = 256


class TemporalHead(nn.Module):
    """Per-frame features (N, T, D) → real-valued codes (N, bits)."""

    def __init__(self, in_features: int, bits: int, fusion: str, hidden: int = LSTM_HIDDEN):
        super().__init__()
        if fusion not in FUSIONS:
            raise PadhashError(f"fusion {fusion!r} is not one of {', '.join(FUSIONS)}")
        self.in_features, self.fusion = in_features, fusion
        self.lstm = nn.LSTM(in_features, hidden, batch_first=True) if fusion == "lstm" else None
        self.linear = nn.Linear(hidden if fusion == "lstm" else in_features, bits)
        nn.init.normal_(self.linear.weight, std=0.01)  # as HashModel's hash layer
        nn.init.zeros_(self.linear.bias)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        if frames.dim() != 3:
            raise PadhashError(f"a video model takes clips (N, T, 3, H, W); got features of shape {tuple(frames.shape)}")
        if self.lstm is None:
            return self.linear(frames.mean(dim=1))
        _, (hidden, _) = self.lstm(frames)
        return self.linear(hidden[-1])


class VideoHashModel(HashModel):
    def __init__(self, backbone, bits: int, backbone_name: str, fusion: str, image_size: int = 32,
                 resolution: int | None = None):
        super().__init__(backbone, bits, backbone_name, image_size, resolution)
        self.fusion = fusion
        self.hash_layer = TemporalHead(backbone.feature_dim, bits, fusion)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Clips (N, T, 3, H, W) → per-frame features (N, T, D); frames (N, 3, H, W) → (N, D)."""
        if x.dim() != 5:
            return super().features(x)
        n, t = x.shape[:2]
        return super().features(x.flatten(0, 1)).view(n, t, -1)


def build_video_model(backbone: str, bits: int, fusion: str, *, image_size: int = 32, weights: str | None = None,
                      resolution: int | None = None, finetune: str = "full",
                      finetune_stages: int = 1) -> VideoHashModel:
    """A fresh VideoHashModel (arguments as `build_model`, plus the fusion: lstm | mean)."""
    if fusion not in FUSIONS:
        raise PadhashError(f"fusion {fusion!r} is not one of {', '.join(FUSIONS)}")
    if isinstance(bits, bool) or not isinstance(bits, int) or bits < 1:
        raise PadhashError(f"bits must be a positive integer, got {bits!r}")
    model = VideoHashModel(create_backbone(backbone, weights), bits, backbone, fusion, image_size, resolution)
    return model.set_finetune(finetune, finetune_stages)
