"""report.md and figures of the adversarial-query experiments, made from RUN/results.json alone.

Query attacks: tables shaped like DHTA's Table 1 (t-MAP per method × code length / sweep), Table 5 (MAP of the
attacked queries under their true labels), Table 3 / Fig. 7 / Table 6 when the sweep has two axes (rows × columns),
perceptibility, PR and precision@k curves (Fig. 3: attacks against the target label, `none` against the query's own
label), a t-MAP vs n_t plot when n_t is swept, and the benign / adversarial top-10 grid.
Transfer: success rate and t-MAP on the black-box victim, ratio to PGD, surrogate success and adversarial region.
"""
from __future__ import annotations

import functools
import math
from pathlib import Path

from padhash import registry
from padhash.records import ResultsFile
from padhash.reports.common import markdown_table, mean_curve, save_curves, write_report

def _label(family: str, method: str) -> str:
    return registry.label(family, method)


def _pct(aggregates: dict, group: str, metric: str) -> str:
    stats = aggregates.get(group, {}).get(metric)
    if not stats:
        return "–"
    if stats["n"] > 1:
        return f"{100 * stats['mean']:.2f} ± {100 * stats['std']:.2f}"
    return f"{100 * stats['mean']:.2f}"


def _num(aggregates: dict, group: str, metric: str, scale: float = 1.0, digits: int = 4) -> str:
    stats = aggregates.get(group, {}).get(metric)
    if not stats or not math.isfinite(stats["mean"]):
        return "–"
    return f"{scale * stats['mean']:.{digits}f}"


def _ratio(aggregates: dict, group: str, ceiling: str, metric: str = "t_map") -> str:
    a, b = (aggregates.get(g, {}).get(metric) for g in (group, ceiling))
    return "–" if not a or not b or b["mean"] == 0 else f"{a['mean'] / b['mean']:.2f}"


def _group(method: str, label: str) -> str:
    return f"{method}@{label}" if label else method


def _points(data: dict) -> tuple[list[str], list[list], list[str]]:
    """Sweep axes, their value lists, and the sweep labels in run order ('' without a sweep)."""
    sweep = data["config"].get("sweep") or {}
    axes = list(sweep)
    if not axes:
        return [], [], [""]
    import itertools

    labels = [",".join(f"{a}={v}" for a, v in zip(axes, vals)) for vals in itertools.product(*sweep.values())]
    return axes, list(sweep.values()), labels


def _grid_layout(axes, values) -> tuple[list[str], list[str], list[tuple[str, str]]]:
    """(row labels, column labels, [(row part, column part)]) for one- or two-axis sweeps."""
    if not axes:
        return [""], [""], [("", "")]
    if len(axes) == 1:
        cols = [f"{axes[0]}={v}" for v in values[0]]
        return [""], cols, [("", c) for c in cols]
    rows = [f"{axes[0]}={v}" for v in values[0]]
    cols = [f"{axes[1]}={v}" for v in values[1]]
    return rows, cols, [(r, c) for r in rows for c in cols]


def _join(row: str, col: str) -> str:
    return ",".join(p for p in (row, col) if p)


def query_tables(data: dict) -> list[str]:
    agg = data["aggregates"]
    cfg = data["config"]
    methods = registry.ordered("query", cfg["methods"])
    axes, values, _ = _points(data)
    rows, cols, _ = _grid_layout(axes, values)
    col_titles = [c.split("=", 1)[1] if c else "value" for c in cols]
    axis_title = axes[-1] if axes else ""
    sections = []

    def table(metric: str, title: str, extra_original_map: bool = False) -> str:
        body = []
        for m in methods:
            for r in rows:
                name = _label("query", m) + (f" ({r})" if r else "")
                body.append([name, {"t_map": "t-MAP", "map": "MAP"}[metric],
                             *[_pct(agg, _group(m, _join(r, c)), metric) for c in cols]])
        if metric == "t_map" and {"dhta", "anchor"} <= set(methods):  # how much of the ε = ∞ ceiling DHTA reaches
            for r in rows:
                body.append(["DHTA ÷ anchor ceiling" + (f" ({r})" if r else ""), "ratio",
                             *[_ratio(agg, _group("dhta", _join(r, c)), _group("anchor", _join(r, c))) for c in cols]])
        if extra_original_map and "none" in methods:
            for r in rows:
                body.append(["Original" + (f" ({r})" if r else ""), "MAP",
                             *[_pct(agg, _group("none", _join(r, c)), "map") for c in cols]])
        return f"### {title}\n\n" + markdown_table(["Method", "Metric", *col_titles], body)

    sections.append(table("t_map", f"t-MAP@K (%) — shaped like DHTA Table 1 / 3 / 6 (columns: {axis_title or 'run'})",
                          extra_original_map=True))
    sections.append(table("map", "MAP@K (%) of the attacked queries under their TRUE labels — DHTA Table 5 "
                                 "(lower = stronger non-targeted effect)"))
    body = []
    for m in methods:
        for r in rows:
            for c in cols:
                g = _group(m, _join(r, c))
                body.append([g, _num(agg, g, "perceptibility", 1e3, 2), _num(agg, g, "psnr", 1, 1),
                             _num(agg, g, "ssim", 1, 3), _num(agg, g, "linf", 255, 2),
                             _num(agg, g, "hamming_to_anchor", 1, 2), _num(agg, g, "hamming_to_clean", 1, 2),
                             _pct(agg, g, "precision_at_k")])
    sections.append("### Perceptibility and codes\n\nperceptibility = √(mean squared difference) in [0,1] pixels "
                    "(DHTA: 8.35×10⁻³ on ImageNet); L∞ in /255; Hamming distance of the query's code to the "
                    "anchor and to its own clean code; precision@10 against the target label.\n\n"
                    + markdown_table(["group", "perceptibility ×10³", "PSNR dB", "SSIM", "L∞ ×255",
                                      "Hamming to anchor", "Hamming to clean code", "P@10 target (%)"], body))
    return sections


