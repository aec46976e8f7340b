"""User plug-ins: modules that register their own backbones (and, through the same registries, other parts) before
the CLI builds its choices. `PADHASH_PLUGINS` lists them, separated by the path separator (":" on Linux): each a
module name on the Python path or a path to a `.py` file. They are the user's own code, imported as such."""
from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from pathlib import Path

from padhash.errors import PadhashError

ENV = "PADHASH_PLUGINS"


def load_plugins(spec: str | None = None, source: str = ENV) -> list[str]:
    """Import each plug-in of `spec` (default: $PADHASH_PLUGINS) once; returns their module names. `source` names
    where the spec came from in error messages (the variable, or `--plugin`)."""
    spec = os.environ.get(ENV, "") if spec is None else spec
    names = []
    for entry in filter(None, (part.strip() for part in spec.split(os.pathsep))):
        names.append(_load_file(Path(entry), source) if entry.endswith(".py") else _load_module(entry, source))
    return names


def _load_module(name: str, source: str = ENV) -> str:
    try:
        importlib.import_module(name)
    except ImportError as exc:
        raise PadhashError(f"{source}: cannot import plug-in module {name!r} ({exc})") from None
    return name


def _load_file(path: Path, source: str = ENV) -> str:
    if not path.is_file():
        raise PadhashError(f"{source}: {path}: no such plug-in file")
    name = f"padhash_plugin_{path.stem}"
    if name in sys.modules:
        return name
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        del sys.modules[name]
        raise PadhashError(f"{source}: {path}: not valid Python ({exc.msg}, line {exc.lineno})") from None
    return name
