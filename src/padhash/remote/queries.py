"""Black-box adversarial queries against a live retrieval service (`padhash attack dhta|p2p|hag|noise|transfer
--victim-url URL`): every contact with the victim is an HTTP request.

The attacker holds its own images (the query split of the configured data set) and the service's API. It steals
D_sur as PADHASH does (`remote.ServiceAttacker.steal`: `remote.query_budget` searches of `results_per_query`
items, every returned item downloaded with its tags), trains its surrogate(s) on D_sur alone, crafts the
adversarial queries on them with the local runners' attack code, uploads each one to POST /search and scores the
returned items' tags. Uploads are 8-bit PNGs: the attacker's images are rounded to 8 bits before crafting (as any
photo it holds would be) and each adversarial query is rounded as sent; the image metrics are of what was sent.

- `dhta` family (QueryAttackConfig): the surrogate is `victim:`'s recipe (the attacker's gray-box guess) trained
  on D_sur; queries and targets follow DHTA-master's rule (`choose_targets`) with D_sur as the known database, and
  the anchor votes the surrogate's codes of n_t stolen target-label items. Methods none (the clean query: the
  floor), noise, p2p, dhta, hag; scored as the local runner does: `t_map` (t-MAP@eval.topk, the target label as the
  query's), `map` (its own label), `precision_at_k` (targeted precision@10), plus `asr` (DESIGN.md's ASR with the
  target label: more than 0.3 of the top 40 carry it) and `surrogate_t_map` on D_sur.
- `transfer` (TransferConfig): `surrogates:` trained on D_sur; pairs from the lead surrogate's codes of the
  attacker's images against D_sur (`transfer_targets`); methods none, pgd, di, transfer, di_mi, transfer_mi;
  `transfer_rate` = ASR@eval.success_topk at eval.threshold over the service's results, `t_map`, and
  `surrogate_success` on D_sur.
The anchor ceiling and the white-box ceiling need the victim's codes or gradients, which no API shows: refused.
K is capped by the service's max_topk. One seed, no sweep; a rerun on an existing --out is refused.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from padhash.config import to_dict
from padhash.errors import PadhashError
from padhash.records import RESULTS_FILE, ResultsFile
from padhash.remote.poisoning import RemoteSettings, ServiceAttacker
from padhash.rng import derive_seed
from padhash.service.images import quantize

NOT_OVER_HTTP = ("anchor", "white_box")  # ceilings that read the victim's codes / gradients


def remote_query_config_from_dict(kind: str, data: dict, where: str = "config"):
    """(QueryAttackConfig or TransferConfig, RemoteSettings) from the local runner's YAML plus `remote:`."""
    from padhash.config import from_dict
    from padhash.experiments.adversarial import query_config_from_dict, transfer_config_from_dict

    data = dict(data)
    remote = from_dict(RemoteSettings, data.pop("remote", None) or {}, f"{where}.remote")
    cfg = (transfer_config_from_dict if kind == "transfer" else query_config_from_dict)(data, where)
    refused = [m for m in cfg.methods if m in NOT_OVER_HTTP]
    if refused:
        raise PadhashError(f"{where}.methods: {', '.join(refused)} need the victim's codes, not available "
                           "against a service")
    if cfg.sweep or len(cfg.seeds) != 1 or getattr(cfg, "open_set_classes", None):
        raise PadhashError(f"{where}: a sweep, several seeds and open_set_classes are not available against a service")
    if remote.query_budget < 1 or remote.results_per_query < 1:
        raise PadhashError(f"{where}.remote: query_budget and results_per_query must be ≥ 1")
    return cfg, remote


