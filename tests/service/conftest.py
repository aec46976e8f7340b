"""A tiny victim run (digits, 1 epoch, 16 bits) and `padhash serve` subprocesses on free loopback ports."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

SRC = str(Path(__file__).resolve().parents[2] / "src")
TOKENS = {"PADHASH_INGEST_TOKEN": "ingest-secret", "PADHASH_ADMIN_TOKEN": "admin-secret"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`padhash serve RUN` in a subprocess; `url`, `stop()`, `kill()` (SIGKILL, as a crash)."""

    def __init__(self, run: Path, state: Path, *args: str, startup_timeout: float = 600):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, **TOKENS, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", ""),
               "OMP_NUM_THREADS": "1"}
        self.log = open(state.parent / f"serve-{self.port}.log", "w")
        self.proc = subprocess.Popen([sys.executable, "-m", "padhash", "serve", str(run), "--port", str(self.port),
                                      "--state", str(state), *args], env=env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + startup_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {Path(self.log.name).read_text()}")
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.3)
        self.kill()
        raise RuntimeError("server did not come up")

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.kill()
        self.log.close()


@pytest.fixture(scope="session")
def victim_run(tmp_path_factory) -> Path:
    from padhash.data import DataConfig
    from padhash.experiments.retrieval import RetrievalConfig, run_training
    from padhash.hashing import TrainConfig

    out = tmp_path_factory.mktemp("victim")
    cfg = RetrievalConfig(data=DataConfig(name="digits"),
                          train=TrainConfig(method="csq", bits=16, backbone="smallcnn", epochs=1, hflip=False))
    run_training(cfg, out, progress=False)
    return out


@pytest.fixture(scope="module")
def server(victim_run, tmp_path_factory):
    state = tmp_path_factory.mktemp("state") / "service"
    # ties by id: the API tests find a known item among its many equal-distance neighbours (test_ties: random)
    srv = Server(victim_run, state, "--max-upload-bytes", "200000", "--max-pixels", "1000000",
                 "--search-rate", "5", "--search-burst", "10", "--ties", "oldest")
    yield srv
    srv.stop()
