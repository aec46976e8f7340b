"""The CIBA report: CIBA-shaped tables and figures from a backdoor run's results.json alone."""
from __future__ import annotations

from pathlib import Path

from padhash import registry
from padhash.records import ResultsFile


ROW_NAMES = registry.labels("backdoor")   # report rows, from the registry


def report_tables(results: dict) -> list[str]:
    """Markdown tables shaped like CIBA Table 1 (methods × t-MAP/MAP), Fig. 6–7 (methods × sweep values) and
    Table 4 (settings × victim backbones), each cell mean ± std over the target labels — from results.json alone."""
    from padhash.reports.common import markdown_table, mean_std

    cfg, agg, trials = results["config"], results["aggregates"], results["trials"]
    # a sweep over eval.topk gives K per column: the base config's K would mislabel it
    k = "K" if "eval.topk" in (cfg.get("sweep") or {}) else cfg["eval"]["topk"] or "all"
    sections = []
    axis = next(iter(cfg.get("sweep") or {}), None)
    if cfg["transfer"]["backbones"]:
        cols = cfg["transfer"]["backbones"]
        suffixes = [""] if not axis else [f"@{axis}={v}" for v in cfg["sweep"][axis]]
        for suffix in suffixes:
            rows = []
            for setting in [*cfg["transfer"]["settings"], "none"]:
                method = "none" if setting == "none" else "ciba"
                for metric, label in (("t_map", "t-MAP"), ("map_poisoned" if setting != "none" else "map", "MAP")):
                    rows.append([setting, label, *[mean_std(agg, f"{method}@{setting}:{c}{suffix}", metric) for c in cols]])
            sections.append(f"### Transfer (CIBA Table 4){suffix}: t-MAP@{k} / MAP@{k}\n\n"
                            + markdown_table(["setting", "metric", *cols], rows))
        return sections
    methods = [m for m in cfg["methods"]]
    if len(cfg.get("sweep") or {}) == 2:  # CIBA Table 5: rows = the first axis, columns = the second, per method
        (row_axis, row_values), (col_axis, col_values) = cfg["sweep"].items()
        for m in methods:
            rows = [[f"{row_axis}={r}", *[mean_std(agg, f"{m}@{row_axis}={r},{col_axis}={c}", "t_map")
                                          for c in col_values]] for r in row_values]
            sections.append(f"### {ROW_NAMES[m]}: t-MAP@{k} over {row_axis} × {col_axis}\n\n"
                            + markdown_table([row_axis, *[f"{col_axis}={c}" for c in col_values]], rows))
        return sections
    if axis:
        values = cfg["sweep"][axis]
        for metric, label in ((("t_map", f"t-MAP@{k}"), ("map_poisoned", f"MAP (backdoored)@{k}"),
                               ("asr", f"ASR@{cfg['eval']['asr_topk']}"),
                               ("code_spread", "Code spread of poisons (bits, CIBA Fig. 4)"))):
            rows = [[ROW_NAMES[m], *[mean_std(agg, f"{m}@{axis}={v}", metric) for v in values]] for m in methods]
            sections.append(f"### {label} vs {axis}\n\n"
                            + markdown_table(["method", *[f"{axis}={v}" for v in values]], rows))
        return sections
    rows = [[ROW_NAMES[m], mean_std(agg, m, "t_map"), mean_std(agg, m, "asr"), mean_std(agg, m, "map"),
             mean_std(agg, m, "map_poisoned"), mean_std(agg, m, "psnr", 1), mean_std(agg, m, "code_spread", 1)]
            for m in methods]
    targets = sorted({t["target_class"] for t in trials})
    sections.append(f"### t-MAP@{k} and MAP@{k} (CIBA Table 1), mean ± std over target labels {targets}\n\n"
                    + markdown_table(["method", "t-MAP", f"ASR@{cfg['eval']['asr_topk']}", "MAP (clean model)",
                                      "MAP (backdoored)", "PSNR of poisons (dB)",
                                      "code spread of poisons (bits)"], rows)
                    + "\nCode spread: the mean Hamming distance between two poisons' codes under the crafting model, "
                      "before the trigger (CIBA Fig. 4; None = the unperturbed images).\n")
    per_target = [[ROW_NAMES[m], *[next((f"{t['t_map']:.3f}" for t in trials if t["method"] == m
                                         and t["target_class"] == c), "–") for c in targets]] for m in methods]
    sections.append("### t-MAP per target label (CIBA Table 6)\n\n"
                    + markdown_table(["method", *[f"target {c}" for c in targets]], per_target))
    return sections


