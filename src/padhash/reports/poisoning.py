"""report.md and curves of a PADHASH run, made from its results.json alone (the image grids are drawn by the run)."""
from __future__ import annotations

from pathlib import Path

from padhash import registry
from padhash.records import ResultsFile, aggregate
from padhash.reports.common import markdown_table, mean_std, save_curves, write_report

LADDER = registry.names("poisoning")     # the report's row order, from the registry
LABELS = registry.labels("poisoning")
DIAGNOSTICS = (
    ("grad_cosine_before", "cos(G_p,G_v) before"), ("grad_cosine", "after"),
    ("grad_norm_ratio_before", "‖G_p‖/‖G_v‖ before"), ("grad_norm_ratio", "after"),
    ("poison_dist_source_surrogate", "poisons→source (surr.)"), ("poison_dist_target_surrogate", "poisons→target (surr.)"),
    ("poison_dist_source_victim", "poisons→source (victim)"), ("poison_dist_target_victim", "poisons→target (victim)"),
    ("trigger_dist_target_before", "trigger→target before"), ("trigger_dist_target", "after"),
)


def _methods(aggregates: dict) -> list[str]:
    return [m for m in LADDER if m in aggregates]


def _group(trials: list[dict]) -> dict[object, list[dict]]:
    groups: dict[object, list[dict]] = {}
    for t in trials:
        groups.setdefault(t.get("sweep_value"), []).append(t)
    return groups


def _mean_of_list(trials: list[dict], key: str) -> dict:
    """Per-trial list fields (target fractions) are averaged per trial first, then aggregated."""
    flat = [{"method": t["method"], key: sum(t[key]) / len(t[key])} for t in trials if t.get(key)]
    return aggregate(flat)


def _searched(trials: list[dict]) -> str:
    """Which database the poisoned victims searched (records from before the setting existed searched the clean one)."""
    if any(t.get("poisons_in_database") for t in trials):
        return "Poisoned victims search the poisoned database (the poisons are in it, as the paper's threat model has it)."
    return "Poisoned victims search the clean database (the poisons are not in it)."


def _linf_255(agg: dict, method: str) -> str:
    stats = agg.get(method, {}).get("linf")
    return f"{stats['mean'] * 255:.1f}" if stats else "–"


def _thresholds(trials: list[dict]) -> list[str]:
    first = next((t for t in trials if "asr_at_threshold" in t), None)
    return sorted(first["asr_at_threshold"], key=float) if first else []


def _threshold_row(trials: list[dict], method: str) -> list[str]:
    ts = [t for t in trials if t["method"] == method and "asr_at_threshold" in t]
    return [f"{sum(t['asr_at_threshold'][th] for t in ts) / len(ts):.2f}" for th in _thresholds(trials)]


def _budget_text(cfg: dict, trials: list[dict], value) -> str:
    """ε and α of this group: a sweep over either shows its own value, not the base config's."""
    eps = value if value is not None and trials[0].get("sweep_axis") == "attack.eps" else cfg["attack"]["eps"]
    alpha = next((t["alpha"] for t in trials if t["method"] == "padhash"), cfg["attack"]["alpha"])
    return f"ε = {eps if isinstance(eps, str) else f'{float(eps) * 255:.0f}/255'}, α = {alpha}"


