"""Wall time of a transfer sweep over the noise-robust term's noise level, crafting PGD once (trials of one identity
share a record) against crafting it at every point (identities off), measured in the same run.

The victim and surrogate are trained once before timing and copied into both run folders, so the two runs only
craft and score. Speed-up = the every-point run's wall time / the shared run's; the records must be equal apart
from `reused_from`. With L noise levels the shared run crafts PGD once instead of L times.

    PYTHONPATH=src python benchmarks/shared_trials.py [--levels 3] [--steps 100] [--pairs 128]
"""
from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import tempfile
import time
from pathlib import Path
from unittest import mock

from padhash.experiments import adversarial_transfer
from padhash.experiments.adversarial import transfer_config_from_dict
from padhash.runs import LOCK_NAME


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--levels", type=int, default=3)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--pairs", type=int, default=128)
    args = ap.parse_args()
    levels = [4 * (i + 1) / 255 for i in range(args.levels)]
    base = {"data": {"name": "digits", "image_size": 16, "options": {"train_per_class": 50}},
            "victim": {"epochs": 3, "bits": 16}, "surrogates": [{"method": "dpsh", "epochs": 3, "bits": 16}],
            "pairs": args.pairs, "pair_selection": ["random"], "methods": ["pgd", "transfer"],
            "attack": {"steps": args.steps, "eps": 8 / 255, "step_size": 1 / 255},
            "eval": {"region_levels": [8 / 255], "region_samples": 2}}
    cfg = transfer_config_from_dict({**base, "sweep": {"attack.noise_level": levels}})
    root = Path(tempfile.mkdtemp(prefix="padhash-bench-shared-"))
    try:
        adversarial_transfer.run_transfer_attack(transfer_config_from_dict({**base, "methods": ["none"]}),
                                                 root / "models-only", progress=False)
        print(f"transfer sweep on digits 16 px: {args.levels} noise levels × (pgd, transfer), {args.pairs} pairs × "
              f"{args.steps} steps")
        walls, trials = {}, {}
        for name in ("every point", "shared"):
            out = root / name.replace(" ", "-")
            for folder in ("victims", "surrogates"):
                shutil.copytree(root / "models-only" / folder, out / folder)
            (out / LOCK_NAME).touch()  # a padhash run folder that already holds its models
            patch = (mock.patch.object(adversarial_transfer, "trial_identity", lambda trial: None)
                     if name == "every point" else contextlib.nullcontext())
            with patch:
                start = time.perf_counter()
                adversarial_transfer.run_transfer_attack(cfg, out, progress=False)
                walls[name] = time.perf_counter() - start
            trials[name] = [{k: v for k, v in t.items() if k != "reused_from"}
                            for t in json.loads((out / "results.json").read_text())["trials"]]
            print(f"{name:<12} {walls[name]:7.1f} s", flush=True)
        print(f"speed-up (every point / shared): {walls['every point'] / walls['shared']:.2f}×; "
              f"records equal: {trials['every point'] == trials['shared']}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