def write_query_report(run_dir: str | Path) -> None:
    run_dir = Path(run_dir)
    data = ResultsFile.load(run_dir)
    cfg = data["config"]
    _, _, labels = _points(data)
    figures = run_dir / "figures"
    lines = []
    for label in labels:
        suffix = "_" + "".join(ch if ch.isalnum() else "_" for ch in label) if label else ""
        pr, prec = {}, {}
        for m in registry.ordered("query", cfg["methods"]):
            trials = [t for t in data["trials"] if t["method"] == _group(m, label)]
            if not trials:
                continue
            # Fig. 3: the benign query against its own label, the attacks against the target label.
            which = "true" if m == "none" else "target"
            pr[_label("query", m).split(" (")[0]] = mean_curve(trials, f"pr_{which}", "recall", "precision")
            prec[_label("query", m).split(" (")[0]] = mean_curve(trials, f"precision_curve_{which}", "k", "precision")
        if pr:
            save_curves(pr, figures / f"pr{suffix}.png", xlabel="recall", ylabel="precision",
                        title=f"PR (Hamming radius) {label}")
            save_curves(prec, figures / f"precision_at_k{suffix}.png", xlabel="k", ylabel="precision@k",
                        title=f"precision@k {label}")
            lines.append(f"- {label or 'run'}: `figures/pr{suffix}.png`, `figures/precision_at_k{suffix}.png`")
    nt_plot = _n_t_plot(data, figures)
    grids = sorted({t["grid"] for t in data["trials"] if t.get("grid")})
    sections = [query_header(cfg), *query_tables(data), "### Figures\n\n" + "\n".join(lines) +
                (f"\n- t-MAP vs n_t: `{nt_plot}`" if nt_plot else "") +
                "".join(f"\n- top-10 grid: `{g}`" for g in grids)]
    write_report(run_dir / "report.md", sections)


def _shown(cfg: dict, key: str, text: str) -> str:
    """`text` (the base config's value), or the sweep's values when `key` is swept: a header must not claim one."""
    sweep = cfg.get("sweep") or {}
    return f"{key} swept over {sweep[key]}" if key in sweep else text


def query_header(cfg: dict) -> str:
    """The report's first paragraph: the run's settings, a swept one named as swept (not the base config's value)."""
    attack, shown = cfg["attack"], functools.partial(_shown, cfg)
    eps = f"ε = {attack['eps'] * 255:.2f}/255"
    return (f"# Adversarial queries (DHTA / P2P / HAG / noise)\n\n"
            f"Data `{cfg['data']['name']}`, victim `{cfg['victim']['method']}` / `{cfg['victim']['backbone']}` / "
            f"{shown('victim.bits', str(cfg['victim']['bits']) + ' bits')}"
            f"{' (given run ' + str(cfg['victim_run']) + ')' if cfg.get('victim_run') else ''}; "
            f"{cfg['queries']} queries per seed, seeds {cfg['seeds']}, {shown('n_t', 'n_t = ' + str(cfg['n_t']))}; "
            f"{shown('attack.eps', eps)} (pixel space), "
            f"{shown('attack.steps', str(attack['steps']) + ' iterations')}, optimizer "
            f"`{attack['optimizer']}`, step {attack['step_fraction']}·ε; t-MAP/MAP @ K = {cfg['eval']['topk']} "
            f"(clipped to the database), {'queries with no relevant item dropped (DHTA convention)' if cfg['eval']['drop_empty'] else 'queries with no relevant item count as 0 (DeepHash convention)'}."
            + (f" Open set: the victim never saw classes {cfg['open_set_classes']}; targets come only from them."
               if cfg.get("open_set_classes") else "") + "\n")


