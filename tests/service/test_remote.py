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


DHTA_CONFIG = """\
data: {name: digits}
victim: {method: csq, bits: 16, backbone: smallcnn, epochs: 5, hflip: false}
attack: {eps: 0.0627, steps: 50}
queries: 6
n_t: 3
methods: [none, noise, dhta]
remote: {query_budget: 10, results_per_query: 40}
"""
TRANSFER_CONFIG = """\
data: {name: digits}
surrogates: [{method: dpsh, bits: 16, backbone: smallcnn, epochs: 1, hflip: false}]
attack: {steps: 8}
pairs: 4
pair_selection: [random]
remote: {query_budget: 10, results_per_query: 40}
"""


@pytest.mark.slow
def test_dhta_and_transfer_over_http(victim_run, tmp_path, capsys):
    server = Server(victim_run, tmp_path / "service")
    try:
        for name, text in (("dhta", DHTA_CONFIG), ("transfer", TRANSFER_CONFIG)):
            (tmp_path / f"{name}.yaml").write_text(text)
            assert main(["attack", name, "--victim-url", server.url, "--config", str(tmp_path / f"{name}.yaml"),
                         "--out", str(tmp_path / name), "--no-progress"]) == 0
        health = __import__("httpx").get(server.url + "/health").json()
    finally:
        server.stop()
    assert health["items"] == 1618 and health["generation"] == 0  # queries only: nothing uploaded, no retrain
    dhta = json.loads((tmp_path / "dhta" / "results.json").read_text())
    remote = dhta["remote"]
    assert remote["stealing_queries"] == 10 and remote["items_stolen"] >= 40
    assert remote["queries_spent"] == 10 + 3 * 6 and remote["requests"]["image"] == remote["items_stolen"]
    by_method = {t["method"]: t for t in dhta["trials"]}
    assert set(by_method) == {"none", "noise", "dhta"}
    # the attacker's images are 8-bit before crafting, so the clean query is sent unchanged
    assert by_method["none"]["linf"] == 0 and 0 < by_method["dhta"]["linf"] <= 0.0627 + 0.5 / 255
    for t in by_method.values():
        assert 0 <= t["t_map"] <= 1 and 0 <= t["map"] <= 1 and t["topk"] == 100 and t["queries"] == 6
    assert by_method["dhta"]["surrogate_t_map"] > by_method["none"]["surrogate_t_map"]  # it did attack the surrogate
    transfer = json.loads((tmp_path / "transfer" / "results.json").read_text())
    methods = {t["method"] for t in transfer["trials"]}
    assert methods == {f"{m}@pairs=random" for m in ("none", "pgd", "di", "transfer")}
    assert all(0 <= t["transfer_rate"] <= 1 for t in transfer["trials"])
    out = capsys.readouterr().out
    assert "t-MAP" in out and "transfer_rate" in out and "queries spent" in out


def test_query_attacks_refuse_the_ceilings_over_http(tmp_path, capsys):
    (tmp_path / "c.yaml").write_text("methods: [none, anchor]\n")
    assert main(["attack", "dhta", "--victim-url", "http://127.0.0.1:9", "--config", str(tmp_path / "c.yaml"),
                 "--out", str(tmp_path / "o")]) == 2
    assert "anchor need the victim's codes" in capsys.readouterr().err
    (tmp_path / "t.yaml").write_text("methods: [none, white_box]\n")
    assert main(["attack", "transfer", "--victim-url", "http://127.0.0.1:9", "--config", str(tmp_path / "t.yaml"),
                 "--out", str(tmp_path / "o")]) == 2
