"""The method registry: every attack, floor and ceiling registers itself once, and everything else reads it.

A `Method` carries its name, its family (`poisoning`, `backdoor`, `query`, `transfer`), its role in the ladder
(`floor`, `attack`, `ceiling`), its report label, the class of its hyper-parameters and the function that runs it.
The CLI's `padhash attack NAME` choices, each command's ladder (floor + baselines + attack + ceiling), the methods a
config may list, the report rows and the method names recorded in results.json all come from here, so a new attack
is one file that calls `register_method` (loaded as a plug-in: `PADHASH_PLUGINS` or `padhash --plugin FILE`).

`config` and `run` may be given as `"module:name"` strings, resolved when first used (`resolve`), so the built-in
table (padhash.experiments.methods) imports nothing heavy. Which families accept a new method's `run` function, and
what it receives, is the family's contract: see docs/api.md (the query family takes any image-space attack).
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable

from padhash.errors import PadhashError

ROLES = ("floor", "attack", "ceiling")
_METHODS: dict[tuple[str, str], "Method"] = {}   # (family, name) → Method, in registration order
_BUILTINS_LOADED = False


@dataclass(frozen=True)
class Method:
    name: str                          # the method name results.json records (and the command, with `command`)
    family: str                        # which experiment runs it: poisoning | backdoor | query | transfer | ...
    role: str                          # floor (no attack) | attack | ceiling (breaks the threat model on purpose)
    label: str                         # its row in report.md
    config: Any = None                 # dataclass of its hyper-parameters (or "module:Class")
    run: Any = None                    # the function that runs it (or "module:function"); the family's signature
    baselines: tuple[str, ...] = ()    # attacks of its family its command runs beside it
    command: bool = False              # `padhash attack NAME` exists
    help: str = ""                     # the command's one-line help
    command_defaults: dict[str, Any] = field(default_factory=dict)  # config keys its command sets (p2p: n_t = 1)
    section: str | None = None         # the config section holding its hyper-parameters; None = `options.<name>`

    def resolved_config(self):
        return resolve(self.config)

    def resolved_run(self) -> Callable | None:
        return resolve(self.run)


def register_method(method: Method | None = None, /, **fields: Any) -> Method:
    """Register a method (a Method, or its fields as keywords). Registering the same (family, name) twice with
    different fields is an error; the same fields again (a module imported twice) are accepted."""
    method = method or Method(**fields)
    _builtins()  # the built-ins first: a family's order is theirs, then the plug-ins'
    if method.role not in ROLES:
        raise PadhashError(f"method {method.name!r}: role {method.role!r} is not one of {', '.join(ROLES)}")
    if not method.name.isidentifier():
        raise PadhashError(f"method {method.name!r}: names are identifiers (letters, digits, _)")
    key = (method.family, method.name)
    old = _METHODS.get(key)
    if old is not None and old != method:
        raise PadhashError(f"method {method.name!r} is already registered in family {method.family!r}")
    _METHODS[key] = method
    return method


def _builtins() -> None:
    global _BUILTINS_LOADED
    if not _BUILTINS_LOADED:
        _BUILTINS_LOADED = True
        importlib.import_module("padhash.experiments.methods")
        from padhash.plugins import load_plugins

        load_plugins()  # $PADHASH_PLUGINS: a worker process (processes / ray executors) sees the user's methods too


def methods(family: str) -> list[Method]:
    """The family's methods in registration order (the built-ins' order is the papers' table order)."""
    _builtins()
    return [m for (f, _), m in _METHODS.items() if f == family]


def names(family: str) -> tuple[str, ...]:
    return tuple(m.name for m in methods(family))


def get(family: str, name: str) -> Method:
    _builtins()
    try:
        return _METHODS[(family, name)]
    except KeyError:
        raise PadhashError(f"unknown {family} method {name!r} (known: {', '.join(names(family))})") from None


def labels(family: str) -> dict[str, str]:
    """name → report label, in the family's order."""
    return {m.name: m.label for m in methods(family)}


def label(family: str, name: str) -> str:
    """The report label of `name`, or the name itself for a method no longer registered (a plug-in's results)."""
    return labels(family).get(name, name)


def ordered(family: str, chosen: list[str]) -> list[str]:
    """`chosen` in the family's order (report rows); names no longer registered (a plug-in's) keep theirs, last."""
    known = names(family)
    return [m for m in known if m in chosen] + [m for m in chosen if m not in known]


def ladder(family: str, name: str) -> list[str]:
    """What `padhash attack NAME` runs: the family's floors, then NAME's baselines and NAME, then the family's
    ceilings (each group in the family's order)."""
    own = get(family, name)
    keep = {own.name, *own.baselines}
    chosen = [m for m in methods(family) if m.role in ("floor", "ceiling") or m.name in keep]
    return [m.name for m in sorted(chosen, key=lambda m: ROLES.index(m.role))]  # stable: family order within a role


def commands(family: str) -> list[Method]:
    """The family's methods that are `padhash attack NAME` commands."""
    return [m for m in methods(family) if m.command]


def check_methods(family: str, chosen: list[str], where: str) -> None:
    """A config's `methods:` list: non-empty, every name registered in the family."""
    known = names(family)
    bad = [m for m in chosen if m not in known]
    if bad or not chosen:
        raise PadhashError(f"{where}.methods: {bad or '[]'} not in {', '.join(known)}")


def resolve(ref: Any) -> Any:
    """A "module:name" reference → the object; anything else as it is."""
    if not isinstance(ref, str):
        return ref
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)


def method_params(method: Method, options: dict[str, Any], where: str):
    """The hyper-parameters of a method with its own section: its config class built from `options.<name>`
    (checked with the key path in the message), or None for a method without a config class."""
    from padhash.config import from_dict

    cls = method.resolved_config()
    if cls is None:
        if options.get(method.name):
            raise PadhashError(f"{where}.options.{method.name}: method {method.name!r} takes no options")
        return None
    params = from_dict(cls, dict(options.get(method.name) or {}), f"{where}.options.{method.name}")
    if hasattr(params, "validate"):
        params.validate(f"{where}.options.{method.name}")
    return params


__all__ = ["Method", "ROLES", "check_methods", "commands", "get", "label", "labels", "ladder", "method_params",
           "methods", "names", "ordered", "register_method", "resolve"]
