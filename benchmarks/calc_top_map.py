"""The baseline the retrieval benchmark times: DeepHash-pytorch's ``CalcTopMap`` as a per-query numpy loop.

As a script, on an .npz of (q_codes, db_codes, q_labels, db_labels, topk), it prints the loop's wall seconds and
the mAP; ``retrieval.py`` runs it so, in a fresh Python, to time the loop under other numpy CPU dispatch settings.

    .venv/bin/python benchmarks/calc_top_map.py DATA.npz
"""
from __future__ import annotations

import sys
import time

import numpy as np


def calc_top_map_loop(q_codes: np.ndarray, db_codes: np.ndarray, q_labels: np.ndarray, db_labels: np.ndarray,
                      topk: int) -> float:
    """DeepHash-pytorch ``utils/tools.py:CalcTopMap`` as written there: per query, distances, argsort, AP."""
    num_query = q_labels.shape[0]
    topkmap = 0.0
    for i in range(num_query):
        gnd = (np.dot(q_labels[i, :], db_labels.transpose()) > 0).astype(np.float32)
        hamm = 0.5 * (db_codes.shape[1] - np.dot(q_codes[i, :], db_codes.transpose()))
        ind = np.argsort(hamm)
        gnd = gnd[ind]
        tgnd = gnd[0:topk]
        tsum = np.sum(tgnd).astype(int)
        if tsum == 0:
            continue
        count = np.linspace(1, tsum, tsum)
        tindex = np.asarray(np.where(tgnd == 1)) + 1.0
        topkmap += np.mean(count / tindex)
    return topkmap / num_query


def main() -> None:
    with np.load(sys.argv[1]) as data:
        arrays = {name: data[name] for name in data.files}
    arrays["topk"] = int(arrays["topk"])
    start = time.perf_counter()
    value = calc_top_map_loop(**arrays)
    print(time.perf_counter() - start, value)


if __name__ == "__main__":
    main()
