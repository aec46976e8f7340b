"""The DHTA experiment family (query attacks: DHTA / P2P / HAG / noise / the anchor ceiling; see `adversarial`):
one trial per (sweep point, seed, method), each a function of its config, run on any executor."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from padhash.attacks.adversarial import hag_attack, targeted_attack, uniform_noise
from padhash.attacks.adversarial.targets import choose_targets
from padhash.attacks.anchor import anchor_code
from padhash import registry
from padhash.errors import PadhashError
from padhash.hashing import encode
from padhash.experiments.adversarial import (AttackTrial, QueryAttackConfig, _apply, _Models, _open_run,
                                             _seeded_victim, _sweep_fields, _trial_keys,
                                             retrieval_metrics, sweep_points,
                                             worker_models)
from padhash.executors import ExecutorConfig, TrialSpec, gpus_per_trial, run_trials
from padhash.records import ResultsFile
from padhash.retrieval import paired_hamming
from padhash.reports.grids import query_grid
from padhash.metrics import image_metrics
from padhash.runs import owns_run_folder
from padhash.rng import derive_seed


@owns_run_folder()
def run_query_attack(cfg: QueryAttackConfig, out_dir: str | Path, *, victim_run: str | Path | None = None,
                     progress: bool = True, executor: ExecutorConfig | None = None) -> dict:
    """The DHTA experiment family; writes RUN/results.json, RUN/report.md and figures; resumes finished trials.
    One trial per (sweep point, seed, method), run on `executor` (default: in this process)."""
    from padhash.reports.adversarial import write_query_report

    out = Path(out_dir)
    if victim_run and cfg.open_set_classes:
        raise PadhashError("--victim: open-set targets need a victim trained without those classes; drop --victim")
    results, models = _open_run("query_attack", cfg, out, victim_run, progress)
    trials = []
    for point, label in sweep_points(cfg):
        pcfg = _apply(cfg, point)
        for seed in pcfg.seeds:
            keys = _trial_keys(pcfg.methods, label, f"seed={seed}")
            if not all(results.has(k) for k in keys.values()):
                _prepare_victim(pcfg, seed, models)
            trials += [TrialSpec(key, AttackTrial(pcfg, point, label, seed, method, str(out), victim_run))
                       for method, key in keys.items()]
    run_trials(trials, query_trial, executor or ExecutorConfig(), results, progress=progress,
               gpus_per_trial=gpus_per_trial(cfg.device))
    write_query_report(out)
    return ResultsFile.load(out)


def _prepare_victim(cfg: QueryAttackConfig, seed: int, models: _Models) -> None:
    """Trains the trials' shared victim in the parent (workers then load its checkpoint) and checks the classes."""
    num_classes = models.dataset(cfg.data).num_classes
    for c in cfg.open_set_classes:  # before the victim trains without them
        if not 0 <= c < num_classes:
            raise PadhashError(f"open_set_classes: {c} is not a class of {cfg.data.name} (0..{num_classes - 1})")
    _seeded_victim(cfg, seed, models, cfg.open_set_classes)


