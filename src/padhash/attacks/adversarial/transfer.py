"""Targeted black-box transfer attack on hashing (Xiao & Wang, CVPR 2021) and its PGD / DI baselines.

Reference code (SugarRuy/CVPR21_Transferred_Hash, "NAG"): iterative FGSM on the surrogate with steps of 1/255,
loss = L1(code(x'), h_t) + λ·L1(code(x' + n), h_t) with one fresh noise sample n per iteration (uniform in
±32/255 by default, or N(0, (level/3)²) clipped to ±level), drawn per pixel of the 224-px network input. Here:
- the continuous code is tanh(f(x)) (our models output the raw u);
- the expectation over noise uses `noise_samples` draws per iteration (1 = the reference);
- `noise_resolution`: the noise is drawn per pixel of the query ("image", the default) or per pixel of the
  surrogate's input after its upsampling ("model", where the reference draws it: on 32-px queries upsampled inside
  the model, image-level noise reaches the network as blobs of several pixels);
- the L∞ budget is an explicit projection to ε (the reference bounds it implicitly by iterations × step);
- PGD = the same loop with λ = 0; DI = PGD with input diversity (random resize + pad with probability 0.5);
- `momentum` > 0: the reference's miFGSM (g ← μ·g + ∇/‖∇‖₁ per image, step along sign g; decay factor 1.0).
`adversarial_region` estimates how far a perturbation's adversarial region reaches by the largest noise level
the adversarial image survives, and `vulnerable_pairs` mines (source query, target class) pairs from the
surrogate's Hamming distances: the globally closest pairs, or (the reference's 'cW') pairs whose mean distance
lies in a band (12 < d < 18 of 48 bits), sampled evenly over that list.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from padhash.attacks.adversarial.targeted import project
from padhash.config import OMIT_AT_DEFAULT
from padhash.errors import PadhashError
from padhash.retrieval.codes import hamming_distance, paired_hamming

NOISE_DISTRIBUTIONS = ("uniform", "gaussian")
NOISE_RESOLUTIONS = ("image", "model")


@dataclass
class TransferAttackConfig:
    eps: float = 16 / 255          # L∞ budget in pixel space (reference: 32 iterations of 1/255 → 32/255)
    step_size: float = 1 / 255         # reference: 1/255 per iteration
    steps: int = 32               # reference: l_inf_max = 32
    noise_weight: float = 1.0          # λ (reference var_lambda 1.0); 0 = PGD
    noise_level: float = 32 / 255      # reference noise_level 32/255
    noise: str = "uniform"             # "uniform" U(−level, level) | "gaussian" N(0, (level/3)²) clipped to ±level
    noise_samples: int = 1             # noise draws per iteration in the expectation (reference: 1)
    # "image": per query pixel; "model": per pixel of the surrogate's input, after its upsampling (the reference's)
    noise_resolution: str = field(default="image", metadata=OMIT_AT_DEFAULT)
    diversity_prob: float = 0.0        # DI: probability of the random resize-and-pad (Xie et al.: 0.5)
    diversity_scale: float = 1.1       # DI: images are resized to [W, scale·W) and padded to scale·W
    # miFGSM decay factor μ (reference: 1.0); 0 = plain iterative FGSM
    momentum: float = field(default=0.0, metadata=OMIT_AT_DEFAULT)

    def effective(self) -> "TransferAttackConfig":
        """This attack with the fields it does not read at their defaults (the noise without the noise term, the
        resize scale without input diversity): two configs crafting the same queries compare equal."""
        unread = {}
        if self.noise_weight == 0:
            unread.update(noise_level=TransferAttackConfig.noise_level, noise=TransferAttackConfig.noise,
                          noise_samples=TransferAttackConfig.noise_samples,
                          noise_resolution=TransferAttackConfig.noise_resolution)
        if self.diversity_prob == 0:
            unread["diversity_scale"] = TransferAttackConfig.diversity_scale
        return replace(self, **unread)

    def validate(self, where: str = "transfer") -> None:
        if not 0 < self.eps <= 1 or self.step_size <= 0 or self.steps < 1:
            raise PadhashError(f"{where}: need 0 < eps ≤ 1, step_size > 0, steps ≥ 1")
        if self.noise not in NOISE_DISTRIBUTIONS:
            raise PadhashError(f"{where}.noise: {self.noise!r} is not one of {', '.join(NOISE_DISTRIBUTIONS)}")
        if self.noise_resolution not in NOISE_RESOLUTIONS:
            raise PadhashError(f"{where}.noise_resolution: {self.noise_resolution!r} is not one of "
                               f"{', '.join(NOISE_RESOLUTIONS)}")
        if self.noise_weight < 0 or self.noise_level < 0 or self.noise_samples < 1:
            raise PadhashError(f"{where}: noise_weight and noise_level must be ≥ 0, noise_samples ≥ 1")
        if not 0 <= self.diversity_prob <= 1 or self.diversity_scale < 1 or self.momentum < 0:
            raise PadhashError(f"{where}: diversity_prob must be in [0, 1], diversity_scale ≥ 1, momentum ≥ 0")


def sample_noise(shape, level: float, distribution: str, generator: torch.Generator) -> torch.Tensor:
    """One draw of the reference's random noise at `level` (pixel units), on the CPU."""
    if distribution == "uniform":
        return (torch.rand(shape, generator=generator) * 2 - 1) * level
    return (torch.randn(shape, generator=generator) * level / 3).clamp(-level, level)


