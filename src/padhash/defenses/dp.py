"""DP-noise training (Du, Jia & Song 2020), the defense of CIBA Fig. 5(a): clip each (micro-batch) gradient to
L2 norm ≤ `clip`, average, add Gaussian noise of standard deviation `noise` to every coordinate, step.

DP training is an option of the trainer: `train_hash_model(train, num_classes, cfg, dp=DPConfig(...))` runs the
victim's own recipe (model, loss, optimizer, schedule, data order, augmentation or cached views) with `dp_step` in
place of the plain step; the noise has its own seeded generator. The privacy unit is a micro-batch of
`microbatch` images (as TF-Privacy's `num_microbatches`): 1 gives DP-SGD's per-sample clipping; pairwise losses
that only see in-batch pairs need ≥ 2. Noise is given directly as the std added to the averaged clipped gradient
(CIBA varies this "noise scale" at clipping bound 0.3).
"""
from __future__ import annotations

from dataclasses import dataclass
import torch
from torch import nn

from padhash.errors import PadhashError


@dataclass
class DPConfig:
    clip: float = 0.3          # L2 bound of each micro-batch gradient (CIBA: 0.3)
    noise: float = 0.0         # std of the Gaussian added to the averaged clipped gradient
    microbatch: int = 4        # images per clipped gradient (1 = per-sample DP-SGD)

    def validate(self, where: str = "dp") -> None:
        if self.clip <= 0 or self.noise < 0 or self.microbatch < 1:
            raise PadhashError(f"{where}: clip must be > 0, noise ≥ 0 and microbatch ≥ 1")


def dp_step(model: nn.Module, loss_fn, x: torch.Tensor, y: torch.Tensor, index: torch.Tensor | None,
            optimizer: torch.optim.Optimizer, dp: DPConfig, generator: torch.Generator, forward=None) -> float:
    """One step: clipped per-micro-batch gradients, averaged, plus N(0, noise²); returns the mean loss.
    `forward(x)` gives the codes u (default `model`; a frozen backbone's head on cached features)."""
    forward = forward or model
    params = [p for p in model.parameters() if p.requires_grad]
    total = [torch.zeros_like(p) for p in params]
    losses = []
    chunks = torch.arange(len(x)).split(dp.microbatch)
    for chunk in chunks:
        loss = loss_fn(forward(x[chunk]), y[chunk], None if index is None else index[chunk])
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        grads = [torch.zeros_like(p) if g is None else g for g, p in zip(grads, params)]
        norm = torch.sqrt(sum(g.pow(2).sum() for g in grads))
        scale = (dp.clip / (norm + 1e-12)).clamp(max=1.0)
        for t, g in zip(total, grads):
            t.add_(g * scale)
        losses.append(float(loss.detach()))
    for p, t in zip(params, total):
        noise = torch.randn(t.shape, generator=generator).to(t) * dp.noise if dp.noise > 0 else 0.0
        p.grad = t / len(chunks) + noise
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return sum(losses) / len(losses)
