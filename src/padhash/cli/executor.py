"""The options that choose where a command's trials run (`padhash.executors`); shared by commands."""
from __future__ import annotations

import argparse

from padhash.executors import EXECUTORS


def add_executor_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--executor", choices=EXECUTORS, default=None,
                   help="where trials run: local (this process, the default), processes (a local pool) or ray; "
                        "default: the config's executor.kind")
    p.add_argument("--workers", type=int, default=None, help="trials at once (default: this machine's cores)")
    p.add_argument("--threads", type=int, default=None, help="torch threads per trial (default: cores / workers)")
    p.add_argument("--ray-address", default=None,
                   help="join this Ray cluster (e.g. auto, ray://head:10001); default: a local Ray instance")


def executor_from_args(args: argparse.Namespace, data: dict):
    """The ExecutorConfig of the config's `executor:` section (removed from `data`: where trials run is not part
    of the experiment, so it stays out of results.json) with the command line on top."""
    from padhash.executors import executor_config

    return executor_config(data.pop("executor", None), kind=args.executor, workers=args.workers,
                           threads=args.threads, ray_address=args.ray_address)
