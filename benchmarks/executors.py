"""Wall time of one small DHTA sweep (8 trials on digits) on each executor, measured in the same run.

The victims are trained once before timing and copied into every run folder, so each executor only runs trials.
Speed-up = the first executor's (local's) wall time / this one's; rows print as they finish. Per-trial overhead = (wall time × trials at once − the trials'
own compute time, read from their logs) / trials: worker start-up, Ray start-up, transfers and idle slots, spread
over the sweep's trials. On a shared machine the numbers are noisy; run it on a quiet one.

    PYTHONPATH=src python benchmarks/executors.py [--workers 2] [--iterations 60] [--queries 10]
"""
from __future__ import annotations

import argparse
import re
import shutil
import tempfile
import time
from pathlib import Path

from padhash.experiments.adversarial import query_config_from_dict
from padhash.experiments.adversarial_query import run_query_attack
from padhash.executors import ExecutorConfig
from padhash.runs import LOCK_NAME


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--iterations", type=int, default=60)
    ap.add_argument("--queries", type=int, default=10)
    ap.add_argument("--executors", default="local,processes,ray")
    args = ap.parse_args()
    # 4 methods × 2 seeds = 8 trials, each an attack of `queries` images on the seed's victim.
    sweep = {
        "data": {"name": "digits", "image_size": 16, "options": {"train_per_class": 50}},
        "victim": {"epochs": 3, "bits": 16}, "queries": args.queries, "n_t": 3,
        "attack": {"steps": args.iterations, "eps": 8 / 255},
        "methods": ["noise", "p2p", "dhta", "hag"], "seeds": [0, 1], "eval": {"topk": 100, "grid_queries": 0}}
    cfg = query_config_from_dict(sweep)
    root = Path(tempfile.mkdtemp(prefix="padhash-bench-executors-"))
    try:
        # The same victims (their cache key is data + recipe), trained here by a cheap run of the `none` floor.
        run_query_attack(query_config_from_dict({**sweep, "methods": ["none"]}), root / "victims-only",
                         progress=False)
        print(f"8 DHTA trials, digits 16 px, {args.queries} queries × {args.iterations} iterations, 1 thread/trial")
        print(f"{'executor':<10} {'workers':>7} {'wall s':>7} {'trials s':>8} {'speed-up':>8} "
              f"{'overhead s/trial':>16} same bytes", flush=True)
        local, reference = None, None
        for kind in args.executors.split(","):
            out = root / kind
            shutil.copytree(root / "victims-only" / "victims", out / "victims")
            (out / LOCK_NAME).touch()  # a padhash run folder that already holds its victims
            executor = ExecutorConfig(kind=kind, threads=1, workers=None if kind == "local" else args.workers)
            start = time.perf_counter()
            run_query_attack(cfg, out, progress=False, executor=executor)
            wall = time.perf_counter() - start
            compute = sum(float(m) for log in (out / "logs").glob("*.log")
                          for m in re.findall(r"--- done in ([0-9.]+) s", log.read_text()))
            slots = 1 if kind == "local" else args.workers
            results = (out / "results.json").read_bytes()
            reference = reference or results
            local = local or wall  # the first executor listed is the baseline (local by default)
            print(f"{kind:<10} {slots:>7} {wall:>7.1f} {compute:>8.1f} {local / wall:>7.2f}× "
                  f"{(wall * slots - compute) / 8:>16.2f} {results == reference}", flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