def query_trial(t: AttackTrial, key: str) -> dict:
    """One method on one seed's queries: a function of its config alone (queries, targets and noise are drawn
    from the seed; the victim comes from its checkpoint), so any process or machine computes the same record."""
    cfg, seed, method = t.cfg, t.seed, t.method
    models = worker_models(t.out, cfg.device, t.victim_run, cfg.feature_cache)
    vkey, victim, data_cfg = _seeded_victim(cfg, seed, models, cfg.open_set_classes)
    ds = models.dataset(data_cfg)
    db_codes = models.codes(vkey, victim, ds.database, "database")
    db_labels = ds.database.labels
    picks = choose_targets(ds.query.labels, db_labels, cfg.queries, cfg.n_t, derive_seed(seed, "targets"),
                           cfg.open_set_classes)
    q_idx = [q for q, _, _ in picks]
    clean = ds.query.images(torch.tensor(q_idx))
    true_labels = ds.query.labels[q_idx]
    target_labels = torch.stack([t for _, t, _ in picks])
    anchors = {n: torch.stack([anchor_code(db_codes[members[:n]]) for _, _, members in picks]) for n in {1, cfg.n_t}}
    device = models.device
    topk, drop_empty = cfg.eval.topk, cfg.eval.drop_empty
    base = {"seed": seed, "queries": len(q_idx), "n_t": cfg.n_t, "bits": int(db_codes.shape[1]),
            "eps": cfg.attack.eps, "steps": cfg.attack.steps, **_sweep_fields(t.point)}
    # The clean victim's MAP on these queries (DHTA's "Original MAP") goes in every record, for Fig. 7 / Table 5.
    clean_codes = encode(victim, clean, device=device)
    original = retrieval_metrics(clean_codes, db_codes, true_labels, db_labels, topk, drop_empty=drop_empty,
                                 curves=False)["map_at_k"]
    if registry.get("query", method).role == "ceiling":  # the anchor code itself, in code space
        adv, codes = None, anchors[cfg.n_t]
    else:
        adv = _attack_queries(method, victim, clean, anchors, cfg, derive_seed(seed, "noise"), False)
        codes = encode(victim, adv, device=device)
    targeted = retrieval_metrics(codes, db_codes, target_labels, db_labels, topk, drop_empty=drop_empty)
    untargeted = retrieval_metrics(codes, db_codes, true_labels, db_labels, topk, drop_empty=drop_empty)
    hamming = paired_hamming(codes, anchors[cfg.n_t]).mean()
    # How far a method moves a query's code from its own clean code: explains the true-label MAP (Table 5), since
    # an untargeted attack is free to go farther from the true class than any target anchor lies.
    moved = paired_hamming(codes, clean_codes).mean()
    record = {"key": key, "method": method + (f"@{t.label}" if t.label else ""), **base,
              "t_map": targeted["map_at_k"], "map": untargeted["map_at_k"], "map_original": original,
              "precision_at_k": targeted["precision_at_10"], "hamming_to_anchor": float(hamming),
              "hamming_to_clean": float(moved),
              "pr_target": targeted["pr_curve"], "pr_true": untargeted["pr_curve"],
              "precision_curve_target": targeted["precision_curve"],
              "precision_curve_true": untargeted["precision_curve"]}
    if adv is not None:
        record.update(image_metrics(clean, adv))
    if method == "dhta" and cfg.eval.grid_queries > 0:
        record["grid"] = query_grid(Path(t.out), key, ds, victim, db_codes, clean, adv, true_labels, target_labels,
                                    cfg.eval.grid_queries, device)
    return record


@dataclass
class QueryContext:
    """What a query-family method's `run(model, images, ctx)` gets besides the victim and the clean queries; it
    returns the attacked queries (same shape, pixel range [0, 1])."""
    anchors: torch.Tensor              # the anchor code of each query's n_t target-label items (N, K), ±1
    anchors_1: torch.Tensor            # the code of each query's first target-label item (P2P's target)
    cfg: QueryAttackConfig             # the run's config at this sweep point (cfg.attack: the shared ε / steps)
    params: Any                        # the method's own hyper-parameters (registry config class), or cfg.attack
    seed: int                          # the trial's seed for the method's own random draws
    progress: bool = False


def benign(model, images, ctx: QueryContext) -> torch.Tensor:
    return images


def noise_attack(model, images, ctx: QueryContext) -> torch.Tensor:
    return uniform_noise(images, ctx.cfg.attack.eps, torch.Generator().manual_seed(ctx.seed))


def hag_untargeted(model, images, ctx: QueryContext) -> torch.Tensor:
    return hag_attack(model, images, ctx.cfg.attack, batch_size=ctx.cfg.batch_size, progress=ctx.progress)


def p2p_attack(model, images, ctx: QueryContext) -> torch.Tensor:
    return targeted_attack(model, images, ctx.anchors_1, ctx.cfg.attack, batch_size=ctx.cfg.batch_size,
                           progress=ctx.progress)


def dhta_attack(model, images, ctx: QueryContext) -> torch.Tensor:
    return targeted_attack(model, images, ctx.anchors, ctx.cfg.attack, batch_size=ctx.cfg.batch_size,
                           progress=ctx.progress)


def _attack_queries(method, victim, clean, anchors, cfg: QueryAttackConfig, noise_seed, progress) -> torch.Tensor:
    """The queries `method` (a registered query-family method) makes of `clean`."""
    m = registry.get("query", method)
    params = cfg.attack if m.section == "attack" else registry.method_params(m, cfg.options, "config")
    ctx = QueryContext(anchors[cfg.n_t], anchors[1], cfg, params, noise_seed, progress)
    adv = m.resolved_run()(victim, clean, ctx)
    if not isinstance(adv, torch.Tensor) or adv.shape != clean.shape:
        raise PadhashError(f"method {method!r}: its run function must return the attacked queries, a tensor of "
                           f"shape {tuple(clean.shape)}")
    return adv
