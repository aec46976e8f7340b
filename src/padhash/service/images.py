"""Checking and decoding uploaded images: only what the service claims (PNG, JPEG), bounded in bytes and pixels.

The format is the one Pillow finds in the bytes, never the file name or content type the client sent. The pixel
count is checked from the header, before any pixel is decoded, so a decompression bomb costs a header read.
"""
from __future__ import annotations

import io
import warnings

import torch
from PIL import Image, UnidentifiedImageError

from padhash.data.splits import load_image_file

FORMATS = ("PNG", "JPEG")


class ImageRejected(Exception):
    """An upload the service refuses: `status` is the HTTP code (400 malformed, 413 too large, 415 format)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def decode_upload(data: bytes, size: int, max_pixels: int) -> torch.Tensor:
    """Upload bytes → float32 [0,1] (3, size, size), or ImageRejected."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                if img.format not in FORMATS:
                    raise ImageRejected(415, f"image format {img.format} not accepted (only {', '.join(FORMATS)})")
                w, h = img.size
                if w * h > max_pixels:
                    raise ImageRejected(413, f"image of {w}×{h} pixels exceeds the limit of {max_pixels}")
                img.load()  # decode fully here: a truncated or corrupt body fails now, not later
    except ImageRejected:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageRejected(413, "image exceeds the decompression limit") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        raise ImageRejected(400, "not a readable PNG or JPEG image") from None
    return load_image_file(io.BytesIO(data), size)


def quantize(images: torch.Tensor) -> torch.Tensor:
    """[0,1] images as an 8-bit upload carries them (what encode_png sends, back as floats)."""
    return (images.clamp(0, 1) * 255).round() / 255


def encode_png(image: torch.Tensor) -> bytes:
    """float [0,1] (3, H, W) → PNG bytes (lossless, so crafted perturbations survive up to 8-bit rounding)."""
    pixels = (quantize(image) * 255).round().to(torch.uint8).permute(1, 2, 0).contiguous().numpy()
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()
