"""The black-box transfer experiment (Xiao & Wang; see `adversarial`): surrogates, pairs, attacks, victim scores."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from padhash.attacks.adversarial import (TransferAttackConfig, adversarial_region, mean_pair_distance, transfer_attack,
                                         vulnerable_pairs)
from padhash.attacks.anchor import anchor_code
from padhash.experiments.adversarial import (AttackTrial, TransferConfig, _apply, _Models, _open_run,
                                             _seeded_victim, _sweep_fields, _trial_keys, seed_recipe,
                                             sweep_points, worker_models)
from padhash.experiments.skeleton import digest
from padhash.executors import ExecutorConfig, TrialSpec, gpus_per_trial, run_trials
from padhash.records import ResultsFile
from padhash.hashing import encode
from padhash.metrics import image_metrics
from padhash.runs import owns_run_folder
from padhash.rng import derive_seed


@owns_run_folder()
def run_transfer_attack(cfg: TransferConfig, out_dir: str | Path, *, victim_run: str | Path | None = None,
                        progress: bool = True, executor: ExecutorConfig | None = None) -> dict:
    """The black-box transfer experiment; writes RUN/results.json, RUN/report.md; resumes finished trials.
    One trial per (sweep point, seed, pair selection, method), run on `executor` (default: in this process)."""
    from padhash.reports.adversarial import write_transfer_report

    out = Path(out_dir)
    results, models = _open_run("transfer", cfg, out, victim_run, progress)
    trials = []
    for point, label in sweep_points(cfg):
        pcfg = _apply(cfg, point)
        for seed in pcfg.seeds:
            for selection in pcfg.pair_selection:
                keys = _trial_keys(pcfg.methods, label, f"seed={seed}|pairs={selection}")
                if not all(results.has(k) for k in keys.values()):
                    _trained_models(pcfg, seed, models)  # once, here: the trials load their checkpoints
                for method, key in keys.items():
                    trial = AttackTrial(pcfg, point, label, seed, method, str(out), victim_run, selection)
                    trials.append(TrialSpec(key, trial, trial_identity(trial)))
    run_trials(trials, transfer_trial, executor or ExecutorConfig(), results, progress=progress,
               gpus_per_trial=gpus_per_trial(cfg.device), relabel=_relabel)
    write_transfer_report(out)
    return ResultsFile.load(out)


def trial_identity(trial: AttackTrial) -> str:
    """What a trial's record depends on, its attack reduced to the fields its method reads: sweep points that
    differ only elsewhere (PGD at each noise level of the noise-robust term) share one trial."""
    cfg = trial.cfg
    attack = crafting_attack(trial.method, cfg)
    reads = {k: v for k, v in dataclasses.asdict(cfg).items()
             if k not in ("attack", "diversity_prob", "momentum", "sweep")}  # the attack's fields: in `attack`
    return digest(reads, attack.effective() if attack else None, trial.seed, trial.selection, trial.method,
                  str(trial.victim_run))


def _labels(trial: AttackTrial, key: str) -> dict:
    """The fields of a trial's record that name its sweep point rather than measure it."""
    return {"key": key, "method": f"{trial.method}@pairs={trial.selection}" + (f",{trial.label}" if trial.label else ""),
            "eps": trial.cfg.attack.eps, **_sweep_fields(trial.point)}


def _relabel(record: dict, spec: TrialSpec) -> dict:
    return {**record, **_labels(spec.config, spec.key), "reused_from": record["key"]}


def _trained_models(cfg: TransferConfig, seed: int, models: _Models):
    """The victim (seeded) and the surrogates: (victim key, victim, data config, [(key, surrogate)])."""
    vkey, victim, data_cfg = _seeded_victim(cfg, seed, models)
    surrogates = [models.trained("surrogate", data_cfg, seed_recipe(cfg, recipe, seed)) for recipe in cfg.surrogates]
    return vkey, victim, data_cfg, surrogates


def transfer_trial(trial: AttackTrial, key: str) -> dict:
    """One method on one seed's (query, target) pairs of one selection: a function of its config alone."""
    cfg, seed, selection, method = trial.cfg, trial.seed, trial.selection, trial.method
    models = worker_models(trial.out, cfg.device, trial.victim_run, cfg.feature_cache)
    vkey, victim, data_cfg, surrogates = _trained_models(cfg, seed, models)
    ds = models.dataset(data_cfg)
    # The attacker's view: the first surrogate's codes of the queries and of the (public) database.
    skey, lead = surrogates[0]
    s_db = models.codes(skey, lead, ds.database, "database")
    s_q = models.codes(skey, lead, ds.query, "query")
    db_classes = ds.database.labels.argmax(dim=1)
    q_classes = ds.query.labels.argmax(dim=1)
    pairs, members, s_targets = transfer_targets(cfg, seed, selection, s_q, q_classes, s_db, db_classes,
                                                 ds.num_classes, [models.codes(k, m, ds.database, "database")
                                                                  for k, m in surrogates])
    q_idx = torch.tensor([q for q, _ in pairs])
    target_classes = [t for _, t in pairs]
    clean = ds.query.images(q_idx)
    target_labels = torch.nn.functional.one_hot(torch.tensor(target_classes), ds.num_classes).float()
    v_db = models.codes(vkey, victim, ds.database, "database")
    v_targets = torch.stack([anchor_code(v_db[mem]) for mem in members])
    radius = int(round(cfg.eval.region_radius * s_db.shape[1]))
    record = {**_labels(trial, key), "seed": seed, "pairs": selection, "queries": len(pairs),
              "victim_bits": int(v_db.shape[1]), "targets_per_pair": cfg.targets_per_pair,
              "mean_pair_distance": mean_pair_distance(s_q[q_idx], s_db, db_classes, target_classes)}
    gen = torch.Generator().manual_seed(derive_seed(seed, "craft", selection, method))
    if method == "white_box":
        adv = transfer_attack([victim], clean, v_targets, crafting_attack(method, cfg), gen,
                              batch_size=cfg.batch_size, progress=False)
    else:
        adv = craft_transfer(method, cfg, [m for _, m in surrogates], clean, s_targets, gen, False)
    record.update(_transfer_scores(victim, v_db, lead, s_db, adv, s_targets[0], target_labels, ds, cfg, radius,
                                   derive_seed(seed, "region", selection, method), models.device))
    record.update(image_metrics(clean, adv))
    return record


