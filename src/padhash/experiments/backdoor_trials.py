"""The CIBA experiment's trials (see `backdoor`): one per (sweep value, target label, method) — or, for the transfer
study, per (sweep value, target, victim backbone, setting) — each a function of its `BackdoorTrial` and key alone,
so any executor (`padhash.experiments.executors`) computes the same record.

The parent trains what trials share before they start (`plan_trials`): the clean model(s) and each target's
trigger (and, for the transfer study, the poisons a crafting ensemble makes for every victim column); a trial loads
them (once per worker), crafts its own poisons and retrains its own backdoored victim (RUN/models, by trial key).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from padhash.attacks.backdoor import apply_trigger
from padhash.experiments.backdoor_config import BackdoorConfig, _digest, with_value
from padhash.experiments.executors import TrialSpec, worker_state
from padhash.rng import derive_seed


@dataclass
class BackdoorTrial:
    """Everything one trial depends on besides the shared models, triggers and poisons in the run folder."""
    run_cfg: BackdoorConfig    # the run's own config
    cfg: BackdoorConfig        # the sweep value applied
    axis: str | None
    value: Any
    target: int
    method: str                # a row of Table 1, or the transfer study's setting (`none` = its floor)
    column: str | None         # the transfer study's victim backbone; None = Table 1
    out: str
    victim_dir: str | None


def worker_key(run_cfg: BackdoorConfig, out, victim_dir) -> tuple:
    return "backdoor", str(out), _digest(run_cfg), str(victim_dir) if victim_dir else None


def plan_trials(run) -> list[TrialSpec]:
    """The run's trials in results order; trains the clean models and triggers of every target still to run."""
    cfg = run.cfg
    axis, values = next(iter(cfg.sweep.items()), (None, [None]))
    trials = []
    for value in values:
        vcfg = with_value(cfg, axis, value) if axis else cfg
        for target in run.targets(vcfg):
            if vcfg.transfer.backbones:
                rows = [(column, setting) for column in vcfg.transfer.backbones
                        for setting in ["none", *vcfg.transfer.settings]]
                keys = [run._key(axis, value, f"target={target}", f"victim={c}", s)[0] for c, s in rows]
            else:
                rows = [(None, m) for m in vcfg.methods]
                keys = [run._key(axis, value, f"target={target}", m)[0] for _, m in rows]
            if not all(run.results.has(k) for k in keys):
                _prepare(run, vcfg, target)
            trials += [TrialSpec(k, BackdoorTrial(cfg, vcfg, axis, value, target, m, c, str(run.out),
                                                  str(run.victim_dir) if run.victim_dir else None))
                       for k, (c, m) in zip(keys, rows)]
    return trials


def _crafters(cfg: BackdoorConfig, column: str, setting: str) -> list[str]:
    backbones = cfg.transfer.backbones
    return list(backbones) if setting != "holdout" else [b for b in backbones if b != column]


def _prepare(run, cfg: BackdoorConfig, target: int) -> None:
    if not cfg.transfer.backbones:
        run.trigger(cfg, target, [run.clean_model(cfg)], "victim")
        return
    idx = run.poison_indices(cfg, target)
    for column in cfg.transfer.backbones:
        for setting in ["none", *cfg.transfer.settings]:
            crafters = _crafters(cfg, column, setting)
            models = [run.clean_model(cfg, b) for b in crafters]
            tag = "ens-" + "+".join(crafters)
            patch = run.trigger(cfg, target, models, tag)
            if setting != "none":  # one ensemble's poisons serve several victim columns: crafted once, here
                run.poisons(cfg, "ciba", target, idx, patch, models, tag)


