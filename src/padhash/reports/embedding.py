"""CIBA Fig. 3: t-SNE maps of hash codes, one panel per perturbation of the target class's images."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from padhash.reports.common import plt, save_figure


def save_code_tsne(path: str | Path, others: torch.Tensor, other_labels: torch.Tensor,
                   panels: dict[str, torch.Tensor], *, seed: int = 0) -> None:
    """One t-SNE panel per entry of `panels` (name → the target class's codes under one perturbation), each mapped
    together with the clean codes `others` of other classes (`other_labels`: their class indices). A seeded t-SNE:
    the same codes give the same picture."""
    from sklearn.manifold import TSNE

    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.2), squeeze=False)
    classes = sorted({int(c) for c in other_labels})
    for ax, (name, codes) in zip(axes[0], panels.items()):
        points = torch.cat([others, codes]).float().numpy()
        perplexity = float(min(30, max(2, (len(points) - 1) // 3)))
        xy = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(points)
        for c in classes:
            mask = np.asarray(other_labels == c)
            ax.scatter(*xy[: len(others)][mask].T, s=6, alpha=0.6, label=f"class {c}")
        ax.scatter(*xy[len(others):].T, s=8, c="black", marker="x", label="target class")
        ax.set_title(name, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0][-1].legend(fontsize=6, loc="best")
    fig.tight_layout()
    save_figure(fig, path)
