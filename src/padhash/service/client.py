"""The attacker's (or any user's) client of the retrieval service: httpx, images as [0,1] tensors in and out.

Every call counts toward `spent` (per endpoint), which experiments report as the attack's query cost. A 429 is
waited out (its Retry-After) and retried, up to `max_wait` seconds per call; other failures are PadhashError.
"""
from __future__ import annotations

import io
import time
from collections import Counter

import httpx
import torch
from PIL import Image, UnidentifiedImageError

from padhash.errors import PadhashError
from padhash.service.images import encode_png


class ServiceClient:
    def __init__(self, url: str, *, ingest_token: str | None = None, admin_token: str | None = None,
                 search_token: str | None = None, timeout: float = 60.0, max_wait: float = 120.0):
        self.url = url.rstrip("/")
        self.tokens = {"ingest": ingest_token, "admin": admin_token, "search": search_token}
        self.http = httpx.Client(base_url=self.url, timeout=timeout)
        self.max_wait = max_wait
        self.spent: Counter[str] = Counter()

    def close(self) -> None:
        self.http.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _call(self, what: str, method: str, path: str, token: str | None = None, **kwargs) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.tokens[token]}"} if token and self.tokens[token] else {}
        deadline = time.monotonic() + self.max_wait
        while True:
            try:
                response = self.http.request(method, path, headers=headers, **kwargs)
            except httpx.HTTPError as exc:
                raise PadhashError(f"{self.url}{path}: {type(exc).__name__} ({exc})") from None
            self.spent[what] += 1
            if response.status_code != 429 or time.monotonic() > deadline:
                break
            time.sleep(float(response.headers.get("retry-after", "1")))
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail")
            except ValueError:
                detail = response.text[:200]
            raise PadhashError(f"{method} {self.url}{path}: HTTP {response.status_code} ({detail})")
        return response

    def health(self) -> dict:
        return self._call("health", "GET", "/health").json()

    def tags(self) -> list[str]:
        return self._call("tags", "GET", "/tags").json()["tags"]

    def search(self, image: torch.Tensor, k: int | None = None) -> list[dict]:
        """Top-k items for one [0,1] (3, H, W) image: dicts with id, distance, tags, image_url."""
        params = {"k": k} if k is not None else {}
        files = {"file": ("query.png", encode_png(image), "image/png")}
        return self._call("search", "POST", "/search", "search", files=files, params=params).json()["results"]

    def item(self, item_id: int) -> dict:
        return self._call("item", "GET", f"/items/{int(item_id)}").json()

    def image(self, item_id: int) -> torch.Tensor:
        data = self._call("image", "GET", f"/items/{int(item_id)}/image").content
        try:
            with Image.open(io.BytesIO(data)) as img:
                pixels = torch.frombuffer(bytearray(img.convert("RGB").tobytes()), dtype=torch.uint8)
                w, h = img.size
        except (UnidentifiedImageError, OSError) as exc:
            raise PadhashError(f"{self.url}/items/{item_id}/image: not an image ({exc})") from None
        return pixels.view(h, w, 3).permute(2, 0, 1).float().div_(255.0)

    def ingest(self, image: torch.Tensor, tags: list[str]) -> dict:
        """Upload one image (PNG, lossless) with its tags; returns the new item (id, tags, image_url)."""
        files = {"file": ("item.png", encode_png(image), "image/png")}
        return self._call("ingest", "POST", "/items", "ingest", files=files, data={"tags": ",".join(tags)}).json()

    def retrain(self) -> dict:
        return self._call("retrain", "POST", "/admin/retrain", "admin").json()

    def retrain_status(self, job: str) -> dict:
        return self._call("retrain_status", "GET", f"/admin/retrain/{job}", "admin").json()

    def wait_retrain(self, job: str, timeout: float = 3600.0, poll: float = 0.5) -> dict:
        """Poll a retrain job until it is done (its status), or PadhashError when it fails or takes too long."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.retrain_status(job)
            if status["state"] == "done":
                return status
            if status["state"] in ("failed", "interrupted"):
                raise PadhashError(f"retrain job {job} {status['state']}: {status.get('error')}")
            time.sleep(poll)
        raise PadhashError(f"retrain job {job} not done after {timeout:.0f} s")