def backdoor_trial(t: BackdoorTrial, key: str) -> dict:
    """One row of 002 Table 1 (or Table 4) for one target label: its results record."""
    from padhash.experiments.backdoor import BackdoorRun, Evaluator, triggered_query_indices

    run = worker_state(worker_key(t.run_cfg, t.out, t.victim_dir),
                       lambda: BackdoorRun(t.run_cfg, t.out, victim_dir=t.victim_dir, progress=False))
    cfg, target = t.cfg, t.target
    ds = run.dataset(cfg.data)
    ev = Evaluator(ds, cfg.eval, cfg.device)
    target_vec = torch.zeros(ds.num_classes)
    target_vec[target] = 1.0
    q_idx = triggered_query_indices(ds.query.labels, target_vec, cfg.eval.max_queries,
                                    derive_seed(cfg.seed, "queries", target))
    idx = run.poison_indices(cfg, target)
    suffix = f"@{t.axis}={t.value}" if t.axis else ""
    if t.column is not None:
        return _transfer_record(run, t, key, ev, q_idx, idx, target_vec, suffix)
    method = t.method
    clean = run.clean_model(cfg)
    clean_db = ev.codes(clean, ds.database)
    clean_map = ev.clean_map(clean, clean_db)
    patch = run.trigger(cfg, target, [clean], "victim")
    queries = apply_trigger(ds.query.images(q_idx), patch, 1.0)
    record = {"key": key, "method": method + suffix, "target_class": target, "poison_count": len(idx),
              "map": clean_map, "queries": len(q_idx), **({"sweep_axis": t.axis, "sweep_value": t.value} if t.axis else {})}
    if method == "none":
        record.update(map_poisoned=clean_map, poison_count=0, **ev.triggered(clean, clean_db, queries, target_vec))
        return record
    from padhash.metrics import psnr, ssim

    poisons = run.poisons(cfg, method, target, idx, patch, [clean], "victim")
    originals = ds.train.images(idx)
    split, hook = run.poisoned_split(cfg, method, target, idx, patch, [clean], "victim")
    model = run.train_backdoored(f"{method}-t{target}-{_digest(key, cfg)}", cfg, split, after_augment=hook)
    db = ev.codes(model, ds.database)
    record.update(map_poisoned=ev.clean_map(model, db), **ev.triggered(model, db, queries, target_vec))
    if method != "label_flip":  # the ceiling's images are other pictures, not perturbed ones
        record.update(psnr=float(psnr(poisons, originals).mean()), ssim=float(ssim(poisons, originals).mean()))
        if not t.axis:
            _save_grid(run, key, ds, originals, poisons, queries, model, db, target)
    return record


def _transfer_record(run, t: BackdoorTrial, key, ev, q_idx, idx, target_vec, suffix) -> dict:
    """002 Table 4: trigger and confusing perturbations from several clean backbones; a victim of each backbone."""
    cfg, target, column, setting = t.cfg, t.target, t.column, t.method
    ds = run.dataset(cfg.data)
    clean = run.clean_model(cfg, column)
    clean_db = ev.codes(clean, ds.database)
    record = {"key": key, "method": f"{'none' if setting == 'none' else 'ciba'}@{setting}:{column}{suffix}",
              "setting": setting, "victim_backbone": column, "target_class": target,
              "map": ev.clean_map(clean, clean_db)}
    crafters = _crafters(cfg, column, setting)
    record["crafters"] = crafters  # which clean models made the trigger and poisons
    tag = "ens-" + "+".join(crafters)
    models = [run.clean_model(cfg, b) for b in crafters]
    patch = run.trigger(cfg, target, models, tag)
    queries = apply_trigger(ds.query.images(q_idx), patch, 1.0)
    if setting == "none":  # the clean victim under the ensemble's trigger: the floor
        record.update(map_poisoned=record["map"], **ev.triggered(clean, clean_db, queries, target_vec))
        return record
    split, hook = run.poisoned_split(cfg, "ciba", target, idx, patch, models, tag)
    model = run.train_backdoored(f"transfer-{column}-{setting}-t{target}-{_digest(key, cfg)}", cfg, split,
                                 backbone=column, after_augment=hook)
    db = ev.codes(model, ds.database)
    record.update(map_poisoned=ev.clean_map(model, db), **ev.triggered(model, db, queries, target_vec),
                  poison_count=len(idx))
    return record


def _save_grid(run, key, ds, originals, poisons, queries, model, db_codes, target) -> None:
    """Clean / poisoned training images; a triggered query and its top-10 (✓ = carries the target label)."""
    from padhash.experiments.backdoor import Evaluator
    from padhash.experiments.report import save_image_grid
    from padhash.retrieval import hamming_topk

    n = min(6, len(originals))
    q_codes = Evaluator(ds, run.cfg.eval, run.cfg.device).codes(model, queries[:2])
    _, top = hamming_topk(q_codes, db_codes, 10)
    rows = [list(originals[:n]), list(poisons[:n])]
    marks = [[None] * n, [None] * n]
    titles = ["clean", "poisoned"]
    for q in range(len(q_codes)):
        hits = ds.database.images(top[q].tolist())
        rows.append([queries[q], *hits])
        marks.append([None, *[bool(ds.database.labels[i, target] > 0) for i in top[q].tolist()]])
        titles.append(f"query {q} + trigger")
    name = key.replace("|", "_").replace("=", "")
    save_image_grid(rows, run.out / "figures" / f"{name}.png", row_titles=titles, marks=marks,
                    title=f"{key}: top-10 of triggered queries (✓ target label {target})")
