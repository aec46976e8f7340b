"""results.json: one schema for every experiment, written atomically, resumable trial by trial.

Schema (DESIGN.md): {"config": {...}, "trials": [{...}], "aggregates": {method: {metric: {mean, std, n}}}}.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterable

from padhash.errors import PadhashError
from padhash.io import atomic_write_json, read_json

RESULTS_FILE = "results.json"


def aggregate(trials: Iterable[dict[str, Any]], group_key: str = "method") -> dict[str, dict[str, dict[str, float]]]:
    """Mean ± std (population std, n counts trials with a finite value) of every numeric field, per group."""
    groups: dict[str, dict[str, list[float]]] = {}
    for trial in trials:
        group = str(trial.get(group_key, "all"))
        metrics = groups.setdefault(group, {})
        for key, value in trial.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or key == group_key:
                continue
            if key.endswith("seed") or key.endswith("index"):
                continue  # identifiers, not measurements
            if math.isfinite(value):
                metrics.setdefault(key, []).append(float(value))
    out: dict[str, dict[str, dict[str, float]]] = {}
    for group, metrics in groups.items():
        out[group] = {}
        for key, values in metrics.items():
            n = len(values)
            mean = sum(values) / n
            std = math.sqrt(sum((v - mean) ** 2 for v in values) / n)
            out[group][key] = {"mean": mean, "std": std, "n": n}
    return out


class ResultsFile:
    """The results.json of one run: holds finished trials, so a killed run skips them when it resumes.

    A trial is identified by its `key` (a string the runner builds from method, pair and seed). Resuming with a
    different config than the one on disk is refused, since the finished trials would not belong to it.
    """

    def __init__(self, run_dir: str | Path, config: dict[str, Any], group_key: str = "method"):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / RESULTS_FILE
        self.config = config
        self.group_key = group_key
        self.trials: list[dict[str, Any]] = []
        self.extra: dict[str, Any] = {}
        if self.path.exists():
            data = self.load(run_dir)
            if data.get("config") != config:
                raise PadhashError(
                    f"{self.path}: holds results of a different config; choose another --out or delete the folder"
                )
            self.trials = list(data.get("trials", []))
            self.extra = {k: v for k, v in data.items() if k not in ("config", "trials", "aggregates")}

    def has(self, key: str) -> bool:
        return any(t.get("key") == key for t in self.trials)

    def get(self, key: str) -> dict[str, Any] | None:
        return next((t for t in self.trials if t.get("key") == key), None)

    def add(self, record: dict[str, Any]) -> None:
        """Append a finished trial (it must carry a unique `key`) and write the file at once."""
        if "key" not in record:
            raise ValueError("a trial record needs a 'key'")
        self.trials = [t for t in self.trials if t.get("key") != record["key"]] + [record]
        self.write()

    def sort(self, keys: list[str]) -> None:
        """Put the trials in the order of `keys` (others after them, as they were) and write the file if that moved
        any: the file (aggregates included) is then the same whichever order the trials finished in."""
        rank = {k: i for i, k in enumerate(keys)}
        ordered = sorted(self.trials, key=lambda t: rank.get(t.get("key"), len(rank)))
        if [id(t) for t in ordered] != [id(t) for t in self.trials]:
            self.trials = ordered
            self.write()

    def set_extra(self, name: str, value: Any) -> None:
        """Run-level data besides trials (e.g. the clean victim's MAP); written with the file."""
        self.extra[name] = value
        self.write()

    def write(self) -> None:
        data = {"config": self.config, "trials": self.trials, **self.extra,
                "aggregates": aggregate(self.trials, self.group_key)}
        atomic_write_json(self.path, data)

    @classmethod
    def load(cls, run_dir: str | Path) -> dict[str, Any]:
        path = Path(run_dir) / RESULTS_FILE
        data = read_json(path)
        if not isinstance(data, dict) or not isinstance(data.get("trials", []), list):
            raise PadhashError(f"{path}: expected a JSON object with a list of trials; not a padhash results file")
        for key in ("config", "trials", "aggregates"):
            if key not in data:
                raise PadhashError(f"{path}: missing '{key}'; not a padhash results file")
        return data
