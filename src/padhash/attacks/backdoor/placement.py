"""Where the trigger meets the victim's training augmentation (CIBA; REFERENCES.md §4.3).

CIBA's code pastes the trigger on the poison AFTER the train-time crop / flip, so every training presentation of
a poison carries the whole trigger in the bottom-right corner; pasting it before augmentation (the stored image
carries it) lets random shifts move it or cut it off and flips carry it to the bottom-left corner.

- `after_augment` (default): the poison's stored image is the perturbed target-class image; the victim's
  augmentation moves / flips it, then the trigger is pasted at the corner. In the frozen regime the views are the
  identity and the flip: the flip view of a poison is trigger(flip(perturbed)), a distinct image with its own
  cached features, so the trigger stays at the bottom-right corner in both views.
- `before_augment`: the stored image is trigger(perturbed) and augments like any other (padhash before #17).

CIBA's code also leaves its precomputed `noise` / `confusing` poisons un-augmented (only `Tri` is cropped and
flipped); here every row augments, so the methods differ only in their perturbation.
"""
from __future__ import annotations

import torch

from padhash.attacks.backdoor.trigger import apply_trigger

PLACEMENTS = ("after_augment", "before_augment")


class TriggerAfterAugment:
    """`after_augment(x, idx)` hook for `train_hash_model`: pastes `patch` (ratio `blend`) on the rows of the batch
    whose training positions are in `indices`; the other rows pass through unchanged."""

    def __init__(self, indices: torch.Tensor, patch: torch.Tensor, blend: float = 1.0):
        self.indices = torch.as_tensor(indices).flatten().long()
        self.patch, self.blend = patch.detach().cpu(), float(blend)

    def __call__(self, x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        rows = torch.isin(idx.cpu(), self.indices).to(x.device)
        if not rows.any():
            return x
        out = x.clone()
        out[rows] = apply_trigger(x[rows], self.patch.to(x), self.blend).clamp(0.0, 1.0)
        return out
