"""Query preprocessing: JPEG re-encoding and Gaussian noise, applied to [0,1] images before hashing.

Used both as a defense and as a robustness test of attacks (PADHASH Table XIII: noise 8/255, JPEG quality 85).
"""
from __future__ import annotations

import io
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image

from padhash.errors import PadhashError
from padhash.validate import check_range


def jpeg(images: torch.Tensor, quality: int = 85) -> torch.Tensor:
    """Encode each image as JPEG at `quality` with Pillow and decode it again (NCHW float [0,1])."""
    if not 1 <= quality <= 100:
        raise PadhashError(f"JPEG quality must be in 1..100, got {quality}")
    out = []
    for img in images.detach().cpu():
        arr = (img.clamp(0, 1).permute(1, 2, 0).numpy() * 255.0).round().astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, format="JPEG", quality=quality)
        buf.seek(0)
        dec = np.asarray(Image.open(buf).convert("RGB"), dtype=np.float32) / 255.0
        out.append(torch.from_numpy(dec).permute(2, 0, 1))
    return torch.stack(out).to(images.device, images.dtype)


def gaussian_noise(images: torch.Tensor, std: float = 8 / 255, generator: torch.Generator | None = None) -> torch.Tensor:
    """Add N(0, std²) per pixel and clamp to [0,1]; `generator` makes it reproducible."""
    noise = torch.randn(images.shape, generator=generator, dtype=images.dtype, device="cpu").to(images.device)
    return (images + std * noise).clamp(0, 1)


@dataclass
class PreprocessDefense:
    jpeg_quality: list[int] = field(default_factory=lambda: [90, 75, 50])
    noise_std: list[float] = field(default_factory=lambda: [4 / 255, 8 / 255, 16 / 255])

    def validate(self, where: str = "preprocess") -> None:
        for i, q in enumerate(self.jpeg_quality):
            check_range(f"{where}.jpeg_quality[{i}]", q, 1, 100)
        for i, std in enumerate(self.noise_std):
            check_range(f"{where}.noise_std[{i}]", std, 0)
