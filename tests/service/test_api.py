"""The service's endpoints over real HTTP: search, items, ingestion, retraining, health, docs."""
from __future__ import annotations

import httpx
import pytest

from padhash.errors import PadhashError
from padhash.service import ServiceClient
from padhash.service.images import encode_png

from .conftest import TOKENS


@pytest.fixture
def client(server):
    with ServiceClient(server.url, ingest_token=TOKENS["PADHASH_INGEST_TOKEN"],
                       admin_token=TOKENS["PADHASH_ADMIN_TOKEN"]) as c:
        yield c


def test_health_tags_and_openapi(server, client):
    health = client.health()
    assert health["status"] == "ok" and health["items"] == 1618 and health["bits"] == 16
    assert client.tags() == [str(d) for d in range(10)]
    paths = httpx.get(server.url + "/openapi.json").json()["paths"]
    for path in ("/search", "/items", "/items/{item_id}", "/items/{item_id}/image", "/admin/retrain",
                 "/admin/retrain/{job_id}", "/health"):
        assert path in paths
    assert httpx.get(server.url + "/docs").status_code == 200


def test_search_returns_items_with_tags_and_images(client):
    image = client.image(7)
    item = client.item(7)
    results = client.search(image, k=10)
    assert len(results) == 10
    assert [r["distance"] for r in results] == sorted(r["distance"] for r in results)
    assert 7 in [r["id"] for r in results if r["distance"] == 0]
    top = results[0]
    assert top["image_url"] == f"/items/{top['id']}/image" and top["tags"] == client.item(top["id"])["tags"]
    assert item["tags"] == [r for r in results if r["id"] == 7][0]["tags"]
    with pytest.raises(PadhashError, match="404"):
        client.item(10**6)
    with pytest.raises(PadhashError, match="422"):
        client.search(image, k=101)  # over --max-topk


def test_ingest_makes_the_item_searchable(client):
    image = client.image(3).flip(-1)
    new = client.ingest(image, ["4"])
    assert new["tags"] == ["4"] and new["id"] >= 1618
    assert client.item(new["id"])["tags"] == ["4"]
    assert (client.image(new["id"]) - image).abs().max() <= 0.5 / 255 + 1e-6  # PNG in, 8-bit pixels stored (+ float32 rounding)
    hits = client.search(image, k=50)
    assert new["id"] in [h["id"] for h in hits if h["distance"] == 0]
    with pytest.raises(PadhashError, match="422"):
        client.ingest(image, ["not-a-tag"])


def test_tokens_missing_401_wrong_403(server):
    png = encode_png(__import__("torch").rand(3, 32, 32))
    files = {"file": ("x.png", png, "image/png")}
    assert httpx.post(server.url + "/items", files=files, data={"tags": "1"}).status_code == 401
    bearer = lambda t: {"Authorization": f"Bearer {t}"}  # noqa: E731
    assert httpx.post(server.url + "/items", files=files, data={"tags": "1"}, headers=bearer("nope")).status_code == 403
    admin = TOKENS["PADHASH_ADMIN_TOKEN"]
    assert httpx.post(server.url + "/items", files=files, data={"tags": "1"}, headers=bearer(admin)).status_code == 403
    assert httpx.post(server.url + "/admin/retrain").status_code == 401
    assert httpx.post(server.url + "/admin/retrain", headers=bearer("nope")).status_code == 403
    assert httpx.get(server.url + "/admin/retrain/abc", headers=bearer("nope")).status_code == 403
    assert httpx.get(server.url + "/admin/retrain/abc", headers=bearer(admin)).status_code == 404


def test_retrain_swaps_model_and_codes(client):
    before = client.health()
    job = client.retrain()
    assert job["state"] in ("queued", "running") and job["items"] == before["items"]
    status = client.wait_retrain(job["job"], timeout=120)
    after = client.health()
    assert status["generation"] == after["generation"] == before["generation"] + 1
    assert after["items"] == before["items"]
    image = client.image(11)
    assert 11 in [r["id"] for r in client.search(image, k=100) if r["distance"] == 0]