def _n_t_plot(data: dict, figures: Path) -> str | None:
    sweep = data["config"].get("sweep") or {}
    if "n_t" not in sweep:
        return None
    other = [a for a in sweep if a != "n_t"]
    curves = {}
    from itertools import product

    for vals in product(*(sweep[a] for a in other)):
        fixed = dict(zip(other, vals))
        xs, ys = [], []
        for n in sweep["n_t"]:
            point = {**fixed, "n_t": n}
            label = ",".join(f"{a}={point[a]}" for a in sweep)
            stats = data["aggregates"].get(_group("dhta", label), {}).get("t_map")
            if stats:
                xs.append(n)
                ys.append(100 * stats["mean"])
        if xs:
            curves["DHTA t-MAP " + ",".join(f"{a}={v}" for a, v in fixed.items())] = (xs, ys)
    if not curves:
        return None
    path = figures / "t_map_vs_n_t.png"
    save_curves(curves, path, xlabel="n_t", ylabel="t-MAP (%)", title="DHTA Fig. 7: t-MAP vs n_t")
    return "figures/t_map_vs_n_t.png"


# ------------------------------------------------------------------------------------------------------ transfer
def _seeds_at_least(trials: list[dict], group: str, baseline: str) -> str:
    """'n of S': in how many seeds `group`'s success on the victim is at least `baseline`'s (a mean over seeds can
    hide that one lucky seed carries it)."""
    def rates(g):
        return {t["seed"]: t["transfer_rate"] for t in trials if t["method"] == g}
    mine, base = rates(group), rates(baseline)
    seeds = sorted(mine.keys() & base.keys())
    return f"{sum(mine[s] >= base[s] for s in seeds)} of {len(seeds)}" if seeds else "–"


def transfer_tables(data: dict) -> list[str]:
    agg = data["aggregates"]
    cfg = data["config"]
    _, _, labels = _points(data)
    methods = registry.ordered("transfer", cfg["methods"])
    per_seed = len(cfg["seeds"]) > 1
    sections = []
    for label in labels:
        for selection in cfg["pair_selection"]:
            suffix = f"pairs={selection}" + (f",{label}" if label else "")
            pgd = agg.get(f"pgd@{suffix}", {}).get("transfer_rate")
            body = []
            for m in methods:
                g = f"{m}@{suffix}"
                rate = agg.get(g, {}).get("transfer_rate")
                ratio = "–" if not rate or not pgd or pgd["mean"] == 0 else f"{rate['mean'] / pgd['mean']:.2f}×"
                body.append([_label("transfer", m), _pct(agg, g, "transfer_rate"), _pct(agg, g, "t_map"), ratio,
                             _pct(agg, g, "surrogate_success"), _num(agg, g, "region", 255, 1),
                             _num(agg, g, "perceptibility", 1e3, 2), _num(agg, g, "mean_pair_distance", 1, 2)]
                            + ([_seeds_at_least(data["trials"], g, f"pgd@{suffix}")] if per_seed else []))
            sections.append(f"### {selection} pairs{' — ' + label if label else ''}\n\n" + markdown_table(
                ["Method", "success on victim (%)", "t-MAP on victim (%)", "÷ PGD", "success on surrogate (%)",
                 "adv. region (/255)", "perceptibility ×10³", "surrogate pair distance"]
                + (["≥ PGD (seeds)"] if per_seed else []), body))
    return sections


def write_transfer_report(run_dir: str | Path) -> None:
    run_dir = Path(run_dir)
    data = ResultsFile.load(run_dir)
    cfg = data["config"]
    a, e = cfg["attack"], cfg["eval"]
    surrogates = ", ".join(f"`{s['method']}/{s['backbone']}/{s['bits']}b`" for s in cfg["surrogates"])
    shown, eps = functools.partial(_shown, cfg), f"ε = {a['eps'] * 255:.1f}/255"
    header = (f"# Black-box transfer attack (Xiao & Wang 2021) vs PGD and DI\n\n"
              f"Data `{cfg['data']['name']}`; black-box victim `{cfg['victim']['method']}` / "
              f"{shown('victim.backbone', '`' + cfg['victim']['backbone'] + '`')} / "
              f"{shown('victim.bits', str(cfg['victim']['bits']) + ' bits')}; white-box surrogate(s) {surrogates}. "
              f"{cfg['pairs']} (query, target class) pairs per selection and seed, seeds {cfg['seeds']}; target code "
              f"= anchor of n_t = {cfg['n_t']} surrogate database codes. {shown('attack.eps', eps)}, "
              f"{shown('attack.steps', str(a['steps']))} steps of "
              f"{a['step_size'] * 255:.1f}/255; noise-robust term λ = {a['noise_weight']} with {a['noise']} noise of "
              f"level {a['noise_level'] * 255:.1f}/255 ({a['noise_samples']} draw(s)/step, per "
              f"{'pixel of the surrogate input' if a.get('noise_resolution') == 'model' else 'query pixel'}); "
              f"DI probability "
              f"{cfg['diversity_prob']}. Success = ≥ {e['threshold']:.0%} of the victim's top-{e['success_topk']} carry "
              f"the target label; t-MAP @ {e['topk']}. Adversarial region = largest {e['region_noise']} noise level "
              f"(of {[round(v * 255, 1) for v in e['region_levels']]}/255) under which the surrogate code stays within "
              f"{e['region_radius']:.0%} of K bits of the target code in ≥ half of {e['region_samples']} draws.\n")
    write_report(run_dir / "report.md", [header, *transfer_tables(data)])
