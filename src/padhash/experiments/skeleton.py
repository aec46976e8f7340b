"""The run skeleton every family runner shares: one digest, one nested-config builder, one sweep (N axes, each
point a validated copy), one trial-key format, one data-set cache.

- `digest(*parts)`: 10 hex digits of the parts' config dicts; names cached models, poisons and triggers in a run
  folder, so a changed setting never reuses a stale file (and an unchanged one always does).
- `build_config(cls, data, where)`: a family config from a plain dict, its `data` / `victim` sections as the
  foundation's DataConfig / TrainConfig, every key checked with its path in the message.
- `with_value(cfg, "a.b", v)` / `sweep_points(cfg)`: a sweep is {dotted key: [values]}; its points are the product
  of the axes, labelled `a=v` or `a=v,b=w` (a family may allow fewer axes: `check_sweep`).
- `trial_key(label, *parts)`: `<sweep point>|<part>|...|<method>` (no sweep point without a sweep) — the key a
  finished trial is stored under in results.json, so a resumed run skips it.
"""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import inspect
import itertools
import json
from typing import Any

from padhash.config import check_renamed, convert_field, from_dict, to_dict
from padhash.errors import PadhashError


def digest(*parts: Any) -> str:
    text = json.dumps([to_dict(p) for p in parts], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def load_config_file(path, build, overrides: dict[str, Any] | None = None):
    """A family config from a YAML file (top-level `overrides` replace its keys), checked by `build(data, where)`
    with the file's name as the key path's root."""
    from pathlib import Path

    from padhash.config import load_yaml

    data = load_yaml(path)
    data.update(overrides or {})
    return build(data, Path(path).name)


def data_config():
    """A default DataConfig (the lazy factory of a family config's `data` field)."""
    from padhash.data import DataConfig

    return DataConfig()


def train_config():
    """A default TrainConfig (the lazy factory of a family config's `victim` field)."""
    from padhash.hashing import TrainConfig

    return TrainConfig()


def build_config(cls, data: dict[str, Any] | None, where: str):
    """from_dict with the foundation's nested dataclasses (`data`: DataConfig, `victim`: TrainConfig) filled in."""
    from padhash.data import DataConfig
    from padhash.hashing import TrainConfig

    data = dict(data or {})
    nested = {"data": DataConfig, "victim": TrainConfig}
    built = {k: from_dict(c, data.pop(k) or {}, f"{where}.{k}") for k, c in nested.items() if k in data}
    cfg = from_dict(cls, data, where)
    for k, v in built.items():
        setattr(cfg, k, v)
    return cfg


def with_value(cfg, path: str, value: Any, where: str = "config"):
    """A deep copy of cfg with the dotted `path` (e.g. victim.bits, attack.alpha, n_t) set to `value`, converted
    to the field's type; the section it lands in is validated when it can validate itself."""
    out = copy.deepcopy(cfg)
    *parents, leaf = path.split(".")
    obj = out
    for name in parents:
        obj = getattr(obj, name, None)
    check_renamed(type(obj), leaf, f"{where}.sweep.{path}")
    if not dataclasses.is_dataclass(obj) or leaf not in {f.name for f in dataclasses.fields(obj)}:
        raise PadhashError(f"{where}.sweep: unknown key {path!r}")
    setattr(obj, leaf, convert_field(obj, leaf, value, f"{where}.sweep.{path}"))
    if obj is not out and hasattr(obj, "validate"):
        if "where" in inspect.signature(obj.validate).parameters:
            obj.validate(where=f"{where}.sweep.{path}")
        else:
            obj.validate()
    return out


def check_sweep(cfg, where: str, max_axes: int, point=None) -> None:
    """At most `max_axes` axes, each a non-empty list; every point is built (and so checked) before anything trains,
    by `point(cfg, axis, value, where)` (default `with_value`; a family's own adds its whole-config check)."""
    point = point or with_value
    if len(cfg.sweep) > max_axes:
        what = "one axis at a time" if max_axes == 1 else "at most two axes (rows × columns)"
        raise PadhashError(f"{where}.sweep: {what}, got {', '.join(cfg.sweep)}")
    for axis, values in cfg.sweep.items():
        if not isinstance(values, list) or not values:
            raise PadhashError(f"{where}.sweep.{axis}: give a non-empty list of values")
        for value in values:
            point(cfg, axis, value, where)


def sweep_points(cfg) -> list[tuple[dict[str, Any], str]]:
    """[(axis → value, label)], label '' without a sweep, else 'a=v' or 'a=v,b=w'."""
    axes = list(cfg.sweep)
    points = []
    for values in itertools.product(*(cfg.sweep[a] for a in axes)):
        point = dict(zip(axes, values))
        points.append((point, ",".join(f"{a}={v}" for a, v in point.items())))
    return points


def apply_point(cfg, point: dict[str, Any], set_value=with_value):
    """cfg at one sweep point (cfg itself without a sweep); `set_value` = a family's own `with_value`."""
    for axis, value in point.items():
        cfg = set_value(cfg, axis, value)
    return cfg


def trial_key(label: str, *parts: Any) -> str:
    """`<sweep point>|<part>|...`: the results.json key of one trial (the last part is the method)."""
    return "|".join([label, *map(str, parts)] if label else list(map(str, parts)))


class DatasetCache:
    """Loaded data sets of a run, by the digest of their DataConfig (one load per data set and process)."""

    def __init__(self):
        self._datasets: dict[str, Any] = {}

    def dataset(self, data_cfg):
        from padhash.data import load_dataset_from

        key = digest(data_cfg)
        if key not in self._datasets:
            self._datasets[key] = load_dataset_from(data_cfg)
        return self._datasets[key]
