"""Scoring a PADHASH trial: ASR@K of the triggers (clean, noisy, JPEG), poison codes and quality.

ASR follows PADHASH: a trigger succeeds when MORE than `eval.threshold` of its top-K carries the target label
(padhash.metrics.asr_at_k, strict). Functions of their inputs only, so an executor can call them per trial.
"""
from __future__ import annotations

from typing import Any

import torch

from padhash.defenses.preprocess import gaussian_noise, jpeg
from padhash.retrieval import hamming_distance
from padhash.rng import derive_seed

THRESHOLDS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)  # asr_at_threshold: ASR at each of these


def evaluate(cfg, seed, pair_no, model, db_codes, database, triggers, target) -> dict:
    """ASR@K over the triggers (clean, Gaussian noise, JPEG) and the trigger's distance to the target class,
    searching `database` (db_codes are its codes under `model`)."""
    from padhash.hashing import encode
    from padhash.metrics import ASR_MATCHES, asr_at_k, carries_target
    from padhash.retrieval import hamming_topk

    e = cfg.eval
    noise_gen = torch.Generator().manual_seed(derive_seed(seed, "noise", pair_no))
    variants = {"": triggers, "_noise": gaussian_noise(triggers, e.noise_std, generator=noise_gen),
                "_jpeg": jpeg(triggers, e.jpeg_quality)}
    out: dict[str, Any] = {}
    for suffix, images in variants.items():
        codes = encode(model, images, device=cfg.device).cpu()
        _, idx = hamming_topk(codes, db_codes, e.topk)
        asr, fractions = asr_at_k(idx, database.labels, target, threshold=e.threshold, match=e.match)
        out[f"asr{suffix}"] = float(asr)
        out[f"target_fraction{suffix}"] = [float(f) for f in fractions]
        if suffix == "":
            out["asr_at_threshold"] = {str(t): float((fractions > t + 1e-9).float().mean()) for t in THRESHOLDS}
            if (target > 0).sum() > 1:  # a multi-hot y_t: the ASR under every reading of "carries", side by side
                out["asr_by_match"] = {m: asr_at_k(idx, database.labels, target, threshold=e.threshold, match=m)[0]
                                       for m in ASR_MATCHES}
            target_db = carries_target(database.labels, target, e.match)
            dists = hamming_distance(codes, db_codes[target_db])
            out["trigger_dist_target"] = float(dists.min(1).values.float().mean())
    return out

def poison_codes(device: str, database, model, db_codes, poisons, source_classes, target, where: str) -> dict:
    """Mean Hamming distance of the poisons' codes to the source class's and the target class's code
    (the majority vote of that class's codes in `database` under `model`)."""
    from padhash.hashing import encode

    codes = encode(model, poisons, device=device).cpu()
    out = {}
    for name, classes in (("source", source_classes), ("target", target.nonzero().flatten().tolist())):
        members = (database.labels[:, classes] > 0).any(1)
        class_code = torch.where(db_codes[members].float().mean(0) >= 0, 1, -1).to(torch.int8)
        out[f"poison_dist_{name}_{where}"] = float(hamming_distance(codes, class_code[None]).float().mean())
    if where == "victim":
        out["poison_dist_target"] = out["poison_dist_target_victim"]  # DESIGN.md's metric name
    return out

def poison_quality(bases, poisons) -> dict:
    from padhash.metrics import psnr, ssim

    return {"psnr": float(psnr(poisons.cpu(), bases.cpu()).mean()), "ssim": float(ssim(poisons.cpu(), bases.cpu()).mean()),
            "linf": float((poisons - bases).abs().max())}
