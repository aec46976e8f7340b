"""Exact Hamming top-k search and mAP@k: padhash vs FAISS's flat binary index vs a CalcTopMap-style loop.

On random codes (uniform bits, 10 one-hot classes), times in one run on the same data:
- padhash search (``HammingIndex``, exact, ties by index), mAP@k from its ranking, search + mAP@k (the two
  calls), and ``map_at_k`` (codes and labels in, mAP out, like the loop: each ranking is scored where the search
  makes it, and none is kept), which the speed-up is measured with;
- FAISS ``IndexBinaryFlat.search`` (raw: its tie order at the k-th distance is arbitrary);
- padhash's other backends (``faiss`` with the exact tie fix-up, ``torch`` float matmul + topk);
- a per-query numpy loop in the style of DeepHash-pytorch's ``CalcTopMap`` (search + mAP), run as numpy
  dispatches it and, where the CPU has AVX-512, once more in a fresh Python with numpy's AVX-512 kernels off
  (numpy's AVX-512 argsort is several times slower than its AVX2 one on some CPUs); a ratio against each;
then prints the ratios and a scaling table over database size and code length (padhash vs FAISS search).
Times are the best of ``--repeats`` runs after a warm-up (the first call's JIT compile / cache load is reported
separately). Threads: torch, numba and FAISS use every core unless ``--threads`` says otherwise.

    .venv/bin/python benchmarks/retrieval.py            # the issue's measurement: 10k x 50k, 64 bits, top-1000
    .venv/bin/python benchmarks/retrieval.py --quick    # small sizes, seconds
    .venv/bin/python benchmarks/retrieval.py --avx2 --no-scaling    # as an AVX2-only CPU would run it
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def numpy_avx512_features() -> list[str]:
    """The AVX-512 feature groups numpy dispatches to on this CPU (empty where it has none or does not say)."""
    try:
        from numpy._core._multiarray_umath import __cpu_features__
    except ImportError:
        return []
    return [name for name, on in __cpu_features__.items() if on and (name.startswith("AVX512") or name == "X86_V4")]


# An AVX2-only CPU, emulated on an AVX-512 one: numba compiles for Haswell, numpy / FAISS / torch skip AVX-512.
HASWELL_FEATURES = ("+64bit,+avx,+avx2,+bmi,+bmi2,+cmov,+cx16,+f16c,+fma,+fxsr,+lzcnt,+mmx,+movbe,+popcnt,+sse,"
                    "+sse2,+sse3,+sse4.1,+sse4.2,+ssse3,+xsave,-avx512f,-avx512vpopcntdq,-avx512bw,-avx512vl,"
                    "-avx512dq,-avx512cd,-avx512bitalg,-avx512vbmi,-avx512vnni")


def reexec_as_avx2() -> None:
    """Run this script again in a fresh Python with the AVX2 emulation's settings (they are read at import)."""
    env = {**os.environ, "PADHASH_BENCH_AVX2": "1", "NUMBA_CPU_NAME": "haswell", "NUMBA_CPU_FEATURES": HASWELL_FEATURES,
           "NPY_DISABLE_CPU_FEATURES": " ".join(numpy_avx512_features()), "FAISS_OPT_LEVEL": "avx2",
           "ATEN_CPU_CAPABILITY": "avx2"}
    os.execve(sys.executable, [sys.executable, *sys.argv], env)


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--queries", type=int, default=10_000)
    ap.add_argument("--database", type=int, default=50_000)
    ap.add_argument("--bits", type=int, default=64)
    ap.add_argument("--topk", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=5, help="best of this many runs (slow baselines run once)")
    ap.add_argument("--index", default="auto", help="padhash backend to time: auto | numba | faiss | torch")
    ap.add_argument("--loop-queries", type=int, default=None,
                    help="run the CalcTopMap-style loop on this many queries and scale its time linearly "
                         "(default: all queries, no extrapolation)")
    ap.add_argument("--scaling-queries", type=int, default=1000)
    ap.add_argument("--scaling-databases", default="10000,100000,1000000")
    ap.add_argument("--scaling-bits", default="16,32,64,128")
    ap.add_argument("--no-scaling", action="store_true")
    ap.add_argument("--threads", type=int, default=None, help="threads for torch / numba / FAISS (default: all)")
    ap.add_argument("--quick", action="store_true", help="2k x 10k main run, small scaling table")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--avx2", action="store_true",
                    help="emulate an AVX2-only CPU: numba compiles for Haswell (byte-plane layout), numpy, FAISS and "
                         "torch leave their AVX-512 kernels out")
    args = ap.parse_args()
    for name in ("queries", "database", "bits", "topk", "repeats", "scaling_queries"):
        if getattr(args, name) < 1:
            ap.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.avx2 and os.environ.get("PADHASH_BENCH_AVX2") != "1":
        reexec_as_avx2()
    if args.quick:
        args.queries, args.database, args.repeats, args.loop_queries = 2000, 10_000, 2, 200
        args.scaling_queries, args.scaling_databases, args.scaling_bits = 200, "10000,100000", "32,64"
    return args


