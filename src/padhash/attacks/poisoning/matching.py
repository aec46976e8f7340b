"""Gradient matching: the gradients of a hashing loss wrt model parameters, and the loss that aligns them.

PADHASH (Li et al., Eq. 3-5): G_v = ∇θ L(f(x_v), y_t) for the trigger(s) with the target label, G_p = ∇θ of the
mean loss over the poisoned batch with its true (= target) labels, and the Strict Gradient-Matching loss
    (1 − α)·(1 − cos(G_v, G_p)) + α·‖G_p − G_v‖ / (‖G_v‖·‖G_p‖).
α = 0 is Witches' Brew's "similarity" loss: one cosine over the concatenation of all matched parameter gradients.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn

from padhash.errors import PadhashError

HashLossFn = Callable[..., torch.Tensor]  # loss(u, labels, index=None) -> scalar (padhash.hashing.HashLoss)

# Which parameters' gradients are matched: every trainable one (the papers) or only the hash layer.
PARAM_SELECTIONS = ("all", "hash_layer")
# How the magnitude term is normalised: Eq. 5 as printed, or relative to ‖G_v‖ (scale-free; an option for studies).
MAGNITUDE_TERMS = ("paper", "relative")
# What is removed from G_v and G_p before matching: nothing (the papers) or the clean target-class mean gradient.
PROJECTIONS = ("none", "target_mean")


def matched_parameters(model: nn.Module, selection: str = "all") -> list[nn.Parameter]:
    """The parameters whose gradients are matched: `all` trainable ones, or `hash_layer` (the last Linear)."""
    if selection == "all":
        params = [p for p in model.parameters() if p.requires_grad]
    elif selection == "hash_layer":
        layer = getattr(model, "hash_layer", None)
        if layer is None:
            raise PadhashError(f"attack.params: 'hash_layer' needs a model with .hash_layer, got {type(model).__name__}")
        params = [p for p in layer.parameters() if p.requires_grad]
    else:
        raise PadhashError(f"attack.params: {selection!r} is not one of {', '.join(PARAM_SELECTIONS)}")
    if not params:
        raise PadhashError("attack.params: the model has no trainable parameters to match")
    return params


def parameter_gradient(
    model: nn.Module,
    loss_fn: HashLossFn,
    images: torch.Tensor,
    labels: torch.Tensor,
    params: Sequence[torch.Tensor],
    *,
    create_graph: bool = False,
) -> list[torch.Tensor]:
    """∇θ of the mean hashing loss over the batch (one backward for the whole batch: Eq. 4's G_p).

    `create_graph=True` keeps the graph so the matching loss can be differentiated again wrt the images.
    """
    loss = loss_fn(model(images), labels, index=None)
    grads = torch.autograd.grad(loss, list(params), create_graph=create_graph, allow_unused=True)
    # Parameters the loss does not reach (e.g. a head not used by this loss) contribute zero gradient.
    return [torch.zeros_like(p) if g is None else g for g, p in zip(grads, params)]


def _dot(a: Sequence[torch.Tensor], b: Sequence[torch.Tensor]) -> torch.Tensor:
    return sum((x * y).sum() for x, y in zip(a, b))


def gradient_norm(grads: Sequence[torch.Tensor]) -> torch.Tensor:
    return _dot(grads, grads).sqrt()


def gradient_cosine(poison_grads: Sequence[torch.Tensor], target_grads: Sequence[torch.Tensor]) -> torch.Tensor:
    """One global cosine over all matched parameters (Witches' Brew, not per layer)."""
    return _dot(poison_grads, target_grads) / (gradient_norm(poison_grads) * gradient_norm(target_grads)).clamp_min(1e-30)


def project_out(grads: Sequence[torch.Tensor], direction: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """grads minus their component along `direction` (one global direction over all matched parameters):
    g − (g·d / d·d)·d. Differentiable in grads; a zero direction leaves grads as they are."""
    scale = _dot(grads, direction) / _dot(direction, direction).clamp_min(1e-30)
    return [g - scale * d for g, d in zip(grads, direction)]


def strict_matching_loss(
    poison_grads: Sequence[torch.Tensor],
    target_grads: Sequence[torch.Tensor],
    alpha: float,
    *,
    magnitude: str = "paper",
) -> torch.Tensor:
    """PADHASH Eq. 5; `alpha=0` gives Witches' Brew's 1 − cosine exactly.

    magnitude="paper": α·‖G_p − G_v‖/(‖G_v‖‖G_p‖) as printed; "relative": α·‖G_p − G_v‖/‖G_v‖.
    """
    if not 0.0 <= alpha <= 1.0:
        raise PadhashError(f"attack.alpha: must be in [0, 1], got {alpha}")
    if magnitude not in MAGNITUDE_TERMS:
        raise PadhashError(f"attack.magnitude: {magnitude!r} is not one of {', '.join(MAGNITUDE_TERMS)}")
    norm_p = gradient_norm(poison_grads)
    norm_v = gradient_norm(target_grads)
    direction = 1.0 - _dot(poison_grads, target_grads) / (norm_p * norm_v).clamp_min(1e-30)
    if alpha == 0.0:
        return direction
    diff = gradient_norm([gp - gv for gp, gv in zip(poison_grads, target_grads)])
    scale = norm_v * norm_p if magnitude == "paper" else norm_v
    return (1.0 - alpha) * direction + alpha * diff / scale.clamp_min(1e-30)
