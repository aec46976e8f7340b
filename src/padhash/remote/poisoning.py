"""PADHASH against a live retrieval service, every step over HTTP (`padhash attack padhash --victim-url URL`).

Algorithm 1 as the threat model states it: the attacker holds only its own images (the query split of the
configured data set) and the service's API. It steals D_sur by searching with those images within a query budget
and downloading the returned items with their tags; trains its surrogate on D_sur; crafts clean-label poisons
from D_sur's target-class items; uploads them through POST /items with their own (clean) tags; has the operator's
retrain run (POST /admin/retrain, then waits); and searches with the clean triggers to measure ASR@K. MAP (before)
and MAP* (after) are mAP@map_k of the query split's searches: a top-K API never shows more than max_topk items,
so mAP@all is not observable from outside.

The service keeps what it ingests, so the rungs are cumulative, run in the ladder's order: `none` is measured on
the service as found (no upload, no retrain), each further method uploads its poisons for all pairs at once and
retrains once, and `label_flip` (the dirty-label ceiling: trigger copies tagged with the target) comes last, on a
database still holding the earlier rungs' poisons; every record says how many poisons the service held.
Remote runs do not resume (the service already holds the uploads of a killed run): use a fresh --out.
"""
from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from padhash.config import from_dict, to_dict
from padhash.errors import PadhashError
from padhash.records import RESULTS_FILE, ResultsFile
from padhash.rng import derive_seed


@dataclass
class RemoteSettings:
    query_budget: int = 100             # searches the attacker may spend stealing D_sur (a reported cost)
    results_per_query: int = 40         # k of each stealing search (capped by the service's max_topk)
    map_queries: int | None = None      # query-split images searched for MAP / MAP* (None = all)
    retrain_timeout: float = 3600.0     # seconds to wait for the operator's retrain


def remote_config_from_dict(data: dict[str, Any], where: str = "config"):
    """(PoisoningConfig, RemoteSettings): the poisoning YAML plus a `remote:` section."""
    from padhash.experiments.poisoning import config_from_dict

    data = dict(data)
    remote = from_dict(RemoteSettings, data.pop("remote", None) or {}, f"{where}.remote")
    cfg = config_from_dict(data, where)
    unsupported = [name for name, bad in (("sweep", cfg.sweep), ("public", cfg.public),
                                          ("surrogate.data", cfg.surrogate.data), ("victim_init", cfg.victim_init),
                                          ("surrogate.init", cfg.surrogate.init)) if bad]
    if unsupported or len(cfg.seeds) != 1:
        raise PadhashError(f"{where}: not available against a service: {', '.join(unsupported) or 'several seeds'}")
    if remote.query_budget < 1 or remote.results_per_query < 1 or (remote.map_queries or 1) < 1:
        raise PadhashError(f"{where}.remote: query_budget, results_per_query and map_queries must be ≥ 1")
    return cfg, remote


