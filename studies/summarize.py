"""One markdown row per run folder for docs/poisoning-study.md, read from RUN/results.json alone.

usage: python studies/summarize.py RUN [RUN ...]
Columns: the ASR ladder (mean over trials; n = trials), MAP / MAP* of the crafted rungs, and the diagnostics of the
crafted rungs (gradient cosine and ‖G_p‖/‖G_v‖ after crafting, poisons' Hamming distance to the target and source
class codes on the retrained victim, the trigger's distance to the target class after retraining).
"""
from __future__ import annotations

import sys
from pathlib import Path

from padhash.experiments.records import ResultsFile

LADDER = ("none", "witches_brew", "padhash", "label_flip")


def _mean(agg: dict, method: str, metric: str) -> str:
    cell = agg.get(method, {}).get(metric)
    if not cell:
        return "–"
    return f"{cell['mean']:.2f}±{cell['std']:.2f} (n={cell['n']})" if metric == "asr" else f"{cell['mean']:.3f}"


def row(run_dir: Path) -> str:
    agg = ResultsFile.load(run_dir)["aggregates"]
    ladder = " / ".join(_mean(agg, m, "asr") for m in LADDER)
    maps = " / ".join(_mean(agg, m, k) for m, k in (("none", "map"), ("witches_brew", "map_poisoned"),
                                                    ("padhash", "map_poisoned")))
    diag = "; ".join(
        f"{m}: cos {_mean(agg, m, 'grad_cosine')}, ratio {_mean(agg, m, 'grad_norm_ratio')}, "
        f"poison→tgt {_mean(agg, m, 'poison_dist_target')}, poison→src {_mean(agg, m, 'poison_dist_source_victim')}, "
        f"trigger→tgt {_mean(agg, m, 'trigger_dist_target')}"
        for m in ("witches_brew", "padhash"))
    return f"| {run_dir.name} | {ladder} | {maps} | {diag} |"


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        print(row(Path(arg)))
