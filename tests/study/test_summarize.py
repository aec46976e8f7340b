"""studies/summarize.py turns a run's results.json into the study table's row, ladder order and numbers intact."""
import importlib.util
from pathlib import Path

from padhash.records import ResultsFile

SCRIPT = Path(__file__).resolve().parents[2] / "studies" / "summarize.py"


def _summarize():
    spec = importlib.util.spec_from_file_location("study_summarize", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_row_lists_the_ladder_in_order_with_computed_means(tmp_path):
    results = ResultsFile(tmp_path, {"pairs": 2})
    for pair, asrs in enumerate(((0.0, 1.0, 1.0, 1.0), (0.0, 0.0, 1.0, 1.0))):
        for method, asr in zip(("none", "witches_brew", "padhash", "label_flip"), asrs):
            results.add({"key": f"{pair}|{method}", "method": method, "asr": asr, "map": 0.5, "map_poisoned": 0.48,
                         "grad_cosine": 0.9, "grad_norm_ratio": 0.25})
    row = _summarize().row(tmp_path)
    ladder = row.split("|")[2]
    assert ladder.strip() == "0.00±0.00 (n=2) / 0.50±0.50 (n=2) / 1.00±0.00 (n=2) / 1.00±0.00 (n=2)"
    assert "0.480" in row and "cos 0.900" in row and "ratio 0.250" in row
