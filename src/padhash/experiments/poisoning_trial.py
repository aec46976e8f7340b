"""One PADHASH trial: one rung of the ladder on one (trigger, target) pair of one seed at one sweep point.

The parent (`PoisoningRun.run`) plans the trials and trains what they share into the run folder (the public model,
the clean victim, the surrogates, each pair's bases: content-addressed files); `poisoning_trial(trial, key)` is a
function of the trial's config and those files alone, so any executor (padhash.executors) computes the same record.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from padhash.attacks.poisoning.pairs import target_vector
from padhash.executors import TrialSpec, per_process
from padhash.experiments.poisoning_config import CRAFTED
from padhash.experiments.skeleton import apply_point, digest, sweep_points
from padhash.metrics.poisoning import evaluate, poison_codes, poison_quality
from padhash.reports.grids import poison_grids
from padhash.rng import derive_seed


@dataclass
class PoisonTrial:
    """Everything one trial depends on besides the run folder's shared models (picklable)."""
    cfg: Any                 # the run's PoisoningConfig at the sweep point, its public model resolved
    out: str
    seed: int
    pair_no: int
    pair: dict               # {"triggers": [...], "targets": [...]} (padhash.attacks.poisoning.pairs)
    method: str
    axis: str | None = None  # the sweep axis and value ((None, None) without a sweep)
    value: Any = None


def plan_trials(run) -> list[TrialSpec]:
    """Every trial of the run in results order (point, seed, pair, method); prepares the pending ones' shared models."""
    trials = []
    for point, _ in sweep_points(run.cfg):  # one axis at most (validated)
        (axis, value), = point.items() if point else [(None, None)]
        cfg = apply_point(run.cfg, point)
        for seed in cfg.seeds:
            pairs = run.pairs(cfg, seed)
            keys = {(p, m): run._trial_key(axis, value, seed, p, m) for p in range(len(pairs)) for m in cfg.methods}
            pending: dict[int, list[str]] = {}
            for (p, m), key in keys.items():
                if not run.results.has(key):
                    pending.setdefault(p, []).append(m)
            scfg = run.prepare(cfg, seed, pairs, pending) if pending else cfg
            trials += [TrialSpec(key, PoisonTrial(scfg, str(run.out), seed, p, pairs[p], m, axis, value))
                       for (p, m), key in keys.items()]
    return trials


def worker_run(t: PoisonTrial):
    """One PoisoningRun per process for the run folder it works for (no results file: only the parent writes it),
    so a worker loads the data set, the clean victim and the surrogates once."""
    from padhash.experiments.poisoning import PoisoningRun

    return per_process((t.out, t.cfg.device, t.cfg.feature_cache),
                       lambda: PoisoningRun(t.cfg, t.out, progress=False, results=False))


def poisoning_trial(t: PoisonTrial, key: str) -> dict:
    """The record of one rung on one pair: the clean victim's view before, the poisoned victim's after."""
    from padhash.metrics import map_at_k

    run, cfg, seed, p, pair, method = worker_run(t), t.cfg, t.seed, t.pair_no, t.pair, t.method
    ds = run.dataset(cfg.data)
    victim = run.clean_victim(cfg, seed)
    vtag = f"victim-clean-{digest(cfg.data, run.victim_recipe(cfg, seed), cfg.victim_init)}"
    db_codes = run.codes(vtag + "/db", victim, ds.database)
    q_codes = run.codes(vtag + "/query", victim, ds.query)
    clean_map = map_at_k(q_codes, db_codes, ds.query.labels, ds.database.labels, cfg.eval.map_topk)
    in_db = run.poisons_in_database(cfg)
    triggers = ds.query.images(pair["triggers"]).to(run.device)
    target = target_vector(pair, ds.num_classes)
    before = evaluate(cfg, seed, p, victim, db_codes, ds.database, triggers, target)
    record = {"key": key, "method": method, "seed": seed, "victim_seed": run.victim_recipe(cfg, seed).seed,
              "attacker_seed": derive_seed(seed, "attacker"), "pair_index": p,
              "trigger_index": pair["triggers"][0], "trigger_indices": pair["triggers"],
              "target_class": pair["targets"][0], "target_classes": pair["targets"],
              "source_classes": ds.query.labels[pair["triggers"][0]].nonzero().flatten().tolist(),
              "map": clean_map, "trigger_dist_target_before": before["trigger_dist_target"],
              "target_fraction_before": before["target_fraction"], "poisons_in_database": in_db}
    if t.axis:
        record["sweep_axis"], record["sweep_value"] = t.axis, t.value
    base_idx = run.bases(cfg, seed, p, target) if run.needs_bases(cfg, method) else None
    if method == "none":
        # the unperturbed bases leave the training set as it is: the clean victim, searching the clean database,
        # or (poisons appended to a separate database) that database plus the bases
        none_eval, database, none_map = before, ds.database, clean_map
        if base_idx is not None:
            database = run.search_database(cfg, ds.train, base_idx, ds.train.images(base_idx))
            codes = run.codes(f"{vtag}/db+bases-{key}", victim, database)
            none_eval = evaluate(cfg, seed, p, victim, codes, database, triggers, target)
            none_map = map_at_k(q_codes, codes, ds.query.labels, database.labels, cfg.eval.map_topk)
        record.update(alpha=None, poison_count=0, map_poisoned=none_map, database_size=len(database), **none_eval,
                      asr_clean_db=before["asr"], target_fraction_clean_db=before["target_fraction"])
        return record
    surrogate = run.surrogates(cfg, seed) if method in CRAFTED else None
    bases = ds.train.images(base_idx).to(run.device)
    poisons, craft_info = run._poisons(cfg, seed, key, method, bases, base_idx, triggers, target, surrogate)
    poisoned_train, pvictim, pv_name = run.poisoned_victim(cfg, seed, key, base_idx, poisons)
    database = run.search_database(cfg, poisoned_train, base_idx, poisons)
    p_db = run.codes(f"{pv_name}/db-{'poisoned' if in_db else 'clean'}", pvictim, database)
    p_query = run.codes(pv_name + "/query", pvictim, ds.query)
    after = evaluate(cfg, seed, p, pvictim, p_db, database, triggers, target)
    clean_view = after
    if database is not ds.database:  # the clean-database view: the poisoned victim, unpoisoned database
        clean_codes = run.codes(pv_name + "/clean-view", pvictim, ds.database)
        clean_view = evaluate(cfg, seed, p, pvictim, clean_codes, ds.database, triggers, target)
    record.update(alpha=cfg.attack.alpha if method == "padhash" else (0.0 if method == "witches_brew" else None),
                  poison_count=len(base_idx), poison_indices=[int(i) for i in base_idx], database_size=len(database),
                  map_poisoned=map_at_k(p_query, p_db, ds.query.labels, database.labels, cfg.eval.map_topk),
                  **after, **craft_info, asr_clean_db=clean_view["asr"],
                  target_fraction_clean_db=clean_view["target_fraction"], **poison_quality(bases, poisons),
                  **poison_codes(cfg.device, database, pvictim, p_db, poisons, record["source_classes"], target,
                                 "victim"))
    if surrogate is not None:
        s_db = run.codes(f"surrogate-{seed}-{digest(cfg.data, cfg.surrogate, cfg.victim)}/db", surrogate[0][0],
                         ds.database)
        record.update(poison_codes(cfg.device, ds.database, surrogate[0][0], s_db, poisons, record["source_classes"],
                                   target, "surrogate"))
    poison_grids(Path(t.out), cfg.device, key, bases, poisons, triggers, (ds.database, database), victim, pvictim,
                 db_codes, p_db, target)
    return record
