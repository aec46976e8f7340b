"""The red-team loop end to end over HTTP: `padhash attack padhash --victim-url` against `padhash serve`."""
from __future__ import annotations

import json

import pytest

from padhash.cli import main

from .conftest import TOKENS, Server

CONFIG = """\
data: {name: digits}
victim: {method: csq, bits: 16, backbone: smallcnn, epochs: 1, hflip: false}
attack: {alpha: 0.2, eps: 16/255, steps: 5, poison_count: 4, flip: false}
methods: [none, padhash, label_flip]
pairs: 1
seeds: [0]
remote: {query_budget: 12, results_per_query: 40, map_queries: 20}
"""


@pytest.mark.slow
def test_attack_over_http_writes_results(victim_run, tmp_path, capsys):
    config = tmp_path / "remote.yaml"
    config.write_text(CONFIG)
    server = Server(victim_run, tmp_path / "service")
    try:
        code = main(["attack", "padhash", "--victim-url", server.url, "--config", str(config), "--out",
                     str(tmp_path / "out"), "--ingest-token", TOKENS["PADHASH_INGEST_TOKEN"],
                     "--admin-token", TOKENS["PADHASH_ADMIN_TOKEN"], "--no-progress"])
        assert code == 0
        health = __import__("httpx").get(server.url + "/health").json()
    finally:
        server.stop()
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    remote = results["remote"]
    assert remote["stealing_queries"] == 12 and remote["queries_spent"] > 12
    assert remote["items_stolen"] >= 40 and remote["requests"]["ingest"] == 8
    assert health["items"] == 1618 + 8 and health["generation"] == 2  # padhash and label_flip each retrained
    for method in ("none", "padhash", "label_flip"):
        agg = results["aggregates"][method]
        assert 0 <= agg["asr"]["mean"] <= 1 and 0 < agg["map"]["mean"] <= 1 and 0 < agg["map_poisoned"]["mean"] <= 1
    none = [t for t in results["trials"] if t["method"] == "none"][0]
    assert none["map_poisoned"] == none["map"] and none["poisons_in_service"] == 0
    assert "queries spent" in capsys.readouterr().out
    # no resume against a service that kept the uploads: refused before any request
    assert main(["attack", "padhash", "--victim-url", server.url, "--config", str(config),
                 "--out", str(tmp_path / "out")]) == 2
