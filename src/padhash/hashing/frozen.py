"""A model whose frozen part is replaced by cached outputs: training and encoding run the trainable rest only
(the hash layer on backbone features when frozen; the last stages when partial and run by stages)."""
from __future__ import annotations

import torch

from padhash.models import FeatureCache, HashModel


def uses_cache(model) -> bool:
    """Whether the model's frozen part may be replaced by cached outputs (frozen, or partial run by stages)."""
    return getattr(model, "backbone_frozen", False) or getattr(model, "frozen_prefix", None) is not None


def head_output(model: HashModel, cached: torch.Tensor) -> torch.Tensor:
    """u from cached outputs of the frozen part."""
    return model.hash_layer(cached) if model.backbone_frozen else model.from_prefix(cached)


def cached_views(model: HashModel, train, views: tuple[str, ...], after_augment=None) -> torch.Tensor:
    """(N, V, ...) cached outputs of the frozen part for every training image under each view (the model's
    cache, or a throwaway one); with `after_augment`, rows it changes in a view hold the identity outputs of the
    changed view image."""
    if model.feature_cache is None:
        model.feature_cache = FeatureCache()
    cache, prefix = model.feature_cache, model.frozen_prefix
    index = torch.arange(len(train))
    images = train.images(index)
    out = []
    for view in views:
        feats = cache.features(model, images, view, prefix)
        if after_augment is not None:
            seen = images.flip(-1) if view == "flip" else images
            changed_view = after_augment(seen.clone(), index)
            rows = torch.nonzero((changed_view != seen).flatten(1).any(1)).flatten()
            if len(rows):
                feats[rows] = cache.features(model, changed_view[rows], "id", prefix)
        out.append(feats)
    return torch.stack(out, 1)