def transfer_targets(cfg: TransferConfig, seed: int, selection: str, s_q, q_classes, s_db, db_classes,
                     num_classes: int, surrogate_db_codes: list[torch.Tensor]):
    """The attacker's (query, target class) pairs of one selection, from the lead surrogate's codes of the queries
    (s_q) and of the database it knows (s_db, classes db_classes), each repeated `targets_per_pair` times; the
    database rows voting each target code (n_t of its class, disjoint within a pair); and per surrogate the
    target codes (anchors of those rows' codes under it). Returns (pairs, members, surrogate target codes)."""
    pair_gen = torch.Generator().manual_seed(derive_seed(seed, "pairs", selection))
    pairs = vulnerable_pairs(s_q, q_classes, s_db, db_classes, cfg.pairs, num_classes=num_classes,
                             mode=selection, generator=pair_gen, band=tuple(cfg.pair_band))
    # each pair attacked toward `targets_per_pair` target codes (the reference: several codes of the class)
    pairs = [p for p in pairs for _ in range(cfg.targets_per_pair)]
    member_gen = torch.Generator().manual_seed(derive_seed(seed, "members", selection))
    members = []
    for i, (_, t) in enumerate(pairs):
        if i % cfg.targets_per_pair == 0:  # one permutation per pair: its target codes come from disjoint items
            pool = torch.nonzero(db_classes == t).flatten()
            order = pool[torch.randperm(len(pool), generator=member_gen)]
        j = i % cfg.targets_per_pair * cfg.n_t
        members.append(order[j:j + cfg.n_t] if j < len(order) else order[-cfg.n_t:])
    s_targets = [torch.stack([anchor_code(codes[mem]) for mem in members]) for codes in surrogate_db_codes]
    return pairs, members, s_targets


def crafting_attack(method: str, cfg: TransferConfig) -> TransferAttackConfig | None:
    """The attack a method (none, pgd, di, transfer, their *_mi, white_box) crafts with; None for `none`."""
    if method == "none":
        return None
    if method == "white_box":
        return dataclasses.replace(cfg.attack, noise_weight=0.0)
    attack = {"pgd": dataclasses.replace(cfg.attack, noise_weight=0.0, diversity_prob=0.0),
              "di": dataclasses.replace(cfg.attack, noise_weight=0.0, diversity_prob=cfg.diversity_prob),
              "transfer": dataclasses.replace(cfg.attack, diversity_prob=0.0)}[method.removesuffix("_mi")]
    return dataclasses.replace(attack, momentum=cfg.momentum) if method.endswith("_mi") else attack


def craft_transfer(method: str, cfg: TransferConfig, surrogates: list, clean, s_targets, gen, progress):
    """The adversarial queries of a black-box method (none, pgd, di, transfer, di_mi, transfer_mi) crafted on the
    surrogates alone; each surrogate pulls toward its own target code."""
    attack = crafting_attack(method, cfg)
    if attack is None:
        return clean
    return _craft_on_surrogates(surrogates, clean, s_targets, attack, gen, cfg.batch_size, progress)


def _craft_on_surrogates(models, clean, targets, attack, gen, batch_size, progress) -> torch.Tensor:
    if len(models) == 1:
        return transfer_attack(models, clean, targets[0], attack, gen, batch_size=batch_size, progress=progress)
    from padhash.models import HashEnsemble

    # Several surrogates: attack their ensemble (mean of u) toward the vote of their target codes.
    vote = torch.stack([anchor_code(torch.stack([t[i] for t in targets])) for i in range(len(clean))])
    return transfer_attack([HashEnsemble(models)], clean, vote, attack, gen, batch_size=batch_size, progress=progress)


def _transfer_scores(victim, v_db, surrogate, s_db, adv, s_target, target_labels, ds, cfg: TransferConfig, radius,
                     region_seed, device) -> dict[str, float]:
    from padhash.metrics import asr_at_k, mean_average_precision
    from padhash.retrieval import hamming_topk

    db_labels = ds.database.labels
    e = cfg.eval
    scores = {}
    for side, model, db in (("victim", victim, v_db), ("surrogate", surrogate, s_db)):
        codes = encode(model, adv, device=device)
        k = len(db) if e.topk is None else min(e.topk, len(db))
        _, ranked = hamming_topk(codes, db, max(k, e.success_topk))
        rate, _ = asr_at_k(ranked[:, :e.success_topk], db_labels, target_labels, threshold=e.threshold)
        scores[side] = (float(rate), mean_average_precision(ranked[:, :k], target_labels, db_labels))
    out = {"transfer_rate": scores["victim"][0], "t_map": scores["victim"][1],
           "surrogate_success": scores["surrogate"][0], "surrogate_t_map": scores["surrogate"][1]}
    region = adversarial_region(surrogate, adv, s_target, list(e.region_levels),
                                torch.Generator().manual_seed(region_seed), radius=radius,
                                samples=e.region_samples, distribution=e.region_noise)
    out["region"] = float(region.mean())
    return out
