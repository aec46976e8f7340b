"""Why does one CIBA target resist even the dirty-label ceiling? Per target of a run, on its clean victim: how far the
triggered queries' codes land from the target's anchor code, and what a query exactly at the anchor would score.

usage: python docs/diagnostics/ciba_target_probe.py RUN CIFAR_SUBSET.npz
(RUN = the --out of `padhash attack ciba --config configs/ciba-cifar10-partial-poisons.yaml`)
"""
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

from padhash.attacks.backdoor.trigger import apply_trigger
from padhash.data import load_dataset
from padhash.experiments.retrieval import load_victim
from padhash.hashing.trainer import encode
from padhash.metrics.ranking import codes_map

torch.set_num_threads(1)
run, ds = Path(sys.argv[1]), load_dataset("npz", sys.argv[2], preset="paper")
model = load_victim(next((run / "victim").iterdir()))[0]
db = encode(model, ds.database).float()
labels = ds.query.labels.argmax(1)
queries = ds.query.images(list(range(len(labels))))
bits = db.shape[1]
print(f"{'target':>6} {'anchor t-MAP@300':>17} {'class spread':>12} {'nearest other anchor':>21} "
      f"{'clean→anchor':>12} {'triggered→anchor':>16}")
centers = {c: torch.sign(db[ds.database.labels[:, c] > 0].mean(0)) for c in range(ds.num_classes)}
for path in sorted((run / "triggers").glob("victim-t*.safetensors")):
    t = int(path.name.split("-t")[1].split("-")[0])
    tensors = load_file(str(path))
    anchor = tensors["anchors"][0].sign()
    target = torch.zeros(1, ds.num_classes)
    target[0, t] = 1
    at_anchor = codes_map(anchor[None], db, target, ds.database.labels, 300)
    members = db[ds.database.labels[:, t] > 0]
    spread = ((bits - members @ anchor) / 2).mean()
    nearest = min(((bits - centers[c] @ anchor) / 2).item() for c in centers if c != t)
    other = labels != t
    clean = encode(model, queries[other]).float()
    trig = encode(model, apply_trigger(queries[other], tensors["patch"], 1.0)).float()
    d = lambda codes: ((bits - codes @ anchor) / 2).mean().item()  # noqa: E731
    print(f"{t:>6} {at_anchor:>17.3f} {spread:>12.1f} {nearest:>21.0f} {d(clean):>12.1f} {d(trig):>16.1f}")