def tables(results: dict) -> list[str]:
    cfg = results["config"]
    sections = []
    for value, trials in _group(results["trials"]).items():
        agg = aggregate(trials)
        methods = _methods(agg)
        head = f" ({trials[0]['sweep_axis']} = {value})" if value is not None else ""
        n_pairs = len({(t["seed"], t["pair_index"]) for t in trials})
        poisons = max((t.get("poison_count", 0) for t in trials), default=0)
        victim, data = cfg["victim"], cfg["data"]
        sections.append(f"## Attack success rate{head}\n\nASR@{cfg['eval']['topk']} with threshold "
                        f"{cfg['eval']['threshold']} (success: MORE than that share of the top-K carries the target) "
                        f"over {n_pairs} (trigger, target) pairs; mean ± std over trials. "
                        f"{poisons} poisons, {_budget_text(cfg, trials, value)}. "
                        f"{_searched(trials)} 'ASR clean db': the poisoned victim searching the unpoisoned database "
                        "(did the trigger's own code move?).\n")
        sections.append(markdown_table(
            ["hash method", "data", "bits", "poisons", *[LABELS[m] for m in methods]],
            [[victim["method"], data["name"], victim["bits"], poisons,
              *[mean_std(agg, m, "asr", 2) for m in methods]]]))
        fraction = _mean_of_list(trials, "target_fraction")
        sections.append(markdown_table(
            ["method", "ASR", "ASR clean db", "ASR noise", "ASR JPEG", "target share in top-K", "MAP", "MAP*", "PSNR", "SSIM", "ℓ∞·255"],
            [[LABELS[m], mean_std(agg, m, "asr", 2), mean_std(agg, m, "asr_clean_db", 2), mean_std(agg, m, "asr_noise", 2), mean_std(agg, m, "asr_jpeg", 2),
              mean_std(fraction, m, "target_fraction", 2), mean_std(agg, m, "map"), mean_std(agg, m, "map_poisoned"),
              mean_std(agg, m, "psnr", 2), mean_std(agg, m, "ssim", 3), _linf_255(agg, m)]
             for m in methods]))
        sections.append("### ASR vs success threshold (Table XIII)\n")
        sections.append(markdown_table(["method", *[f"{float(t):.0%}" for t in _thresholds(trials)]],
                                       [[LABELS[m], *_threshold_row(trials, m)] for m in methods]))
        sections.append("### Diagnostics (Hamming distances in bits)\n")
        sections.append(markdown_table(["method", *[label for _, label in DIAGNOSTICS]],
                                       [[LABELS[m], *[mean_std(agg, m, k, 2) for k, _ in DIAGNOSTICS]] for m in methods]))
    sections.append("## Trials\n")
    sections.append(markdown_table(
        ["key", "trigger", "target", "ASR", "share", "noise", "JPEG", "MAP*", "cos after", "‖G_p‖/‖G_v‖", "trig→tgt"],
        [[t["key"], t["trigger_index"], t["target_class"], t["asr"],
          " ".join(f"{f:.2f}" for f in t["target_fraction"]), t["asr_noise"], t["asr_jpeg"], t["map_poisoned"],
          t.get("grad_cosine", "–"), t.get("grad_norm_ratio", "–"), t["trigger_dist_target"]]
         for t in results["trials"]]))
    return sections


def write_poisoning_report(run_dir: str | Path) -> Path:
    run_dir = Path(run_dir)
    results = ResultsFile.load(run_dir)
    sections = ["# PADHASH poisoning run\n", "Made from results.json; figures in figures/.\n", *tables(results)]
    sweep_curves(results, run_dir)
    figures = sorted(p.name for p in (run_dir / "figures").glob("*.png")) if (run_dir / "figures").exists() else []
    if figures:
        sections.append("## Figures\n\n" + "\n".join(f"![{f}](figures/{f})" for f in figures) + "\n")
    path = run_dir / "report.md"
    write_report(path, sections)
    return path


def sweep_curves(results: dict, run_dir: Path) -> list[Path]:
    """ASR vs the swept value, and ASR vs the success threshold (10 %…90 %), one line per method."""
    paths = []
    trials = results["trials"]
    groups = _group(trials)
    if len(groups) > 1 and None not in groups:
        axis = trials[0]["sweep_axis"]
        curves = {}
        for m in LADDER:
            xs, ys = [], []
            for value, ts in groups.items():
                agg = aggregate(ts)
                if m in agg and "asr" in agg[m]:
                    xs.append(float(value) if isinstance(value, (int, float)) else len(xs))
                    ys.append(agg[m]["asr"]["mean"])
            if xs:
                curves[LABELS[m]] = (xs, ys)
        path = run_dir / "figures" / "asr_vs_sweep.png"
        save_curves(curves, path, xlabel=axis, ylabel="ASR")
        paths.append(path)
    curves = {}
    for m in LADDER:
        ts = [t for t in trials if t["method"] == m and "asr_at_threshold" in t]
        if ts:
            thresholds = sorted(ts[0]["asr_at_threshold"], key=float)
            curves[LABELS[m]] = ([float(t) for t in thresholds],
                                 [sum(t["asr_at_threshold"][th] for t in ts) / len(ts) for th in thresholds])
    if curves:
        path = run_dir / "figures" / "asr_vs_threshold.png"
        save_curves(curves, path, xlabel="success threshold (share of top-K with the target label)", ylabel="ASR")
        paths.append(path)
    return paths
