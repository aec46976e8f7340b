"""`padhash attack ciba|tri|tri_noise|tri_adv` and `padhash defend spectral|dp|prune|preprocess`."""
from __future__ import annotations

import argparse
from pathlib import Path

from padhash import registry
from padhash.cli.executor import add_executor_options, executor_from_args

FAMILY = "backdoor"
DEFENSE_HELP = {
    "spectral": "spectral-signature filtering of the poisoned training set, then retraining (CIBA Table 3)",
    "dp": "retraining with clipped, noised gradients at several noise scales (CIBA Fig. 5a)",
    "prune": "pruning dormant feature channels of the backdoored model (CIBA Fig. 5b)",
    "preprocess": "JPEG / Gaussian noise on the queries of the backdoored model",
}


def register(commands) -> None:
    # one command per registered backdoor attack: the attack beside its floor (none) and ceiling (label_flip)
    for m in registry.commands(FAMILY):
        name, ladder = m.name, registry.ladder(FAMILY, m.name)
        p = commands.attack.add_parser(
            name, help=f"clean-label backdoor experiment ({', '.join(ladder)}); no --config = embedded digits")
        p.add_argument("--config", default=None, help="YAML config (configs/ciba-*.yaml); default: digits defaults")
        p.add_argument("--out", default=f"runs/{name}", help=f"run folder (default runs/{name}); resumes")
        _common(p)
        add_executor_options(p)
        p.set_defaults(func=_attack, ladder=name)
    for name, text in DEFENSE_HELP.items():
        p = commands.defend.add_parser(name, help=f"{text}; no --config = CIBA poisons on digits")
        p.add_argument("--config", default=None, help="YAML config (configs/defend-*.yaml)")
        p.add_argument("--out", default=f"runs/defend-{name}", help=f"run folder (default runs/defend-{name})")
        _common(p)
        add_executor_options(p)  # for the attack stage (CIBA or PADHASH poisons)
        p.set_defaults(func=_defend, defense=name)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--victim", default=None,
                   help="a trained clean run (padhash train --out RUN) to attack instead of training one")
    p.add_argument("--device", default=None, help="cpu or cuda (default: the config's)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")


def _victim_overrides(args) -> dict:
    """With --victim RUN the data set and recipe are the victim run's own."""
    from padhash.config import to_dict
    from padhash.experiments.retrieval import load_victim

    _, rcfg = load_victim(Path(args.victim))
    return {"data": to_dict(rcfg.data), "victim": to_dict(rcfg.train)}


def _attack(args) -> int:
    from padhash.config import load_yaml
    from padhash.experiments.backdoor import config_from_dict, run_backdoor
    from padhash.reports.backdoor import report_tables

    data = load_yaml(args.config) if args.config else {}
    executor = executor_from_args(args, data)  # the config's executor: section, left out of results.json
    if not registry.get(FAMILY, args.ladder).baselines or "methods" not in data:  # the full ladder: config may pick
        data["methods"] = registry.ladder(FAMILY, args.ladder)
    if args.device:
        data["device"] = args.device
    if args.victim:
        data.update(_victim_overrides(args))
    cfg = config_from_dict(data, Path(args.config).name if args.config else "defaults")
    results = run_backdoor(cfg, args.out, victim_dir=args.victim, progress=not args.no_progress, executor=executor)
    print("\n".join(report_tables(results)))
    print(f"full report: {Path(args.out) / 'report.md'}")
    return 0


def _defend(args) -> int:
    from padhash.config import load_yaml
    from padhash.experiments.defenses import defense_config_from_dict, run_defense
    from padhash.reports.defenses import report_tables

    data = load_yaml(args.config) if args.config else {}
    executor = executor_from_args(args, data)  # the config's executor: section, left out of results.json
    attack = dict(data.get("attack") or {})
    if args.device:
        attack["device"] = args.device
        data.setdefault("padhash", {})["device"] = args.device
    if args.victim:
        attack.update(_victim_overrides(args))
    data["attack"] = attack
    cfg = defense_config_from_dict(data, Path(args.config).name if args.config else "defaults")
    results = run_defense(cfg, args.out, [args.defense], victim_dir=args.victim, progress=not args.no_progress,
                          executor=executor)
    print("\n".join(report_tables(results)))
    print(f"full report: {Path(args.out) / 'report.md'}")
    return 0
