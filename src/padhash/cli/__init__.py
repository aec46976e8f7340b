"""The `padhash` command: parses arguments and calls the Python API; no logic lives here.

Each command family registers itself from its own module (retrieval, poisoning, adversarial, backdoor), so the
families never edit each other's parsers.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys

from padhash.errors import PadhashError

# Modules that add commands; each defines `register(commands: Commands) -> None`.
COMMAND_MODULES = ("retrieval", "poisoning", "adversarial", "backdoor", "service")


class ArgumentParser(argparse.ArgumentParser):
    """argparse that reports bad values as one line and exit code 2 (argparse's own convention)."""

    def error(self, message):  # noqa: D401 - argparse API
        self.exit(2, f"{self.prog}: error: {message}\n")


class Commands:
    """Where command modules hang their sub-commands: top level, `padhash attack X`, `padhash defend X`."""

    def __init__(self, parser: argparse.ArgumentParser):
        self.top = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=ArgumentParser)
        attack = self.top.add_parser("attack", help="run an attack experiment (poisoning, backdoor, adversarial)")
        self.attack = attack.add_subparsers(dest="attack", metavar="ATTACK", parser_class=ArgumentParser)
        self.attack.required = True
        defend = self.top.add_parser("defend", help="run a defense against a poisoned training set or attacked queries")
        self.defend = defend.add_subparsers(dest="defense", metavar="DEFENSE", parser_class=ArgumentParser)
        self.defend.required = True


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="padhash", description="Attacks on deep-hashing image retrieval, and the retrieval they attack.")
    parser.add_argument("--version", action="version", version=_version())
    parser.add_argument("--plugin", action="append", metavar="MODULE_OR_FILE",
                        help="import a plug-in (a module name or a .py file) that registers attacks or backbones "
                             "before the commands are built; repeatable; also $PADHASH_PLUGINS")
    commands = Commands(parser)
    commands.top.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(f"padhash.cli.{name}").register(commands)
    return parser


def _version() -> str:
    from padhash import __version__

    return f"padhash {__version__}"


def main(argv: list[str] | None = None) -> int:
    from padhash.plugins import ENV, load_plugins

    argv = sys.argv[1:] if argv is None else list(argv)
    plugins, argv = _plugin_options(argv)
    try:
        load_plugins()  # before the parsers: their choices come from the registries the plug-ins add to
        for plugin in plugins:
            load_plugins(plugin, source="--plugin")
        if plugins:  # worker processes (--executor processes / ray) import them too
            os.environ[ENV] = os.pathsep.join(filter(None, [os.environ.get(ENV, ""), *plugins]))
    except PadhashError as exc:
        print(f"padhash: error: {exc}", file=sys.stderr)
        return 2
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result = args.func(args)
    except PadhashError as exc:
        print(f"padhash: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("padhash: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `padhash ... | head`: the reader left; nothing to say, and nothing more to print
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 2
    except OSError as exc:  # the file system refused (disk full, permissions): the user's to fix, not a bug
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"padhash: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2
    return int(result or 0)


def _plugin_options(argv: list[str]) -> tuple[list[str], list[str]]:
    """The `--plugin X` / `--plugin=X` values given before the command, and argv without them."""
    plugins, rest, i = [], [], 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--plugin" and i + 1 < len(argv):
            plugins.append(argv[i + 1])
            i += 2
            continue
        if arg.startswith("--plugin="):
            plugins.append(arg.split("=", 1)[1])
        elif not arg.startswith("-"):  # the command: what follows is its own
            return plugins, rest + argv[i:]
        else:
            rest.append(arg)
        i += 1
    return plugins, rest


if __name__ == "__main__":
    sys.exit(main())
