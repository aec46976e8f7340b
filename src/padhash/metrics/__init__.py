"""Retrieval metrics (mAP@k, t-MAP@k, precision@k, PR curves, ASR@k) and image-distortion metrics."""
from padhash.metrics.image import image_metrics, perceptibility, psnr, ssim
from padhash.metrics.ranking import (
    ASR_MATCHES,
    asr_at_k,
    carries_target,
    codes_map,
    average_precisions,
    map_at_k,
    mean_average_precision,
    pr_curve,
    precision_at_k,
    retrieval_metrics,
    t_map_at_k,
    triggered_scores,
)

__all__ = [
    "ASR_MATCHES", "asr_at_k", "average_precisions", "carries_target", "codes_map", "triggered_scores", "image_metrics", "map_at_k", "mean_average_precision", "perceptibility", "pr_curve",
    "precision_at_k", "psnr", "retrieval_metrics", "ssim", "t_map_at_k",
]
