"""The HTTP API of the victim retrieval service (FastAPI): search, items, ingestion, retraining, health.

Security model: ingestion and admin each need their own bearer token (`Authorization: Bearer T`); search needs
one only when `search_token` is set. A missing token is 401, a wrong one 403, compared in constant time. Request
bodies are cut off at `max_upload_bytes` plus the multipart framing (413) before they are spooled anywhere, the
file part itself is read to at most limit+1 bytes, and images are checked by `decode_upload` (PNG/JPEG only,
pixel limit from the header). Search is rate-limited per client host by a token bucket (429 + Retry-After).
"""
from __future__ import annotations

import hmac
import io
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from fastapi import Depends, FastAPI, File, Form, HTTPException, Query, Request, UploadFile
from fastapi.responses import JSONResponse, Response
from PIL import Image
from starlette.concurrency import run_in_threadpool

from padhash.errors import PadhashError
from padhash.service.engine import RetrievalEngine
from padhash.service.images import ImageRejected, decode_upload

FORM_OVERHEAD = 64 * 1024  # multipart boundaries, headers and the tags field around the file part


@dataclass
class Settings:
    topk: int = 40                    # results per search when the client names no k
    max_topk: int = 100               # the most results one search returns
    ingest_token: str | None = None   # None = a random one is generated (create_app's caller prints it)
    admin_token: str | None = None
    search_token: str | None = None   # None = search is open
    max_upload_bytes: int = 4 * 1024 * 1024
    max_pixels: int = 16_000_000      # width × height of an upload, checked before decoding
    search_rate: float = 50.0         # search requests per second per client host (token refill rate)
    search_burst: int = 100           # bucket size: requests a client may make at once
    state_dir: Path | None = None     # None = RUN/service
    device: str = "cpu"
    threads: int = 1                  # numba threads per search (torch's are process-wide: the CLI sets them)
    ties: str = "random"              # order of items at equal distance: random (seeded per item) | oldest (by id)


class TokenBucket:
    """Per-key token buckets; the key table is bounded so a flood of client addresses cannot grow it forever."""

    def __init__(self, rate: float, burst: int, max_keys: int = 10_000):
        self.rate, self.burst, self.max_keys = rate, burst, max_keys
        self.buckets: dict[str, tuple[float, float]] = {}
        self.lock = threading.Lock()

    def take(self, key: str) -> float:
        """0 when a request may go now, else the seconds until one token is there."""
        now = time.monotonic()
        with self.lock:
            tokens, last = self.buckets.pop(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - last) * self.rate)
            wait = 0.0 if tokens >= 1 else (1 - tokens) / self.rate
            self.buckets[key] = (tokens - 1 if wait == 0 else tokens, now)  # re-inserted: dict order = recency
            if len(self.buckets) > self.max_keys:
                self.buckets.pop(next(iter(self.buckets)))
        return wait


