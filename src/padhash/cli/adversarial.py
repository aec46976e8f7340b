"""`padhash attack dhta|p2p|hag|noise|transfer [--config FILE.yaml] --out RUN [--victim RUN]`."""
from __future__ import annotations

import argparse
from pathlib import Path

from padhash.cli.executor import add_executor_options, executor_from_args

from padhash import registry

# Each query command (one per registered query-family method, plug-ins' too) runs its attack beside the floor
# (`none`, the benign query) and the ceiling (`anchor`: the query's code replaced by the anchor code, ε = ∞); a
# command with baselines (`dhta`) runs the whole comparison unless the config picks methods.


def register(commands) -> None:
    for m in [*registry.commands("query"), *registry.commands("transfer")]:
        name, text = m.name, m.help or f"{m.label} ({m.family} attack)"
        p = commands.attack.add_parser(name, help=text, description=text)
        p.add_argument("--config", default=None,
                       help="YAML config (configs/dhta-*.yaml, configs/transfer-*.yaml); default: embedded digits")
        p.add_argument("--out", required=True, help="run folder: results.json, report.md, figures/ (resumes)")
        p.add_argument("--victim", default=None, help="reuse a trained run (`padhash train --out RUN`) as the victim")
        p.add_argument("--device", default=None, help="cpu or cuda (default: the config's)")
        p.add_argument("--no-progress", action="store_true", help="hide progress bars")
        p.add_argument("--victim-url", help="attack a live `padhash serve` service over HTTP instead: steal D_sur "
                                            "(the config's remote: section sets the query budget), train the "
                                            "surrogate on it, craft, search, score")
        p.add_argument("--search-token", help="the service's search token, if it needs one (default "
                                              "$PADHASH_SEARCH_TOKEN)")
        add_executor_options(p)
        p.set_defaults(func=_transfer if m.family == "transfer" else _query, ladder=name)


def _load(args: argparse.Namespace, defaults: dict) -> tuple[dict, str]:
    import copy

    from padhash.config import load_yaml

    if args.config is None:
        return copy.deepcopy(defaults), "defaults"
    return load_yaml(args.config), Path(args.config).name


def _query(args: argparse.Namespace) -> int:
    from padhash.experiments.adversarial import QUERY_DEFAULTS, query_config_from_dict
    from padhash.experiments.adversarial_query import run_query_attack
    from padhash.reports.adversarial import query_tables

    data, where = _load(args, QUERY_DEFAULTS)
    executor = executor_from_args(args, data)
    method = registry.get("query", args.ladder)
    if not method.baselines or "methods" not in data:
        data["methods"] = registry.ladder("query", args.ladder)
    data.update(method.command_defaults)
    return _run(args, data, where, executor, query_config_from_dict, run_query_attack,
                lambda results: query_tables(results)[:2])


def _transfer(args: argparse.Namespace) -> int:
    from padhash.experiments.adversarial import TRANSFER_DEFAULTS, transfer_config_from_dict
    from padhash.experiments.adversarial_transfer import run_transfer_attack
    from padhash.reports.adversarial import transfer_tables

    data, where = _load(args, TRANSFER_DEFAULTS)
    executor = executor_from_args(args, data)
    return _run(args, data, where, executor, transfer_config_from_dict, run_transfer_attack, transfer_tables)


def _run(args: argparse.Namespace, data: dict, where: str, executor, build, run, tables) -> int:
    """--device, then over HTTP (--victim-url) or here: build the config, run it, print its first tables."""
    if args.device:
        data["device"] = args.device
    if args.victim_url:
        return _remote(args, data, where)
    cfg = build(data, where)
    results = run(cfg, args.out, victim_run=args.victim, progress=not args.no_progress, executor=executor)
    print("\n".join(tables(results)))
    print(f"full report: {Path(args.out) / 'report.md'}")
    return 0


def _remote(args: argparse.Namespace, data: dict, where: str) -> int:
    import os

    from padhash.errors import PadhashError
    from padhash.remote.queries import NOT_OVER_HTTP, remote_query_config_from_dict, run_remote_query
    from padhash.service import ServiceClient

    if args.victim:
        raise PadhashError("--victim and --victim-url exclude each other")
    if args.ladder in registry.names("query") and data.get("methods") == registry.ladder("query", args.ladder):
        data["methods"] = [m for m in data["methods"] if m not in NOT_OVER_HTTP]  # the ladder, less its ceiling
    if args.ladder == "transfer":
        data.setdefault("methods", ["none", "pgd", "di", "transfer"])
    cfg, remote = remote_query_config_from_dict(args.ladder, data, where)
    with ServiceClient(args.victim_url, search_token=args.search_token or os.environ.get("PADHASH_SEARCH_TOKEN")) as client:
        results = run_remote_query(args.ladder, cfg, remote, client, args.out, progress=not args.no_progress)
    success = "transfer_rate" if args.ladder == "transfer" else "asr"
    for method, m in results["aggregates"].items():
        print(f"{method}: t-MAP {m['t_map']['mean']:.4f}   MAP {m['map']['mean']:.4f}   "
              f"{success} {m[success]['mean']:.3f}")
    info = results["remote"]
    print(f"queries spent {info['queries_spent']} (stealing {info['stealing_queries']}), items stolen "
          f"{info['items_stolen']}; wrote {Path(args.out) / 'results.json'}")
    return 0
