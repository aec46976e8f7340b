"""Cached features of frozen backbones: computed once per (backbone, weights, resolution, view, image) and kept.

A frozen backbone's output depends only on the image, so features are stored per image, keyed by a hash of its
pixels: a poisoned training split costs a backbone pass only for its poisons, a trigger only for itself. On disk
(`root` given) each extractor has a folder of safetensors chunks `{keys (N, 16) uint8, features (N, D) float32}`,
each written atomically under a name derived from its content, so processes sharing a run folder (executors) can
read and add chunks concurrently without locks.

Views are the augmentations a frozen regime can keep honestly: `id` and `flip` (horizontal). Random shifts are not
cached (each would need its own backbone pass per epoch), so the frozen regime trains with flips only.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from tqdm.auto import tqdm

from padhash.errors import PadhashError
from padhash.io import load_tensors, save_tensors

VIEWS = ("id", "flip")
FORMAT = 1  # bump when what a cached feature means changes


class FeatureCache:
    def __init__(self, root: str | Path | None = None, batch_size: int = 128, progress: bool = True):
        self.root = Path(root) if root is not None else None
        self.batch_size = batch_size
        self.progress = progress
        self._rows: dict[str, dict[bytes, torch.Tensor]] = {}
        self.computed = 0  # images that went through a backbone (tests check reuse with it)

    def extractor_key(self, model, view: str, prefix: int | None = None) -> str:
        spec = {"prefix": prefix} if prefix is not None else {}
        spec |= {"format": FORMAT, "backbone": model.backbone_name, "weights": model.weights_id,
                "resolution": model.resolution, "view": view, "channels_last": model.channels_last,
                "mean": model.normalize.mean.flatten().tolist(),
                "std": model.normalize.std.flatten().tolist()}
        return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]

    def features(self, model, images: torch.Tensor, view: str = "id", prefix: int | None = None) -> torch.Tensor:
        """(N, D) float32 features of `images` ([0, 1], NCHW) under `model`'s frozen backbone, on the CPU; with
        `prefix` = model.frozen_prefix, the output of its frozen leading stages instead (partial fine-tuning);
        clips (N, T, 3, H, W) give (N, T, D), cached per frame (a frame seen in two clips is computed once)."""
        if images.dim() == 5:
            n, t = images.shape[:2]
            out = self.features(model, images.flatten(0, 1), view, prefix)
            return out.view(n, t, *out.shape[1:])
        if view not in VIEWS:
            raise PadhashError(f"FeatureCache.features: view {view!r} is not one of {', '.join(VIEWS)}")
        key = self.extractor_key(model, view, prefix)
        rows = self._load(key)
        images = images.detach().cpu().float().contiguous()
        keys = [hashlib.blake2b(img.numpy().tobytes(), digest_size=16).digest() for img in images]
        missing = sorted({k: i for i, k in enumerate(keys) if k not in rows}.values())
        if missing:
            new = self._extract(model, images[missing], view, prefix)
            new_keys = [keys[i] for i in missing]
            rows.update(zip(new_keys, new))
            self.computed += len(missing)
            if self.root is not None:
                self._save(key, new_keys, new)
        if not keys:
            return torch.empty(0)
        return torch.stack([rows[k] for k in keys])

    @torch.inference_mode()
    def _extract(self, model, images: torch.Tensor, view: str, prefix: int | None) -> torch.Tensor:
        device = next(model.parameters()).device
        out = []
        bar = tqdm(total=len(images), desc=f"features {model.backbone_name} {view}", unit="img", leave=False,
                   disable=not self.progress or len(images) < 4 * self.batch_size)
        was_training = model.training
        model.eval()
        for lo in range(0, len(images), self.batch_size):
            x = images[lo:lo + self.batch_size].to(device)
            x = x.flip(-1) if view == "flip" else x
            out.append((model.features(x) if prefix is None else model.prefix(x)).float().cpu().contiguous())
            bar.update(len(x))
        model.train(was_training)
        bar.close()
        return torch.cat(out).clone()

    def _load(self, key: str) -> dict[bytes, torch.Tensor]:
        if key in self._rows:
            return self._rows[key]
        rows: dict[bytes, torch.Tensor] = {}
        folder = self.root / key if self.root is not None else None
        if folder is not None and folder.is_dir():
            for path in sorted(folder.glob("*.safetensors")):
                chunk = load_tensors(path)
                rows.update(zip((bytes(k) for k in chunk["keys"].numpy()), chunk["features"]))
        self._rows[key] = rows
        return rows

    def _save(self, key: str, keys: list[bytes], features: torch.Tensor) -> None:
        name = hashlib.sha256(b"".join(keys)).hexdigest()[:16]
        keys_tensor = torch.frombuffer(bytearray(b"".join(keys)), dtype=torch.uint8).view(len(keys), 16)
        save_tensors(self.root / key / f"{name}.safetensors", {"keys": keys_tensor, "features": features.contiguous()})


@torch.no_grad()
def backbone_features(model, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """The backbone features of `images` (a frozen backbone's from its cache, computed once), in eval mode."""
    model.eval()
    if getattr(model, "backbone_frozen", False) and model.feature_cache is not None:
        return model.feature_cache.features(model, images)  # a frozen backbone's features, computed once
    device = next(model.parameters()).device
    return torch.cat([model.features(b.to(device)).flatten(1).cpu() for b in images.split(batch_size)])
