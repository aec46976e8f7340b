"""`padhash attack padhash|witches_brew|label_flip --config FILE --out RUN` and `padhash demo`."""
from __future__ import annotations

import argparse
from pathlib import Path

from padhash import registry
from padhash.cli.executor import add_executor_options, executor_from_args

FAMILY = "poisoning"


def register(commands) -> None:
    # one command per registered poisoning method, each running its ladder: floor (none), baselines, it, ceiling
    for m in registry.commands(FAMILY):
        name = m.name
        p = commands.attack.add_parser(
            name, help=f"clean-label poisoning experiment ({', '.join(registry.ladder(FAMILY, name))}) from a YAML config")
        p.add_argument("--config", required=True, help="YAML config (see configs/padhash-*.yaml)")
        p.add_argument("--out", required=True, help="run folder: results.json, report.md, figures/ (resumes)")
        _common(p)
        _remote(p)
        p.set_defaults(func=_attack, ladder=name)
    demo = commands.top.add_parser("demo", help="PADHASH ladder on the embedded digits, pretrained frozen EfficientNet-Lite0 (≤10 min on 2 cores)")
    demo.add_argument("--out", default="runs/demo", help="run folder (default runs/demo)")
    demo.add_argument("--pairs", type=int, default=None, help="(trigger, target) pairs (default: the demo's)")
    _common(demo)
    demo.set_defaults(func=_demo)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default=None, help="cpu or cuda (default: the config's)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    add_executor_options(p)


def _remote(p: argparse.ArgumentParser) -> None:
    p.add_argument("--victim-url", help="attack a live `padhash serve` service over HTTP instead (steal, poison, "
                                        "retrain, query); the config's remote: section sets the query budget")
    for name, env in (("ingest", "PADHASH_INGEST_TOKEN"), ("admin", "PADHASH_ADMIN_TOKEN"),
                      ("search", "PADHASH_SEARCH_TOKEN")):
        p.add_argument(f"--{name}-token", help=f"the service's {name} token (default ${env})")


def _attack(args) -> int:
    from padhash.config import load_yaml
    from padhash.experiments.poisoning import config_from_dict, run_poisoning

    data = load_yaml(args.config)
    executor = executor_from_args(args, data)  # the config's executor: section, left out of results.json
    if registry.get(FAMILY, args.ladder).baselines == () or "methods" not in data:  # the full ladder: config may pick
        data["methods"] = registry.ladder(FAMILY, args.ladder)
    if args.device:
        data["device"] = args.device
    if args.victim_url:
        return _attack_remote(args, data)
    cfg = config_from_dict(data, Path(args.config).name)
    results = run_poisoning(cfg, args.out, progress=not args.no_progress, executor=executor)
    _print_summary(results, args.out)
    return 0


def _attack_remote(args, data: dict) -> int:
    import os

    from padhash.remote.poisoning import remote_config_from_dict, run_remote
    from padhash.service import ServiceClient

    cfg, remote = remote_config_from_dict(data, Path(args.config).name)
    tokens = {n: getattr(args, f"{n}_token") or os.environ.get(f"PADHASH_{n.upper()}_TOKEN")
              for n in ("ingest", "admin", "search")}
    with ServiceClient(args.victim_url, ingest_token=tokens["ingest"], admin_token=tokens["admin"],
                       search_token=tokens["search"]) as client:
        results = run_remote(cfg, remote, client, args.out, progress=not args.no_progress)
    info = results["remote"]
    for method, metrics in results["aggregates"].items():
        print(f"{method}: ASR {metrics['asr']['mean']:.3f}   MAP {metrics['map']['mean']:.4f}   "
              f"MAP* {metrics['map_poisoned']['mean']:.4f}")
    print(f"queries spent {info['queries_spent']} (stealing {info['stealing_queries']}), items stolen "
          f"{info['items_stolen']}; wrote {Path(args.out) / 'results.json'}")
    return 0


def _demo(args) -> int:
    from padhash.experiments.poisoning import DEMO_CONFIG, config_from_dict, run_poisoning

    data = dict(DEMO_CONFIG)
    if args.pairs is not None:
        data["pairs"] = args.pairs
    if args.device:
        data["device"] = args.device
    executor = executor_from_args(args, data)
    cfg = config_from_dict(data, "demo")
    results = run_poisoning(cfg, args.out, progress=not args.no_progress, executor=executor)
    _print_summary(results, args.out)
    return 0


def _print_summary(results: dict, out: str) -> None:
    from padhash.reports.poisoning import tables

    print("\n".join(tables(results)[:4]))
    print(f"full report: {Path(out) / 'report.md'}")
