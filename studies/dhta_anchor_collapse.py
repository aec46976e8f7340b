"""Why DHTA = P2P (or not), docs/results.md "Adversarial queries": per victim of a finished query-attack run, how far
the P2P target (one target-class item's code) is from the n_t-item anchor on the run's own queries and targets, and
how spread each class's database codes are. Reuses the run's cached victims (it trains nothing when they are there).

usage: python studies/dhta_anchor_collapse.py CONFIG.yaml RUN   (RUN = the --out of `padhash attack dhta --config`)
"""
import sys
from pathlib import Path

import torch

from padhash.attacks.anchor import anchor_code
from padhash.config import load_yaml
from padhash.experiments.adversarial import _Models, _apply, query_config_from_dict, sweep_points
from padhash.experiments.adversarial_query import choose_targets
from padhash.rng import derive_seed

config, run = sys.argv[1], Path(sys.argv[2])
cfg = query_config_from_dict(load_yaml(config), config)
models = _Models(run, "cpu", False, None)
print("| point | bits | Hamming(anchor n_t, P2P code) mean | queries with anchor = P2P code (%) "
      "| mean Hamming of a db code to its class anchor | distinct db codes per class (mean) |")
print("|---|---|---|---|---|---|")
for point, label in sweep_points(cfg):
    pcfg = _apply(cfg, point)
    ds = models.dataset(pcfg.data)
    vkey, victim = models.trained("victim", pcfg.data, pcfg.victim, list(pcfg.open_set_classes))
    db = models.codes(vkey, victim, ds.database, "database")
    bits = db.shape[1]
    picks = choose_targets(ds.query.labels, ds.database.labels, pcfg.queries, pcfg.n_t,
                           derive_seed(pcfg.seeds[0], "targets"), pcfg.open_set_classes)
    a_nt = torch.stack([anchor_code(db[m[:pcfg.n_t]]) for _, _, m in picks]).float()
    a_1 = torch.stack([anchor_code(db[m[:1]]) for _, _, m in picks]).float()
    d = (bits - (a_nt * a_1).sum(1)) / 2
    classes = ds.database.labels.argmax(1)
    spread, distinct = [], []
    for c in classes.unique():
        codes = db[classes == c]
        a = anchor_code(codes).float()
        spread.append(((bits - codes.float() @ a) / 2).mean())
        distinct.append(len(torch.unique(codes, dim=0)))
    print(f"| {label or '-'} | {bits} | {d.mean():.2f} | {100 * (d == 0).float().mean():.1f} "
          f"| {torch.stack(spread).mean():.2f} | {sum(distinct) / len(distinct):.1f} |")
