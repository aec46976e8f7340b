"""Refused uploads (oversized, malformed, wrong format, decompression bomb), the search rate limit, and a kill -9
during ingestion that loses no acknowledged item."""
from __future__ import annotations

import io
import threading
import time

import httpx
import numpy as np
import torch
from PIL import Image

from padhash.service import ServiceClient

from .conftest import TOKENS, Server

HEADERS = {"Authorization": f"Bearer {TOKENS['PADHASH_INGEST_TOKEN']}"}


def _encoded(fmt: str, size=(32, 32), noise=False) -> bytes:
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8) if noise else np.zeros((size[1], size[0], 3), np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format=fmt)
    return out.getvalue()


def _search(server, data: bytes, name="q.png") -> int:
    return httpx.post(server.url + "/search", files={"file": (name, data, "image/png")}).status_code


def test_refused_uploads(server):
    assert _search(server, _encoded("PNG")) == 200
    assert _search(server, _encoded("JPEG")) == 200
    assert _search(server, _encoded("PNG", (300, 300), noise=True)) == 413   # 270 kB > --max-upload-bytes 200000
    assert _search(server, b"\x89PNG\r\n\x1a\n" + b"garbage" * 50) == 400   # malformed
    assert _search(server, _encoded("PNG")[:60]) == 400                      # truncated
    assert _search(server, _encoded("GIF"), name="q.png") == 415             # format from the bytes, not the name
    assert _search(server, _encoded("BMP")) == 415
    bomb = _encoded("PNG", (3000, 3000))                                      # 9 Mpx of zeros: ~30 kB compressed
    assert len(bomb) < 200000 and _search(server, bomb) == 413
    ingest = httpx.post(server.url + "/items", files={"file": ("b.png", bomb, "image/png")}, data={"tags": "1"},
                        headers=HEADERS)
    assert ingest.status_code == 413
    assert httpx.get(server.url + "/health").json()["status"] == "ok"


def test_burst_over_the_rate_limit_gets_429(server):
    time.sleep(2)  # let this client's bucket refill (burst 10, 5/s)
    data = _encoded("PNG")
    with httpx.Client(base_url=server.url) as http:
        codes = [http.post("/search", files={"file": ("q.png", data, "image/png")}).status_code for _ in range(80)]
        refused = [c for c in codes if c == 429]
        assert codes[0] == 200 and refused and set(codes) <= {200, 429}
        response = http.post("/search", files={"file": ("q.png", data, "image/png")})
        if response.status_code == 429:
            assert int(response.headers["retry-after"]) >= 1


def test_kill9_during_ingestion_keeps_every_acknowledged_item(victim_run, tmp_path):
    state = tmp_path / "service"
    server = Server(victim_run, state)
    acked: dict[int, tuple[torch.Tensor, str]] = {}
    stop = threading.Event()

    def ingest_forever():
        g = torch.Generator().manual_seed(0)
        with ServiceClient(server.url, ingest_token=TOKENS["PADHASH_INGEST_TOKEN"], max_wait=0) as client:
            while not stop.is_set():
                image, tag = torch.rand(3, 32, 32, generator=g), str(len(acked) % 10)
                try:
                    item = client.ingest(image, [tag])
                except Exception:  # the server died under us: this one was never acknowledged
                    return
                acked[item["id"]] = (image, tag)

    worker = threading.Thread(target=ingest_forever)
    worker.start()
    while len(acked) < 8 and worker.is_alive():
        time.sleep(0.05)
    server.kill()  # SIGKILL while the worker is mid-request
    stop.set()
    worker.join()
    assert len(acked) >= 8
    server = Server(victim_run, state)
    try:
        with ServiceClient(server.url) as client:
            assert client.health()["items"] >= 1618 + len(acked)
            for item_id, (image, tag) in acked.items():
                assert client.item(item_id)["tags"] == [tag]
                # stored as 8-bit: within half a grey level (+ float32 rounding at exact halves)
                assert (client.image(item_id) - image).abs().max() <= 0.5 / 255 + 1e-6
    finally:
        server.stop()