def _curve_figures(results: dict, figures: Path) -> list[str]:
    """CIBA Fig. 8 (PR and precision@k of the triggered queries towards the target) and Fig. 4 (distribution of
    Hamming distances between poisons), each curve the mean over the target labels, from the trials' records."""
    from padhash.reports.common import mean_curve, save_curves

    trials, methods = results["trials"], results["config"]["methods"]
    by_method = {ROW_NAMES[m]: [t for t in trials if t["method"] == m] for m in methods}
    plots = (("pr_target", "recall", "precision", "pr-triggered.png", "PR of triggered queries (target label)"),
             ("precision_curve_target", "k", "precision", "precision-triggered.png",
              "precision@k of triggered queries"),
             ("code_spread_histogram", "distance", "fraction", "code-spread.png",
              "Hamming distance between two poisons"))
    lines = []
    for name, x, y, file, title in plots:
        curves = {label: mean_curve(ts, name, x, y) for label, ts in by_method.items() if any(name in t for t in ts)}
        if curves:
            save_curves(curves, figures / file, xlabel=x, ylabel=y, title=title)
            lines.append(f"![{title}](figures/{file})\n")
    return lines


def write_backdoor_report(run_dir: str | Path) -> None:
    """report.md (tables, the figures made) and figures/curves-*.png of a sweep, from results.json alone."""
    from padhash.reports.common import save_curves, write_report

    run_dir = Path(run_dir)
    results = ResultsFile.load(run_dir)
    cfg = results["config"]
    sections = ["# Clean-label backdoor (CIBA) report\n",
                f"data: {cfg['data']}; victim: {cfg['victim']['backbone']} {cfg['victim']['method']} "
                f"{cfg['victim']['bits']} bits; poisons: {cfg['poison_count']}; trigger {cfg['trigger']['size']} px; "
                f"ε = {cfg['perturb']['eps']:.4f} (pixel space); λ = {cfg['perturb']['lam']}; β = {cfg['blend']}; "
                f"seed {cfg['seed']}.\n", *report_tables(results)]
    axes = list(cfg.get("sweep") or {})
    if axes and not cfg["transfer"]["backbones"]:
        *outer, axis = axes  # one curve per method (and per value of the first axis of a grid) over the last axis
        values = cfg["sweep"][axis]
        agg = results["aggregates"]
        numeric = all(isinstance(v, (int, float)) for v in values)
        xs = values if numeric else list(range(len(values)))
        points = [""] if not outer else [f"{outer[0]}={r}," for r in cfg["sweep"][outer[0]]]

        def t_map(group: str) -> float:
            return agg.get(group, {}).get("t_map", {}).get("mean", float("nan"))

        curves = {f"{ROW_NAMES[m]} {p.rstrip(',')}".strip(): (xs, [t_map(f"{m}@{p}{axis}={v}") for v in values])
                  for m in cfg["methods"] for p in points}
        save_curves(curves, run_dir / "figures" / "t_map-sweep.png", xlabel=axis, ylabel="t-MAP")
        sections.append("![t-MAP vs sweep](figures/t_map-sweep.png)\n")
    elif not cfg["transfer"]["backbones"]:
        sections += _curve_figures(results, run_dir / "figures")
    maps = sorted((run_dir / "figures").glob("tsne-target*.png")) if (run_dir / "figures").exists() else []
    sections += [f"![{m.stem}: codes of the target class's poisons, t-SNE (CIBA Fig. 3)](figures/{m.name})\n"
                 for m in maps]
    grids = sorted((run_dir / "figures").glob("target*.png")) if (run_dir / "figures").exists() else []
    sections += [f"![{g.stem}](figures/{g.name})\n" for g in grids]
    write_report(run_dir / "report.md", sections)