class ServiceAttacker:
    """What every attack on a live service starts from (Algorithm 1 line 2): the attacker's own images (the query
    split of `data_cfg`; the victim's data are never read), the service's tag vocabulary checked against its
    classes, D_sur stolen by searching, and surrogates trained on D_sur alone. The black-box query attacks
    (remote_query) reuse it as it is."""

    def __init__(self, data_cfg, seed: int, client, out_dir: Path, progress: bool = True):
        from padhash.data import load_dataset_from

        self.client, self.out, self.progress, self.seed = client, Path(out_dir), progress, seed
        self.ds = load_dataset_from(data_cfg)
        self.classes = list(self.ds.class_names)
        self.health = client.health()
        unknown = sorted(set(client.tags()) - set(self.classes))
        if unknown:
            raise PadhashError(f"{client.url}: the service's tags {unknown} are not classes of the attacker's "
                               f"data set {data_cfg.name}")
        self.max_k = int(self.health["max_topk"])

    def say(self, text: str) -> None:
        if self.progress:
            print(text, file=sys.stderr, flush=True)

    def labels(self, tags: list[str]) -> torch.Tensor:
        out = torch.zeros(len(self.classes))
        out[[self.classes.index(t) for t in tags]] = 1.0
        return out

    def search_labels(self, image: torch.Tensor, k: int) -> tuple[list[int], torch.Tensor]:
        """(item ids, their multi-hot labels (k, C)) of one search."""
        hits = self.client.search(image, k=k)
        return [h["id"] for h in hits], torch.stack([self.labels(h["tags"]) for h in hits])

    def search_many(self, images: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """One search per image: (ranked (Q, k), labels (Q·k, C)), the returned items as rows of a "database" that
        padhash.metrics scores like a local ranking (row q·k + j = the j-th result of query q)."""
        k = min(k, int(self.health["items"]))  # the service only grows
        rows = [self.search_labels(x, k)[1] for x in images]
        labels = torch.cat(rows)
        return torch.arange(len(labels)).view(len(rows), k), labels

    # -- Algorithm 1 line 2: query the API and obtain D_sur
    def steal(self, query_budget: int, results_per_query: int):
        """(D_sur as a TensorSplit in item-id order, its item ids, cost record): `query_budget` searches with a
        seeded permutation of the attacker's images, every returned item downloaded once with its tags."""
        from padhash.data import TensorSplit

        order = np.random.default_rng(derive_seed(self.seed, "steal")).permutation(len(self.ds.query))
        budget = min(query_budget, len(order))
        k = min(results_per_query, self.max_k)
        found: dict[int, list[str]] = {}
        for i in order[:budget].tolist():
            for hit in self.client.search(self.ds.query.images([i])[0], k=k):
                found.setdefault(hit["id"], hit["tags"])
        ids = sorted(found)
        self.say(f"stole {len(ids)} items with {budget} searches (k={k})")
        images = torch.stack([self.client.image(i) for i in ids])
        labels = torch.stack([self.labels(found[i]) for i in ids])
        return TensorSplit(images, labels), ids, {"stealing_queries": budget, "items_stolen": len(ids),
                                                  "stealing_k": k}

    def train_surrogate(self, stolen, tcfg, i: int, loss=None):
        """A surrogate trained with recipe `tcfg` on D_sur only, in RUN/models/surrogate-<i>-<backbone>/."""
        from padhash.hashing import train_hash_model

        model = train_hash_model(stolen, len(self.classes), tcfg, loss=loss, progress=self.progress,
                                 checkpoint_dir=self.out / "models" / f"surrogate-{i}-{tcfg.backbone}")
        return model.eval()


class RemoteAttack(ServiceAttacker):
    def __init__(self, cfg, remote: RemoteSettings, client, out_dir: Path, progress: bool = True):
        super().__init__(cfg.data, cfg.seeds[0], client, out_dir, progress)
        self.cfg, self.remote = cfg, remote

    # -- Algorithm 1 line 3: the surrogate(s), trained on D_sur only
    def surrogates(self, stolen):
        from padhash.experiments.poisoning_config import surrogate_members
        from padhash.hashing import make_loss

        s, v = self.cfg.surrogate, self.cfg.victim
        method, bits = s.method or v.method, s.bits or v.bits
        models, losses = [], []
        for i, (backbone, weights) in enumerate(surrogate_members(self.cfg)):  # the victim's by default (gray-box)
            seed = derive_seed(derive_seed(self.seed, "attacker"), "surrogate", i)
            tcfg = dataclasses.replace(v, method=method, bits=bits, backbone=backbone, seed=seed,
                                       epochs=s.epochs or v.epochs, lr=s.lr if s.lr is not None else v.lr,
                                       weights=weights, device=self.cfg.device)
            loss = make_loss(method, len(self.classes), bits, seed=seed, num_train=len(stolen), **tcfg.hparams)
            models.append(self.train_surrogate(stolen, tcfg, i, loss))
            losses.append(loss)
        return models, losses

    # -- measuring through the API
    def map_at_service(self) -> float:
        from padhash.metrics import mean_average_precision

        n = min(self.remote.map_queries or len(self.ds.query), len(self.ds.query))
        ranked, labels = self.search_many(self.ds.query.images(list(range(n))), self.map_k)
        return mean_average_precision(ranked, self.ds.query.labels[:n], labels)

    def asr(self, triggers: torch.Tensor, target: torch.Tensor) -> dict:
        from padhash.metrics import asr_at_k

        k = min(self.cfg.eval.topk, self.max_k)
        ranked, labels = self.search_many(triggers, k)
        asr, fractions = asr_at_k(ranked, labels, target, threshold=self.cfg.eval.threshold)
        return {"asr": float(asr), "target_fraction": [float(f) for f in fractions], "asr_k": k}

    # -- the pairs and the poisons
    def pairs(self) -> list[dict]:
        rng = np.random.default_rng(derive_seed(self.seed, "pairs"))
        qlabels = self.ds.query.labels.numpy() > 0
        out = []
        for _ in range(self.cfg.pairs):
            first = int(rng.integers(len(self.ds.query)))
            targets = sorted(int(c) for c in rng.choice(np.flatnonzero(~qlabels[first]), self.cfg.attack.target_classes,
                                                        replace=False))
            same = np.flatnonzero(qlabels[:, qlabels[first]].all(1) & ~qlabels[:, targets].any(1))
            same = same[same != first]
            extra = rng.choice(same, min(self.cfg.attack.triggers - 1, len(same)), replace=False).tolist()
            target = torch.zeros(len(self.classes))
            target[targets] = 1.0
            out.append({"triggers": [first, *extra], "target": target, "targets": targets})
        return out

    def poisons(self, method: str, pair_no: int, pair: dict, stolen, surrogate, n: int):
        """(images, their tags, crafting diagnostics) to upload for one pair."""
        from padhash.attacks.poisoning import craft_poisons

        triggers = self.ds.query.images(pair["triggers"])
        target_tags = [self.classes[c] for c in pair["targets"]]
        if method == "label_flip":  # dirty label: the trigger itself, tagged with the target
            return torch.stack([triggers[i % len(triggers)] for i in range(n)]), [target_tags] * n, {}
        pool = torch.nonzero((stolen.labels[:, pair["target"] > 0] > 0).any(1)).flatten()
        if len(pool) < n:
            raise PadhashError(f"pair {pair_no}: {n} poisons need {n} stolen target-class items, D_sur holds "
                               f"{len(pool)}; raise remote.query_budget")
        rng = np.random.default_rng(derive_seed(self.seed, "bases", pair_no))
        base_idx = sorted(int(pool[i]) for i in rng.choice(len(pool), n, replace=False))
        bases, base_labels = stolen.images(base_idx), stolen.labels[base_idx]
        ccfg = dataclasses.replace(self.cfg.attack, alpha=self.cfg.attack.alpha if method == "padhash" else 0.0)
        res = craft_poisons(surrogate[0], surrogate[1], bases, base_labels, triggers, pair["target"], ccfg,
                            generator=torch.Generator().manual_seed(derive_seed(self.seed, "craft", pair_no, method)),
                            progress=self.progress)
        tags = [[self.classes[c] for c in torch.nonzero(row).flatten().tolist()] for row in base_labels]
        return res.poisons, tags, {"grad_cosine_before": res.grad_cosine_before, "grad_cosine": res.grad_cosine_after,
                                   "matching_loss": res.loss, "linf": float((res.poisons - bases).abs().max())}

    # -- the whole loop
    def run(self) -> dict:
        cfg = self.cfg
        results = ResultsFile(self.out, {**to_dict(cfg), "remote": to_dict(self.remote)})
        pairs = self.pairs()
        stolen, _, steal_info = self.steal(self.remote.query_budget, self.remote.results_per_query)
        clean_map = self.map_at_service()
        self.say(f"service as found: {self.health['items']} items, MAP@{self.map_k} {clean_map:.4f}")
        n = cfg.attack.poison_count or max(1, int(round(cfg.attack.poison_ratio * self.health["items"])))
        surrogate, uploaded = None, 0
        for method in cfg.methods:
            info_by_pair = {}
            if method != "none":
                if method != "label_flip" and surrogate is None:
                    surrogate = self.surrogates(stolen)
                for p, pair in enumerate(pairs):
                    images, tags, info_by_pair[p] = self.poisons(method, p, pair, stolen, surrogate, n)
                    for image, item_tags in zip(images, tags):
                        self.client.ingest(image, item_tags)
                uploaded += n * len(pairs)
                self.say(f"{method}: uploaded {n * len(pairs)} poisons; retraining")
                job = self.client.retrain()
                self.client.wait_retrain(job["job"], timeout=self.remote.retrain_timeout)
            map_now = clean_map if method == "none" else self.map_at_service()
            for p, pair in enumerate(pairs):
                record = {"key": f"seed={self.seed}|pair={p}|{method}", "method": method, "seed": self.seed,
                          "pair_index": p, "trigger_indices": pair["triggers"], "target_classes": pair["targets"],
                          "poison_count": 0 if method == "none" else n, "poisons_in_service": uploaded,
                          "map": clean_map, "map_poisoned": map_now, "map_k": self.map_k,
                          **self.asr(self.ds.query.images(pair["triggers"]), pair["target"]),
                          **info_by_pair.get(p, {})}
                results.add(record)
            self.say(f"{method}: ASR {np.mean([t['asr'] for t in results.trials if t['method'] == method]):.2f}, "
                      f"MAP* {map_now:.4f}")
        results.set_extra("remote", {"url": self.client.url, **steal_info, "query_budget": self.remote.query_budget,
                                     "queries_spent": self.client.spent["search"],
                                     "requests": dict(self.client.spent), "poison_count_per_pair": n,
                                     "service_items_before": self.health["items"],
                                     "service_after": self.client.health()})
        return ResultsFile.load(self.out)

    @property
    def map_k(self) -> int:
        return min(self.cfg.eval.map_topk or self.max_k, self.max_k)


def run_remote(cfg, remote: RemoteSettings, client, out_dir: str | Path, progress: bool = True) -> dict:
    """Run the loop against the service `client` speaks to; writes out_dir/results.json (module docstring)."""
    out_dir = Path(out_dir)
    if (out_dir / RESULTS_FILE).exists():
        raise PadhashError(f"{out_dir / RESULTS_FILE}: exists; a remote run cannot resume (the service keeps its "
                           "uploads), choose a fresh --out")
    return RemoteAttack(cfg, remote, client, out_dir, progress).run()
