"""Search load on a local `padhash serve`: requests/s and p50/p99 latency at 1, 8 and 32 concurrent clients.

Starts the service on a free 127.0.0.1 port over RUN (or over a 1-epoch digits victim trained into a temp
folder), with the rate limit lifted, then runs each concurrency level for at most --requests searches or
--seconds, whichever comes first. Each client is a thread with its own HTTP connection; a request is a PNG upload
of a database image and the top-40 answer. Loopback only; nothing else is contacted.

    python benchmarks/service.py [--run RUN] [--clients 1 8 32] [--requests 400] [--seconds 30]
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tiny_run(folder: Path) -> Path:
    from padhash.data import DataConfig
    from padhash.experiments.retrieval import RetrievalConfig, run_training
    from padhash.hashing import TrainConfig

    cfg = RetrievalConfig(data=DataConfig(name="digits"),
                          train=TrainConfig(method="csq", bits=32, backbone="smallcnn", epochs=1, hflip=False))
    run_training(cfg, folder, progress=False)
    return folder


def level(url: str, bodies: list[bytes], clients: int, requests: int, seconds: float) -> dict:
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    deadline = time.monotonic() + seconds
    counter = iter(range(requests))

    def client(i: int) -> None:
        with httpx.Client(base_url=url, timeout=60) as http:
            while time.monotonic() < deadline:
                with lock:
                    n = next(counter, None)
                if n is None:
                    return
                start = time.perf_counter()
                r = http.post("/search", files={"file": ("q.png", bodies[n % len(bodies)], "image/png")},
                              params={"k": 40})
                elapsed = time.perf_counter() - start
                with lock:
                    if r.status_code == 200:
                        latencies.append(elapsed)
                    else:
                        errors[0] += 1

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    ms = np.asarray(latencies) * 1000
    return {"clients": clients, "requests": len(latencies), "errors": errors[0], "seconds": round(wall, 2),
            "rps": round(len(latencies) / wall, 1), "p50_ms": round(float(np.percentile(ms, 50)), 1),
            "p99_ms": round(float(np.percentile(ms, 99)), 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, help="a `padhash train` run (default: train a 1-epoch digits victim)")
    ap.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--requests", type=int, default=400, help="most searches per level")
    ap.add_argument("--seconds", type=float, default=30.0, help="most seconds per level")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run = args.run or tiny_run(Path(tmp) / "run")
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        server = subprocess.Popen(
            [sys.executable, "-m", "padhash", "serve", str(run), "--port", str(port), "--state", str(Path(tmp) / "state"),
             "--search-rate", "1e9", "--search-burst", "1000000000"],
            env={**os.environ, "PADHASH_INGEST_TOKEN": "bench", "PADHASH_ADMIN_TOKEN": "bench"},
            stdout=subprocess.DEVNULL)
        try:
            for _ in range(600):
                try:
                    if httpx.get(url + "/health", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.2)
            bodies = [httpx.get(f"{url}/items/{i}/image").content for i in range(0, 1600, 50)]
            level(url, bodies, 1, 20, 10)  # warm-up: first forward passes, connection set-up
            rows = [level(url, bodies, c, args.requests, args.seconds) for c in args.clients]
        finally:
            server.terminate()
            server.wait(10)
    print(f"{'clients':>7} {'requests':>8} {'req/s':>7} {'p50 ms':>7} {'p99 ms':>7} {'errors':>6}")
    for r in rows:
        print(f"{r['clients']:>7} {r['requests']:>8} {r['rps']:>7} {r['p50_ms']:>7} {r['p99_ms']:>7} {r['errors']:>6}")
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
