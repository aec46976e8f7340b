"""`padhash attack padhash|witches_brew|label_flip --config FILE --out RUN` and `padhash demo`."""
from __future__ import annotations

import argparse
from pathlib import Path

# The ladder each attack command runs: the attack always beside its floor (none) and ceiling (label_flip).
ATTACK_LADDERS = {
    "padhash": ["none", "witches_brew", "padhash", "label_flip"],
    "witches_brew": ["none", "witches_brew", "label_flip"],
    "label_flip": ["none", "label_flip"],
}


def register(commands) -> None:
    for name in ATTACK_LADDERS:
        p = commands.attack.add_parser(
            name, help=f"clean-label poisoning experiment ({', '.join(ATTACK_LADDERS[name])}) from a YAML config")
        p.add_argument("--config", required=True, help="YAML config (see configs/padhash-*.yaml)")
        p.add_argument("--out", required=True, help="run folder: results.json, report.md, figures/ (resumes)")
        _common(p)
        p.set_defaults(func=_attack, ladder=name)
    demo = commands.top.add_parser("demo", help="PADHASH ladder on the embedded digits, pretrained frozen EfficientNet-Lite0 (≤10 min on 2 cores)")
    demo.add_argument("--out", default="runs/demo", help="run folder (default runs/demo)")
    demo.add_argument("--pairs", type=int, default=None, help="(trigger, target) pairs (default: the demo's)")
    _common(demo)
    demo.set_defaults(func=_demo)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default=None, help="cpu or cuda (default: the config's)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")


def _attack(args) -> int:
    from padhash.config import load_yaml
    from padhash.experiments.poisoning import config_from_dict, run_poisoning

    data = load_yaml(args.config)
    if args.ladder != "padhash" or "methods" not in data:
        data["methods"] = ATTACK_LADDERS[args.ladder]
    if args.device:
        data["device"] = args.device
    cfg = config_from_dict(data, Path(args.config).name)
    results = run_poisoning(cfg, args.out, progress=not args.no_progress)
    _print_summary(results, args.out)
    return 0


def _demo(args) -> int:
    from padhash.experiments.poisoning import DEMO_CONFIG, config_from_dict, run_poisoning

    data = dict(DEMO_CONFIG)
    if args.pairs is not None:
        data["pairs"] = args.pairs
    if args.device:
        data["device"] = args.device
    cfg = config_from_dict(data, "demo")
    results = run_poisoning(cfg, args.out, progress=not args.no_progress)
    _print_summary(results, args.out)
    return 0


def _print_summary(results: dict, out: str) -> None:
    from padhash.experiments.poisoning_report import tables

    print("\n".join(tables(results)[:4]))
    print(f"full report: {Path(out) / 'report.md'}")