def input_diversity(x: torch.Tensor, scale: float, prob: float, generator: torch.Generator) -> torch.Tensor:
    """DI (Xie et al.): with probability `prob`, resize to a random size in [W, scale·W), pad randomly to scale·W,
    and resize back to W so that any backbone takes it; differentiable in x."""
    if prob == 0 or float(torch.rand((), generator=generator)) >= prob:
        return x
    w = x.shape[-1]
    big = max(int(round(w * scale)), w + 1)
    size = int(torch.randint(w, big, (), generator=generator))
    left = int(torch.randint(0, big - size + 1, (), generator=generator))
    top = int(torch.randint(0, big - size + 1, (), generator=generator))
    out = F.interpolate(x, size=(size, size), mode="nearest")
    out = F.pad(out, (left, big - size - left, top, big - size - top))
    return F.interpolate(out, size=(w, w), mode="bilinear", align_corners=False)


def transfer_attack(
    surrogates: nn.Module | list[nn.Module],
    images: torch.Tensor,
    target_codes: torch.Tensor,
    cfg: TransferAttackConfig,
    generator: torch.Generator,
    *,
    batch_size: int = 128,
    progress: bool = False,
) -> torch.Tensor:
    """Craft on white-box surrogate(s) (the loss is averaged over them): noise-robust (λ > 0), PGD (λ = 0) or DI."""
    cfg.validate()
    models = list(surrogates) if isinstance(surrogates, (list, tuple)) else [surrogates]
    modes = [m.training for m in models]
    for m in models:
        m.eval()
    device = next(models[0].parameters()).device
    out = []
    try:
        for start in range(0, len(images), batch_size):
            x = images[start:start + batch_size].to(device)
            t = target_codes[start:start + batch_size].to(device, torch.float32)
            out.append(_craft_batch(models, x, t, cfg, generator, progress).cpu())
    finally:
        for m, mode in zip(models, modes):
            m.train(mode)
    return torch.cat(out)


def _craft_batch(models, clean, target, cfg: TransferAttackConfig, generator, progress) -> torch.Tensor:
    adv = clean.clone()
    velocity = torch.zeros_like(clean)
    for _ in tqdm(range(cfg.steps), desc="transfer attack", leave=False, disable=not progress):
        adv.requires_grad_(True)
        loss = 0.0
        for model in models:
            loss = loss + _code_l1(model, input_diversity(adv, cfg.diversity_scale, cfg.diversity_prob, generator), target)
            if cfg.noise_weight > 0:
                base = model_input(model, adv) if cfg.noise_resolution == "model" else adv
                for _ in range(cfg.noise_samples):
                    noise = sample_noise(base.shape, cfg.noise_level, cfg.noise, generator).to(base)
                    noisy = (base + noise).clamp(0, 1)
                    loss = loss + cfg.noise_weight / cfg.noise_samples * _code_l1(model, noisy, target)
        (grad,) = torch.autograd.grad(loss / len(models), adv)
        if cfg.momentum > 0:
            l1 = grad.abs().flatten(1).sum(1).clamp(min=1e-12).view(-1, 1, 1, 1)
            velocity = grad = cfg.momentum * velocity + grad / l1
        with torch.no_grad():
            adv = project(adv - cfg.step_size * grad.sign(), clean, cfg.eps)
    return adv.detach()


