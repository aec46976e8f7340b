"""The PADHASH ladder's trials (see `poisoning`): one per (sweep value, seed, pair, method), each a function of its
`PoisoningTrial` and key alone, so any executor (`padhash.experiments.executors`) computes the same record.

The parent trains what the trials of a seed share — the public model, the clean victim, the surrogate(s): checkpoints
under the run folder — before they start (`plan_trials`); a trial loads them (once per worker) and crafts its own
poisons (RUN/poisons, by trial key) and retrains its own poisoned victim (RUN/models, by trial key).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from padhash.experiments.executors import TrialSpec, worker_state
from padhash.experiments.poisoning_config import CRAFTED, PoisoningConfig, digest, override_path
from padhash.experiments.poisoning_eval import evaluate, poison_codes, poison_quality, save_images
from padhash.rng import derive_seed


@dataclass
class PoisoningTrial:
    """Everything one trial depends on besides the shared checkpoints in the run folder (picklable)."""
    run_cfg: PoisoningConfig   # the run's own config (device, feature cache)
    cfg: PoisoningConfig       # the sweep value applied and the public model resolved
    seed: int
    axis: str | None
    value: Any
    pair_no: int
    method: str
    out: str


def worker_key(run_cfg: PoisoningConfig, out) -> tuple:
    return "poisoning", str(out), digest(run_cfg)


def trial_key(axis, value, seed, pair_no, method) -> str:
    prefix = f"{axis}={value}|" if axis else ""
    return f"{prefix}seed={seed}|pair={pair_no}|{method}"


def plan_trials(run) -> list[TrialSpec]:
    """The run's trials in results order; trains the shared models of every seed with a trial still to run."""
    cfg = run.cfg
    axis, values = next(iter(cfg.sweep.items()), (None, [None]))
    trials = []
    for value in values:
        vcfg = override_path(cfg, axis, value) if axis else cfg
        for seed in cfg.seeds:
            keys = [(p, m, trial_key(axis, value, seed, p, m))
                    for p in range(len(run.pairs(vcfg, seed))) for m in vcfg.methods]
            if not all(run.results.has(k) for *_, k in keys):
                vcfg_seed = run.with_public(vcfg, seed)
                run.clean_victim(vcfg_seed, seed)
                if any(_needs_surrogate(run, vcfg_seed, m) for m in vcfg.methods):
                    run.surrogates(vcfg_seed, seed)
            else:
                vcfg_seed = vcfg  # nothing to run: the trials are skipped
            trials += [TrialSpec(k, PoisoningTrial(cfg, vcfg_seed, seed, axis, value, p, m, str(run.out)))
                       for p, m, k in keys]
    return trials


def _appends_bases(run, cfg: PoisoningConfig) -> bool:
    """`none` appends its (unperturbed) bases to a separate database the victim searches."""
    ds = run.dataset(cfg.data)
    return run.poisons_in_database(cfg) and ds.train is not ds.database


def _needs_surrogate(run, cfg: PoisoningConfig, method: str) -> bool:
    uses = method in CRAFTED or cfg.attack.base_selection == "gradient_norm"
    return uses and (method != "none" or _appends_bases(run, cfg))


def poisoning_trial(t: PoisoningTrial, key: str) -> dict:
    """One rung of the ladder on one (trigger, target) pair of one seed: its results record."""
    from padhash.experiments.poisoning import PoisoningRun
    from padhash.metrics import map_at_k

    run = worker_state(worker_key(t.run_cfg, t.out), lambda: PoisoningRun(t.run_cfg, t.out, progress=False))
    cfg, seed, p, method = t.cfg, t.seed, t.pair_no, t.method
    pair = run.pairs(cfg, seed)[p]
    ds = run.dataset(cfg.data)
    victim = run.clean_victim(cfg, seed)
    vtag = f"victim-clean-{digest(cfg.data, run.victim_recipe(cfg, seed), cfg.victim_init)}"
    db_codes = run.codes(vtag + "/db", victim, ds.database)
    q_codes = run.codes(vtag + "/query", victim, ds.query)
    clean_map = map_at_k(q_codes, db_codes, ds.query.labels, ds.database.labels, cfg.eval.map_topk)
    in_db = run.poisons_in_database(cfg)
    triggers = ds.query.images(pair["triggers"]).to(run.device)
    target = torch.zeros(ds.num_classes)
    target[pair["targets"]] = 1.0
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
    append_bases = method == "none" and _appends_bases(run, cfg)
    surrogate = run.surrogates(cfg, seed) if _needs_surrogate(run, cfg, method) else None
    base_idx = run._choose_bases(cfg, seed, p, target, surrogate) if method != "none" or append_bases else None
    if method == "none":
        # the unperturbed bases leave the training set as it is: the clean victim, searching the clean database,
        # or (poisons appended to a separate database) that database plus the bases
        none_eval, database, none_map = before, ds.database, clean_map
        if append_bases:
            database = run.search_database(cfg, ds.train, base_idx, ds.train.images(base_idx))
            codes = run.codes(f"{vtag}/db+bases-{key}", victim, database)
            none_eval = evaluate(cfg, seed, p, victim, codes, database, triggers, target)
            none_map = map_at_k(q_codes, codes, ds.query.labels, database.labels, cfg.eval.map_topk)
        record.update(alpha=None, poison_count=0, map_poisoned=none_map, database_size=len(database), **none_eval,
                      asr_clean_db=before["asr"], target_fraction_clean_db=before["target_fraction"])
        return record
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
    if method in CRAFTED:
        s_db = run.codes(f"surrogate-{seed}-{digest(cfg.data, cfg.surrogate, cfg.victim)}/db", surrogate[0][0],
                         ds.database)
        record.update(poison_codes(cfg.device, ds.database, surrogate[0][0], s_db, poisons, record["source_classes"],
                                   target, "surrogate"))
    save_images(run.out, cfg.device, key, bases, poisons, triggers, (ds.database, database), victim, pvictim, db_codes,
                p_db, target)
    return record
