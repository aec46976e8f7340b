"""The defense run's report: per poisoned set, the attack and clean MAP under each defense (CIBA Table 3, Fig. 5)."""
from __future__ import annotations

from pathlib import Path

from padhash.records import ResultsFile


def report_tables(results: dict) -> list[str]:
    """CIBA Table 3 (spectral counts) and the Fig. 5 rows (DP σ, pruned channels, query preprocessing), per set."""
    from padhash.reports.common import markdown_table

    trials = results["trials"]
    sections = []
    for name in sorted({t["poisoned_set"] for t in trials}):
        rows = [t for t in trials if t["poisoned_set"] == name]
        table = [[t["defense"], t["setting"], f"{t['t_map']:.3f}", f"{t['asr']:.3f}", f"{t['map']:.3f}",
                  f"{t['map_poisoned']:.3f}", f"{t['map_poisoned'] - t['map']:+.3f}"] for t in rows]
        sections.append(f"### {name}: attack and clean MAP under each defense\n\n" + markdown_table(
            ["defense", "setting", "t-MAP", "ASR", "MAP clean model", "MAP defended", "MAP cost"], table))
        spectral = [t for t in rows if t["defense"] == "spectral"]
        if spectral:
            sections.append(f"### {name}: spectral signatures (CIBA Table 3)\n\n" + markdown_table(
                ["# clean (train)", "# poisoned", "# removed", "# clean removed", "# poisoned removed",
                 "# poisoned remained"],
                [[t["clean_kept"] + t["clean_removed"], t["poisons"], t["removed"], t["clean_removed"],
                  t["poisons_removed"], t["poisons_kept"]] for t in spectral]))
    return sections


def write_defense_report(run_dir: str | Path) -> None:
    from padhash.reports.common import save_curves, write_report

    run_dir = Path(run_dir)
    results = ResultsFile.load(run_dir)
    sections = [f"# Defenses against {results['config']['source']} poisons\n", *report_tables(results)]
    trials = results["trials"]
    for defense, x_key, xlabel in (("prune", "pruned", "feature channels pruned"), ("dp", "noise", "DP noise scale σ")):
        for name in sorted({t["poisoned_set"] for t in trials if t["defense"] == defense}):
            rows = sorted((t for t in trials if t["poisoned_set"] == name and t["defense"] == defense),
                          key=lambda t: t[x_key])
            xs = [t[x_key] for t in rows]
            path = f"figures/{defense}-{name}.png"
            save_curves({"MAP (clean queries)": (xs, [t["map_poisoned"] for t in rows]),
                         "t-MAP (triggered)": (xs, [t["t_map"] for t in rows]),
                         "ASR": (xs, [t["asr"] for t in rows])}, run_dir / path, xlabel=xlabel, ylabel="score",
                        title=f"{defense} against {name}")
            sections.append(f"![{defense} {name}]({path})\n")
    write_report(run_dir / "report.md", sections)
