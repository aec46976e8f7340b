"""Typed configs: dataclasses filled from YAML, with one-line errors for unknown keys and wrong types."""
from __future__ import annotations

import dataclasses
import math
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from padhash.errors import PadhashError

T = TypeVar("T")


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise PadhashError(f"{path}: no such config file")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise PadhashError(f"{path}: not a text file (expected UTF-8 YAML)") from None
    except OSError as exc:
        raise PadhashError(f"{path}: cannot read ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise PadhashError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise PadhashError(f"{path}: the top level must be a mapping of keys to values")
    return data


def from_dict(cls: type[T], data: dict[str, Any], where: str = "config") -> T:
    """Build dataclass `cls` from a plain dict; nested dataclasses, lists and Optionals are converted.

    Unknown keys and values of the wrong type raise PadhashError naming the key (e.g. `config.victim.bits`).
    """
    if not isinstance(data, dict):
        raise PadhashError(f"{where}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in data:
        check_renamed(cls, key, f"{where}.{key}")
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise PadhashError(f"{where}: unknown key(s) {', '.join(unknown)} (allowed: {', '.join(fields)})")
    kwargs = {name: _convert(hints[name], value, f"{where}.{name}") for name, value in data.items()}
    for name in ("seed", "seeds"):  # numpy and torch seed only from non-negative integers
        seeds = kwargs.get(name)
        for i, seed in enumerate(seeds if isinstance(seeds, list) else [seeds]):
            if isinstance(seed, int) and seed < 0:
                raise PadhashError(f"{where}.{name}{f'[{i}]' if name == 'seeds' else ''}: must be a non-negative "
                                   f"integer, got {seed}")
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise PadhashError(f"{where}: {exc}") from None


def check_renamed(cls: type, key: str, where: str) -> None:
    """A key that `cls.RENAMED` ({old: new}) lists is refused with its new name: silently ignoring or guessing it
    would run another experiment than the one written."""
    new = getattr(cls, "RENAMED", {}).get(key)
    if new is not None:
        raise PadhashError(f"{where}: renamed to `{new}`")


# Field metadata for options added after runs were recorded: `field(default=..., metadata=OMIT_AT_DEFAULT)` is left
# out of to_dict while at its default, so configs, results.json and cache digests of older runs stay the same.
OMIT_AT_DEFAULT = {"omit_at_default": True}


def _at_default(f: dataclasses.Field, value: Any) -> bool:
    if f.default is not dataclasses.MISSING:
        return value == f.default
    return f.default_factory is not dataclasses.MISSING and value == f.default_factory()


def to_dict(obj: Any) -> Any:
    """Dataclass → plain dict (for config.yaml and results.json); OMIT_AT_DEFAULT fields only when set."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)
                if not (f.metadata.get("omit_at_default") and _at_default(f, getattr(obj, f.name)))}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    if isinstance(obj, Path):
        return str(obj)
    return obj


def load_config(cls: type[T], path: str | Path, overrides: dict[str, Any] | None = None) -> T:
    data = load_yaml(path)
    data.update(overrides or {})
    return from_dict(cls, data, where=Path(path).name)


def convert_field(obj: Any, name: str, value: Any, where: str) -> Any:
    """`value` converted and checked for field `name` of dataclass instance `obj` (sweeps set fields one by one)."""
    return _convert(typing.get_type_hints(type(obj))[name], value, where)


def _convert(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(arg, value, where)
            except PadhashError as exc:
                errors.append(str(exc))
        raise PadhashError(errors[0] if errors else f"{where}: must not be null")
    if origin is typing.Literal:
        if value not in args:
            raise PadhashError(f"{where}: {value!r} is not one of {', '.join(map(repr, args))}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            value = [value]  # a scalar where a list is expected means a one-element list
        inner = args[0] if args else Any
        return [_convert(inner, v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise PadhashError(f"{where}: expected a mapping")
        return dict(value)
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            value = _number_from_string(value, where)
        if not math.isfinite(value):
            raise PadhashError(f"{where}: expected a finite number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise PadhashError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise PadhashError(f"{where}: expected true or false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise PadhashError(f"{where}: expected a string, got {value!r}")
        return str(value)
    return value


def _number_from_string(value: Any, where: str) -> float:
    """Accept '16/255' as well as numbers: the papers write ε that way."""
    if isinstance(value, str):
        text = value.strip()
        try:
            if "/" in text:
                num, den = text.split("/", 1)
                return float(num) / float(den)
            return float(text)
        except (ValueError, ZeroDivisionError):
            pass
    raise PadhashError(f"{where}: expected a number, got {value!r}")