args = parse_args()
if args.threads is not None:  # numba and OpenMP read these at import
    os.environ["NUMBA_NUM_THREADS"] = os.environ["OMP_NUM_THREADS"] = str(args.threads)

import numba  # noqa: E402
import torch  # noqa: E402

from padhash.reports.common import markdown_table  # noqa: E402
from padhash.metrics import map_at_k, mean_average_precision  # noqa: E402
from padhash.retrieval import HammingIndex, pack_codes  # noqa: E402

from calc_top_map import calc_top_map_loop  # noqa: E402  (next to this script)

try:  # a padhash dependency; optional here so the padhash-only timings run where it is missing
    import faiss
except ImportError:
    faiss = None


def random_codes(rng: np.random.Generator, n: int, bits: int) -> torch.Tensor:
    return torch.from_numpy(rng.integers(0, 2, size=(n, bits), dtype=np.int8) * 2 - 1)


def best_time(fn, repeats: int):
    """(best wall seconds, last result) over ``repeats`` calls."""
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def loop_in_subprocess(loop_data: dict, env: dict) -> tuple[float, float]:
    """(seconds, mAP) of the CalcTopMap-style loop run by ``calc_top_map.py`` in a fresh Python with ``env`` added
    (numpy reads its CPU dispatch settings at import)."""
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "loop.npz"
        np.savez(data, **loop_data)
        result = subprocess.run([sys.executable, str(Path(__file__).with_name("calc_top_map.py")), str(data)],
                                env={**os.environ, **env}, capture_output=True, text=True, check=True)
    seconds, value = result.stdout.split()
    return float(seconds), float(value)


def faiss_flat(db_codes: torch.Tensor):
    packed = pack_codes(db_codes)
    index = faiss.IndexBinaryFlat(packed.shape[1] * 8)
    index.add(packed)
    return index


def fmt(seconds: float) -> str:
    return f"{seconds:.3f}"


