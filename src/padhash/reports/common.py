"""Building blocks for report.md and the PNGs: tables, mean ± std cells, image grids, curves.

Reports are made from results.json alone; these helpers only format and draw.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")  # files only, no screen
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from padhash.io import atomic_write_text  # noqa: E402


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(map(str, headers)) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def mean_std(aggregates: dict, method: str, metric: str, digits: int = 3) -> str:
    """'m ± s (n)' from results.json aggregates, '–' when the method has no such metric."""
    stats = aggregates.get(method, {}).get(metric)
    if not stats:
        return "–"
    return f"{stats['mean']:.{digits}f} ± {stats['std']:.{digits}f}"


def mean_curve(trials: Sequence[dict], name: str, x: str, y: str) -> tuple[list[float], list[float]]:
    """The pointwise mean of the curve `name` ({x: [...], y: [...]}) over the trials that recorded it with the first
    one's length (e.g. a PR curve over seeds or target labels)."""
    curves = [t[name] for t in trials if name in t]
    xs = curves[0][x]
    same = [c for c in curves if len(c[y]) == len(xs)]
    return list(xs), [sum(c[y][i] for c in same) / len(same) for i in range(len(xs))]


def write_report(path: str | Path, sections: Sequence[str]) -> None:
    atomic_write_text(Path(path), "\n".join(s.rstrip() + "\n" for s in sections))


def save_image_grid(
    rows: Sequence[Sequence[torch.Tensor]],
    path: str | Path,
    *,
    row_titles: Sequence[str] | None = None,
    col_titles: Sequence[str] | None = None,
    marks: Sequence[Sequence[bool | None]] | None = None,
    title: str | None = None,
) -> None:
    """Draw rows of CHW [0,1] images. `marks[r][c]` True draws a green ✓ frame, False a red ✗ (e.g. target label hit)."""
    n_rows = len(rows)
    n_cols = max(len(r) for r in rows)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(1.3 * n_cols + 1.2, 1.4 * n_rows + 0.4), squeeze=False)
    for r in range(n_rows):
        for c in range(n_cols):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c >= len(rows[r]):
                ax.axis("off")
                continue
            img = rows[r][c].detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy()
            ax.imshow(img, interpolation="nearest")
            mark = marks[r][c] if marks is not None and c < len(marks[r]) else None
            if mark is not None:
                color = "tab:green" if mark else "tab:red"
                for spine in ax.spines.values():
                    spine.set_edgecolor(color)
                    spine.set_linewidth(3)
                ax.set_title("✓" if mark else "✗", color=color, fontsize=9, pad=2)
            if c == 0 and row_titles is not None:
                ax.set_ylabel(row_titles[r], fontsize=8)
            if r == 0 and col_titles is not None and c < len(col_titles) and mark is None:
                ax.set_title(col_titles[c], fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    save_figure(fig, path)


def save_curves(
    curves: dict[str, tuple[Sequence[float], Sequence[float]]],
    path: str | Path,
    *,
    xlabel: str,
    ylabel: str,
    title: str | None = None,
) -> None:
    """One line per named curve (x, y), e.g. ASR vs poison ratio or a precision–recall curve."""
    fig, ax = plt.subplots(figsize=(5, 3.6))
    for name, (x, y) in curves.items():
        ax.plot(list(x), list(y), marker="o", markersize=3, label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    if len(curves) > 1:
        ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)


def save_figure(fig, path: str | Path) -> None:
    """Write a matplotlib figure atomically (a temporary file renamed into place) and close it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