def model_input(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """`x` as the model's network sees it after its own upsampling (a model fed this upsamples no further)."""
    upsample = getattr(model, "upsample", None)
    if upsample is None:
        raise PadhashError(f"noise_resolution 'model' needs a model that upsamples its inputs; "
                           f"{type(model).__name__} has no `upsample`")
    return upsample(x)


def _code_l1(model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    # Summed over the batch so that each query's gradient does not depend on the batch size.
    return (torch.tanh(model(x)) - target).abs().mean(dim=1).sum()


@torch.no_grad()
def adversarial_region(
    model: nn.Module,
    adv_images: torch.Tensor,
    target_codes: torch.Tensor,
    levels: list[float],
    generator: torch.Generator,
    *,
    radius: int,
    samples: int = 8,
    distribution: str = "gaussian",
    survive_fraction: float = 0.5,
) -> torch.Tensor:
    """Per image, the largest noise level (from increasing `levels`) up to which the noisy adversarial image still
    hashes within Hamming `radius` of its target code in at least `survive_fraction` of `samples` draws
    (0 when it fails at the first level, or is not adversarial at all). A proxy for the adversarial region's size."""
    model.eval()
    device = next(model.parameters()).device
    targets = target_codes.to(device, torch.float32)
    x = adv_images.to(device)

    def survives(level: float) -> torch.Tensor:
        hits = torch.zeros(len(x), device=device)
        for _ in range(samples if level > 0 else 1):
            noisy = (x + sample_noise(x.shape, level, distribution, generator).to(x)).clamp(0, 1)
            codes = torch.where(model(noisy) >= 0, 1.0, -1.0)
            hits += (paired_hamming(codes, targets) <= radius).float()
        return hits / (samples if level > 0 else 1) >= survive_fraction

    region = torch.zeros(len(x))
    alive = survives(0.0).cpu()
    for level in sorted(levels):
        alive &= survives(level).cpu()
        region[alive] = level
    return region


def vulnerable_pairs(
    query_codes: torch.Tensor,
    query_classes: torch.Tensor,
    ref_codes: torch.Tensor,
    ref_classes: torch.Tensor,
    count: int,
    *,
    num_classes: int,
    mode: str = "mined",
    generator: torch.Generator | None = None,
    allowed_targets: list[int] | None = None,
    band: tuple[float, float] = (0.25, 0.375),
) -> list[tuple[int, int]]:
    """(query index, target class) pairs. "mined": the `count` pairs with the smallest mean Hamming distance from
    the query's surrogate code to the surrogate codes of the target class's reference images (each query used
    once); "band": `count` pairs sampled evenly (the reference's np.arange(0, N, N/count)) over all (query, class)
    pairs whose mean distance lies strictly inside `band` (fractions of the bits; reference 12/48–18/48);
    "random": random queries with a random target class ≠ its own (the unmined baseline)."""
    targets = list(range(num_classes)) if allowed_targets is None else list(allowed_targets)
    bits = query_codes.shape[1]
    q = query_codes.to(torch.float32)
    mean_dist = torch.full((len(q), num_classes), float("inf"))
    for c in targets:
        members = ref_codes[ref_classes == c].to(torch.float32)
        if len(members):
            mean_dist[:, c] = hamming_distance(q, members).mean(dim=1)
    mean_dist[torch.arange(len(q)), query_classes] = float("inf")  # never the query's own class
    if mode == "random":
        order = torch.randperm(len(q), generator=generator)
        pairs = []
        for i in order.tolist():
            options = [c for c in targets if c != int(query_classes[i]) and torch.isfinite(mean_dist[i, c])]
            if options:
                pairs.append((i, options[int(torch.randint(len(options), (), generator=generator))]))
            if len(pairs) == count:
                break
        return pairs
    if mode == "band":
        lo, hi = band[0] * bits, band[1] * bits
        inside = torch.nonzero((mean_dist > lo) & (mean_dist < hi))  # row-major: the reference's (i, j) order
        if len(inside) == 0:
            raise PadhashError(f"vulnerable_pairs: no (query, class) pair at a mean distance in ({lo:g}, {hi:g}) "
                               f"of {bits} bits; widen pair_band")
        picks = torch.arange(0, len(inside), len(inside) / count).long()[:count] if len(inside) > count \
            else torch.arange(len(inside))
        return [(int(inside[k, 0]), int(inside[k, 1])) for k in picks]
    if mode != "mined":
        raise PadhashError(f"vulnerable_pairs: mode {mode!r} is not 'mined', 'band' or 'random'")
    best_dist, best_class = mean_dist.min(dim=1)
    order = torch.argsort(best_dist, stable=True)
    return [(int(i), int(best_class[i])) for i in order[:count] if torch.isfinite(best_dist[i])]


def mean_pair_distance(q_codes: torch.Tensor, db_codes: torch.Tensor, db_classes: torch.Tensor,
                       target_classes: list[int]) -> float:
    """Mean over pairs of the mean Hamming distance from the query's code to the target class's database codes."""
    dists = [hamming_distance(q.float()[None], db_codes[db_classes == t].float()).mean()
             for q, t in zip(q_codes, target_classes)]
    return float(torch.stack(dists).mean())