def main_run(rng: np.random.Generator) -> None:
    q_codes = random_codes(rng, args.queries, args.bits)
    db_codes = random_codes(rng, args.database, args.bits)
    classes = 10
    q_labels = torch.nn.functional.one_hot(torch.from_numpy(rng.integers(0, classes, args.queries)), classes).float()
    db_labels = torch.nn.functional.one_hot(torch.from_numpy(rng.integers(0, classes, args.database)), classes).float()
    k = args.topk
    print(f"## {args.queries} queries x {args.database} database, {args.bits} bits, top-{k}\n")

    index = HammingIndex(db_codes, args.index)
    backend = index.resolve_backend(torch.device("cpu"))
    start = time.perf_counter()
    index.search(q_codes[:8], k)  # JIT compile or cache load, and the database packing
    first_call = time.perf_counter() - start
    t_search, (_, idx) = best_time(lambda: index.search(q_codes, k), args.repeats)
    t_map, _ = best_time(lambda: mean_average_precision(idx, q_labels, db_labels), args.repeats)

    def search_and_map():
        return mean_average_precision(index.search(q_codes, k)[1], q_labels, db_labels)

    t_search_map, our_map = best_time(search_and_map, args.repeats)
    # the same from codes and labels in one call, as the loop: each ranking scored where it is made, none kept
    # (database packing included)
    t_map_at_k, map_at_k_value = best_time(
        lambda: map_at_k(q_codes, db_codes, q_labels, db_labels, k, backend=args.index), args.repeats)

    rows = [
        [f"padhash search ({backend})", fmt(t_search), ""],
        ["padhash mAP@k from the ranking", fmt(t_map), ""],
        [f"padhash search + mAP@k ({backend})", fmt(t_search_map), f"mAP {our_map:.4f}"],
        [f"padhash map_at_k from codes and labels ({backend})", fmt(t_map_at_k), f"mAP {map_at_k_value:.4f}"],
    ]
    print(f"padhash done: search {t_search:.3f} s", flush=True)
    t_faiss = None
    if faiss is not None:
        flat = faiss_flat(db_codes)
        packed_q = pack_codes(q_codes)
        flat.search(packed_q[:8], k)
        t_faiss, _ = best_time(lambda: flat.search(packed_q, k), args.repeats)
        rows.append(["FAISS IndexBinaryFlat search (ties arbitrary)", fmt(t_faiss), ""])
        print(f"FAISS done: {t_faiss:.3f} s", flush=True)
    others = [b for b in ("faiss", "torch") if b != backend and (b != "faiss" or faiss is not None)]
    for other in others:
        other_index = HammingIndex(db_codes, other)
        other_index.search(q_codes[:8], k)
        t_other, (_, other_idx) = best_time(lambda: other_index.search(q_codes, k), 1)
        same = bool(torch.equal(other_idx, idx))
        rows.append([f"padhash search ({other})", fmt(t_other), f"identical ranking: {same}"])
        print(f"padhash {other} backend done: {t_other:.3f} s", flush=True)

    if torch.cuda.is_available():
        cuda_index, q_cuda = HammingIndex(db_codes.cuda(), "torch"), q_codes.cuda()

        def cuda_search():
            result = cuda_index.search(q_cuda, k)
            torch.cuda.synchronize()
            return result

        cuda_search()
        t_cuda, (_, cuda_idx) = best_time(cuda_search, args.repeats)
        same = bool(torch.equal(cuda_idx.cpu(), idx))
        rows.append([f"padhash search (torch, {torch.cuda.get_device_name()})", fmt(t_cuda),
                     f"identical ranking: {same}"])

    n_loop = args.loop_queries or args.queries
    loop_data = dict(q_codes=q_codes[:n_loop].float().numpy(), db_codes=db_codes.float().numpy(),
                     q_labels=q_labels[:n_loop].numpy(), db_labels=db_labels.numpy(), topk=k)
    t_loop, loop_map = best_time(lambda: calc_top_map_loop(**loop_data), 1)
    loops = {"numpy's CPU dispatch as set": (t_loop, loop_map)}
    # A second run with AVX-512 off, unless the environment already chose numpy's dispatch.
    avx512 = [] if os.environ.get("NPY_DISABLE_CPU_FEATURES") else numpy_avx512_features()
    if avx512:  # numpy's AVX-512 argsort is several times slower than its AVX2 one on some CPUs (AMD Zen 4)
        loops["numpy's AVX-512 kernels off"] = loop_in_subprocess(loop_data, {"NPY_DISABLE_CPU_FEATURES": " ".join(avx512)})
    scale = args.queries / n_loop
    for name, (seconds, value) in loops.items():
        note = f"mAP {value:.4f} (unstable tie order)"
        if n_loop < args.queries:
            note += f"; timed on {n_loop} queries, scaled x{scale:g}"
        rows.append([f"CalcTopMap-style numpy loop, search + mAP@k ({name})", fmt(seconds * scale), note])
    print(markdown_table(["what", "seconds", "note"], rows))
    print(f"\nfirst padhash call (JIT compile or cache load + packing the database): {first_call:.2f} s")
    if t_faiss is not None:
        print(f"search speed-up over FAISS flat: **{t_faiss / t_search:.1f}x** (goal >= 3x)")
    # map_at_k does what the loop does (codes and labels in, mAP out); the two-call form is in the table
    ratios = ", ".join(f"**{seconds * scale / t_map_at_k:.1f}x** ({name})" for name, (seconds, _) in loops.items())
    print(f"search + mAP@{k} (map_at_k) speed-up over the CalcTopMap loop: {ratios} (goal >= 90x)\n")


def scaling(rng: np.random.Generator) -> None:
    databases = [int(x) for x in args.scaling_databases.split(",")]
    bit_lengths = [int(x) for x in args.scaling_bits.split(",")]
    n_q, k = args.scaling_queries, args.topk
    print(f"## Scaling: {n_q} queries, top-{k}, search only (seconds, best of {args.repeats})\n")
    rows = []
    for n_db in databases:
        for bits in bit_lengths:
            q_codes, db_codes = random_codes(rng, n_q, bits), random_codes(rng, n_db, bits)
            index = HammingIndex(db_codes, args.index)
            index.search(q_codes[:8], k)
            t_ours, _ = best_time(lambda: index.search(q_codes, k), args.repeats)
            row = [f"{n_db:,}", bits, fmt(t_ours), "-", "-"]
            if faiss is not None:
                flat, packed_q = faiss_flat(db_codes), pack_codes(q_codes)
                t_faiss, _ = best_time(lambda: flat.search(packed_q, k), args.repeats)
                row[3:] = [fmt(t_faiss), f"{t_faiss / t_ours:.1f}x"]
                del flat
            rows.append(row)
            print(f"  {n_db} x {bits} bits done", flush=True)
            del index, db_codes
    print()
    print(markdown_table(["database", "bits", "padhash", "FAISS flat", "speed-up"], rows))


def main() -> None:
    load = os.getloadavg()
    if os.environ.get("PADHASH_BENCH_AVX2") == "1":
        print("emulating an AVX2-only CPU (numba for Haswell; numpy, FAISS, torch without AVX-512)")
    print(f"threads: torch {torch.get_num_threads()}, numba {numba.get_num_threads()}, "
          f"FAISS {faiss.omp_get_max_threads() if faiss else 'not installed'}; cores {os.cpu_count()}; "
          f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}\n")
    rng = np.random.default_rng(args.seed)
    main_run(rng)
    if not args.no_scaling:
        scaling(rng)


if __name__ == "__main__":
    main()
