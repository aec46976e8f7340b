"""Image-distortion metrics on [0, 1] NCHW tensors, one value per image; on clips (N, T, C, H, W) one value per
clip over all its frames (DHTA's perceptibility per video; SSIM = the mean over the frames' channels)."""
from __future__ import annotations

import numpy as np
import torch
from skimage.metrics import structural_similarity

from padhash.errors import PadhashError


def _pair(x, y) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = torch.as_tensor(x), torch.as_tensor(y)
    if x.shape == y.shape and x.dim() == 5:  # a clip's frames as one image of T·C channels
        x, y = x.flatten(1, 2), y.flatten(1, 2)
    if x.shape != y.shape or x.dim() != 4:
        raise PadhashError(f"expected two image batches of the same (N, C, H, W) shape, got {tuple(x.shape)} and {tuple(y.shape)}")
    return x.detach().double().cpu(), y.detach().double().cpu()


def psnr(x, y) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB with peak 1; identical images give +inf."""
    x, y = _pair(x, y)
    mse = ((x - y) ** 2).flatten(1).mean(dim=1)
    return torch.where(mse > 0, 10 * torch.log10(1.0 / mse), torch.full_like(mse, float("inf")))


def ssim(x, y) -> torch.Tensor:
    """Mean SSIM per image: scikit-image ``structural_similarity`` with data_range=1 over channels.

    Window: scikit-image's default 7x7 uniform window (gaussian_weights=False, K1=0.01, K2=0.03), so on 32x32
    images the mean is over the 26x26 valid window positions; smaller images use the largest odd window that fits.
    """
    x, y = _pair(x, y)
    win = min(7, x.shape[2], x.shape[3])
    win -= 1 - win % 2  # odd
    if win < 3:
        raise PadhashError(f"SSIM needs images of at least 3x3 pixels, got {x.shape[2]}x{x.shape[3]}")
    values = [
        structural_similarity(a, b, data_range=1.0, channel_axis=0, win_size=win)
        for a, b in zip(x.numpy(), y.numpy())
    ]
    return torch.tensor(np.asarray(values, dtype=np.float64))


def perceptibility(x, y) -> torch.Tensor:
    """sqrt(mean squared difference) per image on the [0, 1] scale (DHTA's perceptibility)."""
    x, y = _pair(x, y)
    return ((x - y) ** 2).flatten(1).mean(dim=1).sqrt()


def image_metrics(clean: torch.Tensor, adv: torch.Tensor) -> dict[str, float]:
    """Mean perceptibility, PSNR (inf when nothing changed), SSIM and the largest |δ| of adversarial images."""
    identical = torch.equal(clean, adv)
    return {"perceptibility": float(perceptibility(clean, adv).mean()),
            "psnr": float("inf") if identical else float(psnr(clean, adv).mean()),
            "ssim": float(ssim(clean, adv).mean()),
            "linf": float((adv - clean).abs().max())}