class RemoteQueryAttack(ServiceAttacker):
    def __init__(self, kind: str, cfg, remote: RemoteSettings, client, out_dir: Path, progress: bool = True):
        super().__init__(cfg.data, cfg.seeds[0], client, out_dir, progress)
        self.kind, self.cfg, self.remote = kind, cfg, remote

    def surrogate(self, stolen, recipe, i: int):
        from padhash.experiments.adversarial import _frozen

        if recipe.hflip is None and self.cfg.data.name == "digits":
            recipe = dataclasses.replace(recipe, hflip=False)  # digits are not mirror-invariant (as _Models)
        tcfg = dataclasses.replace(recipe, device=self.cfg.device)
        return _frozen(self.train_surrogate(stolen, tcfg, i), self.cfg.device)

    def codes(self, model, images) -> torch.Tensor:
        from padhash.hashing import encode

        return encode(model, images, device=self.cfg.device).to(torch.int8).cpu()

    # -- the two families: [(record key, method label, clean, adversarial, true labels, target labels, extra)]
    def dhta_trials(self, stolen):
        from padhash.attacks.adversarial.targets import choose_targets
        from padhash.attacks.anchor import anchor_code
        from padhash.experiments.adversarial_query import _attack_queries

        cfg = self.cfg
        seed = derive_seed(derive_seed(self.seed, "attacker"), "surrogate", 0)
        model = self.surrogate(stolen, dataclasses.replace(cfg.victim, seed=seed), 0)
        s_db = self.codes(model, stolen.images(torch.arange(len(stolen))))
        picks = choose_targets(self.ds.query.labels, stolen.labels, cfg.queries, cfg.n_t,
                               derive_seed(self.seed, "targets"))
        if not picks:
            raise PadhashError("no query has a target label among the stolen items; raise remote.query_budget")
        q_idx = [q for q, _, _ in picks]
        clean = quantize(self.ds.query.images(torch.tensor(q_idx)))
        targets = torch.stack([t for _, t, _ in picks])
        anchors = {n: torch.stack([anchor_code(s_db[m[:n]]) for _, _, m in picks]) for n in {1, cfg.n_t}}
        for method in cfg.methods:
            adv = _attack_queries(method, model, clean, anchors, cfg, derive_seed(self.seed, "noise"), self.progress)
            yield (f"seed={self.seed}|{method}", method, clean, adv, self.ds.query.labels[q_idx], targets,
                   {"n_t": cfg.n_t, "eps": cfg.attack.eps, "steps": cfg.attack.steps,
                    "surrogate_t_map": self.surrogate_scores(model, adv, s_db, stolen.labels, targets)[0]})

    def transfer_trials(self, stolen):
        from padhash.experiments.adversarial_transfer import craft_transfer, transfer_targets

        cfg = self.cfg
        models = [self.surrogate(stolen, recipe, i) for i, recipe in enumerate(cfg.surrogates)]
        db_codes = [self.codes(m, stolen.images(torch.arange(len(stolen)))) for m in models]
        s_q = self.codes(models[0], quantize(self.ds.query.images(torch.arange(len(self.ds.query)))))
        db_classes, q_classes = stolen.labels.argmax(dim=1), self.ds.query.labels.argmax(dim=1)
        for selection in cfg.pair_selection:
            pairs, _, s_targets = transfer_targets(cfg, self.seed, selection, s_q, q_classes, db_codes[0], db_classes,
                                                   len(self.classes), db_codes)
            q_idx = torch.tensor([q for q, _ in pairs])
            clean = quantize(self.ds.query.images(q_idx))
            targets = torch.nn.functional.one_hot(torch.tensor([t for _, t in pairs]), len(self.classes)).float()
            for method in cfg.methods:
                gen = torch.Generator().manual_seed(derive_seed(self.seed, "craft", selection, method))
                adv = craft_transfer(method, cfg, models, clean, s_targets, gen, self.progress)
                yield (f"seed={self.seed}|pairs={selection}|{method}", f"{method}@pairs={selection}", clean, adv,
                       self.ds.query.labels[q_idx], targets,
                       {"pairs": selection, "targets_per_pair": cfg.targets_per_pair, "eps": cfg.attack.eps,
                        "surrogate_success": self.surrogate_scores(models[0], adv, db_codes[0], stolen.labels,
                                                                   targets)[1]})

    # -- scoring
    def surrogate_scores(self, model, adv, s_db, db_labels, targets) -> tuple[float, float]:
        """(t-MAP@K, ASR@success K) of the adversarial queries on the surrogate against D_sur: the attacker's view."""
        from padhash.metrics import asr_at_k, mean_average_precision
        from padhash.retrieval import hamming_topk

        k, success_k, threshold = self.ks()
        _, ranked = hamming_topk(self.codes(model, adv), s_db, min(max(k, success_k), len(s_db)))
        rate, _ = asr_at_k(ranked[:, :success_k], db_labels, targets, threshold=threshold)
        return mean_average_precision(ranked[:, :k], targets, db_labels), float(rate)

    def ks(self) -> tuple[int, int, float]:
        """(t-MAP K, success K, threshold), K capped by the service's max_topk."""
        e = self.cfg.eval
        success_k, threshold = getattr(e, "success_topk", 40), getattr(e, "threshold", 0.3)
        return min(e.topk or self.max_k, self.max_k), min(success_k, self.max_k), threshold

    def service_scores(self, adv, true_labels, targets) -> dict:
        from padhash.metrics import asr_at_k, mean_average_precision, precision_at_k

        k, success_k, threshold = self.ks()
        ranked, labels = self.search_many(adv, max(k, success_k))
        drop = getattr(self.cfg.eval, "drop_empty", False)
        rate, _ = asr_at_k(ranked[:, :success_k], labels, targets, threshold=threshold)
        return {"t_map": mean_average_precision(ranked[:, :k], targets, labels, drop_empty=drop),
                "map": mean_average_precision(ranked[:, :k], true_labels, labels, drop_empty=drop),
                "precision_at_k": precision_at_k(ranked[:, :min(10, k)], targets, labels),
                "transfer_rate" if self.kind == "transfer" else "asr": float(rate), "topk": k, "success_topk": success_k}

    def run(self) -> dict:
        from padhash.metrics import image_metrics

        results = ResultsFile(self.out, {"experiment": f"remote_{self.kind}", **to_dict(self.cfg),
                                         "remote": to_dict(self.remote)})
        stolen, _, steal_info = self.steal(self.remote.query_budget, self.remote.results_per_query)
        trials = self.transfer_trials(stolen) if self.kind == "transfer" else self.dhta_trials(stolen)
        for key, method, clean, adv, true_labels, targets, extra in trials:
            sent = quantize(adv)  # what the PNG upload carries
            record = {"key": key, "method": method, "seed": self.seed, "queries": len(clean), **extra,
                      **self.service_scores(sent, true_labels, targets), **image_metrics(clean, sent)}
            results.add(record)
            self.say(f"{method}: t-MAP {record['t_map']:.4f}, MAP {record['map']:.4f} over HTTP")
        results.set_extra("remote", {"url": self.client.url, **steal_info, "query_budget": self.remote.query_budget,
                                     "queries_spent": self.client.spent["search"], "requests": dict(self.client.spent),
                                     "service_items": self.health["items"]})
        return ResultsFile.load(self.out)


def run_remote_query(kind: str, cfg, remote: RemoteSettings, client, out_dir: str | Path,
                     progress: bool = True) -> dict:
    """Steal, train the surrogate(s), craft, search, score (module docstring); writes out_dir/results.json."""
    out_dir = Path(out_dir)
    if (out_dir / RESULTS_FILE).exists():
        raise PadhashError(f"{out_dir / RESULTS_FILE}: exists; choose a fresh --out (remote runs do not resume)")
    return RemoteQueryAttack(kind, cfg, remote, client, out_dir, progress).run()