class BodyLimit:
    """ASGI middleware: refuse a request body over `max_bytes` (by Content-Length, or counted as it streams: the
    413 goes out at once and the app sees a disconnect, so nothing past the limit is read or spooled)."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length", b"")
        if length.isdigit() and int(length) > self.max_bytes:
            return await self._reject(send)
        received, started, rejected = 0, False, False

        async def limited_receive():
            nonlocal received, rejected
            if rejected:
                return {"type": "http.disconnect"}
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                rejected = True
                if not started:
                    await self._reject(send)
                return {"type": "http.disconnect"}
            return message

        async def tracked_send(message):
            nonlocal started
            if rejected:
                return  # the 413 has been sent; the app's own answer to the disconnect is dropped
            started = started or message["type"] == "http.response.start"
            await send(message)

        await self.app(scope, limited_receive, tracked_send)

    @staticmethod
    async def _reject(send):
        await JSONResponse({"detail": "request body too large"}, status_code=413)({"type": "http"}, None, send)


def _token_check(expected: str | None, what: str):
    def check(request: Request) -> None:
        if expected is None:
            return
        header = request.headers.get("authorization", "")
        if not header.startswith("Bearer ") or not header[7:]:
            raise HTTPException(401, f"{what} token required", headers={"WWW-Authenticate": "Bearer"})
        if not hmac.compare_digest(header[7:].encode(), expected.encode()):
            raise HTTPException(403, f"wrong {what} token")
    return check


def create_app(run_dir: str | Path, settings: Settings | None = None) -> FastAPI:
    """The service over a `padhash train` run. Unset ingest/admin tokens are generated: read them from
    `app.state.tokens`."""
    settings = settings or Settings()
    if not 1 <= settings.topk <= settings.max_topk:
        raise PadhashError(f"--topk must be in 1..{settings.max_topk}, got {settings.topk}")
    tokens = {"ingest": settings.ingest_token or secrets.token_urlsafe(24),
              "admin": settings.admin_token or secrets.token_urlsafe(24), "search": settings.search_token}
    engine = RetrievalEngine(Path(run_dir), settings.state_dir, settings.device, settings.threads, settings.ties)
    limiter = TokenBucket(settings.search_rate, settings.search_burst)
    app = FastAPI(title="padhash retrieval service", version="1",
                  description="Deep-hashing image search over a padhash victim run (the red-team target).")
    app.state.engine, app.state.tokens, app.state.settings = engine, tokens, settings
    app.add_middleware(BodyLimit, max_bytes=settings.max_upload_bytes + FORM_OVERHEAD)
    need_ingest = Depends(_token_check(tokens["ingest"], "ingest"))
    need_admin = Depends(_token_check(tokens["admin"], "admin"))
    search_auth = _token_check(tokens["search"], "search")

    async def read_image(file: UploadFile):
        data = await file.read(settings.max_upload_bytes + 1)
        if len(data) > settings.max_upload_bytes:
            raise HTTPException(413, f"upload exceeds {settings.max_upload_bytes} bytes")
        try:
            return await run_in_threadpool(decode_upload, data, engine.image_size, settings.max_pixels)
        except ImageRejected as exc:
            raise HTTPException(exc.status, str(exc)) from None

    def item_json(item_id: int, **extra) -> dict:
        return {"id": item_id, **extra, "tags": engine.item_tags(item_id), "image_url": f"/items/{item_id}/image"}

    @app.get("/health")
    def health() -> dict:
        snap = engine.snapshot
        return {"status": "ok", "items": len(snap.codes), "generation": snap.generation,
                "bits": int(snap.codes.shape[1]), "image_size": engine.image_size, "max_topk": settings.max_topk}

    @app.get("/tags")
    def tags() -> dict:
        return {"tags": engine.tags}

    @app.post("/search")
    async def search(request: Request, file: UploadFile = File(...),
                     k: int = Query(settings.topk, ge=1, le=settings.max_topk)) -> dict:
        wait = limiter.take(request.client.host if request.client else "unknown")
        if wait:
            raise HTTPException(429, "search rate limit exceeded", headers={"Retry-After": f"{max(1, round(wait))}"})
        search_auth(request)
        image = await read_image(file)
        generation, hits = await run_in_threadpool(engine.search, image, k)
        return {"generation": generation, "results": [item_json(i, distance=d) for i, d in hits]}

    @app.get("/items/{item_id}")
    def item(item_id: int) -> dict:
        if engine.item_tags(item_id) is None:
            raise HTTPException(404, "no such item")
        return item_json(item_id)

    @app.get("/items/{item_id}/image", response_class=Response,
             responses={200: {"content": {"image/png": {}}}})
    def item_image(item_id: int) -> Response:
        if engine.item_tags(item_id) is None:
            raise HTTPException(404, "no such item")
        out = io.BytesIO()
        Image.fromarray(engine.item_pixels(item_id)).save(out, format="PNG")
        return Response(out.getvalue(), media_type="image/png")

    @app.post("/items", status_code=201, dependencies=[need_ingest])
    async def ingest(file: UploadFile = File(...), tags: str = Form(..., description="comma-separated tags")) -> dict:
        try:
            labels = engine.labels_of([t.strip() for t in tags.split(",") if t.strip()])
        except PadhashError as exc:
            raise HTTPException(422, str(exc)) from None
        image = await read_image(file)
        item_id = await run_in_threadpool(engine.ingest, image, labels)
        return item_json(item_id)

    @app.post("/admin/retrain", status_code=202, dependencies=[need_admin])
    def retrain() -> dict:
        return engine.start_retrain()

    @app.get("/admin/retrain/{job_id}", dependencies=[need_admin])
    def retrain_status(job_id: str) -> dict:
        job = engine.job(job_id)
        if job is None:
            raise HTTPException(404, "no such job")
        return job

    return app
