"""Image grids a run draws while its models are at hand (DHTA Fig. 4, the PADHASH poisons and top-10, CIBA's
poisons and triggered top-10); the tables and curves come from results.json alone (the family modules)."""
from __future__ import annotations

from pathlib import Path

from padhash.hashing import encode
from padhash.io import save_tensors
from padhash.retrieval import hamming_topk


def query_grid(out: Path, key: str, ds, model, db_codes, clean, adv, true_labels, target_labels, n, device) -> str:
    """DHTA Fig. 4: per query, the benign query and its top-10 (✓ = its own label), then the adversarial query and
    its top-10 (✓ = the target label). Saves the PNG and the tensors it was drawn from."""
    from padhash.reports.common import save_image_grid

    n = min(n, len(clean))
    rows, marks, titles = [], [], []
    db_labels = ds.database.labels
    for images, labels, name in ((clean[:n], true_labels[:n], "benign"), (adv[:n], target_labels[:n], "adversarial")):
        _, top = hamming_topk(encode(model, images, device=device), db_codes, 10)
        for i in range(n):
            hits = (db_labels[top[i]] * labels[i]).sum(dim=1) > 0
            rows.append([images[i], *ds.database.images(top[i])])
            marks.append([None, *hits.tolist()])
            titles.append(f"q{i} {name}")
    order = [j for i in range(n) for j in (i, n + i)]  # benign and adversarial rows of a query side by side
    rows, marks, titles = [rows[j] for j in order], [marks[j] for j in order], [titles[j] for j in order]
    name = "grid_" + "".join(c if c.isalnum() else "_" for c in key) + ".png"
    path = out / "figures" / name
    save_image_grid(rows, path, row_titles=titles, col_titles=["query", *[f"top-{j + 1}" for j in range(10)]],
                    marks=marks, title="DHTA: benign vs adversarial query (✓ = query label / target label)")
    save_tensors(out / "figures" / name.replace(".png", ".safetensors"),
                 {"benign": clean[:n].contiguous(), "adversarial": adv[:n].contiguous()})
    return str(path.relative_to(out))


def poison_grids(out: Path, device: str, key, bases, poisons, triggers, databases, victim, pvictim, db_codes, p_db, target) -> None:
    """Clean vs poisoned grid and the trigger's top-K before/after (databases: the clean and the searched one),
    for the first pair of each method."""
    from padhash.reports.common import save_image_grid

    if "|pair=0|" not in key:
        return
    method = key.rsplit("|", 1)[1]
    tag = key.replace("|", "_").replace("=", "-")
    n = min(8, len(bases))
    diff = ((poisons[:n] - bases[:n]).abs() * 4).clamp(0, 1)
    save_image_grid([list(bases[:n].cpu()), list(poisons[:n].cpu()), list(diff.cpu())],
                    out / "figures" / f"poisons_{tag}.png", row_titles=["clean", method, "|δ|×4"])
    rows, marks = [], []
    for model, codes, database in ((victim, db_codes, databases[0]), (pvictim, p_db, databases[1])):
        _, idx = hamming_topk(encode(model, triggers[:1], device=device).cpu(), codes, 10)
        rows.append([triggers[0].cpu()] + list(database.images(idx[0].tolist())))
        hits = (database.labels[idx[0]][:, target > 0] > 0).any(1).tolist()
        marks.append([None] + hits)
    save_image_grid(rows, out / "figures" / f"topk_{tag}.png", row_titles=["clean victim", f"{method} victim"],
                    marks=marks, title="trigger and its top-10 (✓ = target label)")


def backdoor_grid(out: Path, key, ds, originals, poisons, queries, q_codes, db_codes, target) -> None:
    """Clean / poisoned training images; triggered queries (codes `q_codes`) and their top-10 (✓ = target label)."""
    from padhash.reports.common import save_image_grid

    n = min(6, len(originals))
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
    save_image_grid(rows, out / "figures" / f"{name}.png", row_titles=titles, marks=marks,
                    title=f"{key}: top-10 of triggered queries (✓ target label {target})")
