"""The red-team loop over HTTP on the pretrained regime, where the attack succeeds: `padhash serve` over a frozen
ImageNet EfficientNet-Lite0 victim (the demo's recipe: CSQ 32 bits at 64 px) on the embedded digits, attacked by
`padhash attack padhash --victim-url` (steal, surrogate, craft, upload, retrain, query the trigger)."""
from __future__ import annotations

import copy
import json

import httpx
import pytest
import yaml

from padhash.cli import main
from padhash.experiments.poisoning_config import DEMO_CONFIG

from .conftest import TOKENS, Server


def _attack_config() -> dict:
    cfg = copy.deepcopy(DEMO_CONFIG)  # the demo's victim recipe is also the attacker's gray-box surrogate recipe
    cfg.update(methods=["none", "padhash", "label_flip"], pairs=1,
               remote={"query_budget": 40, "results_per_query": 40, "map_queries": 20})
    cfg["attack"]["steps"] = 50
    return cfg


@pytest.fixture(scope="module")
def pretrained_run(tmp_path_factory):
    from padhash.experiments.retrieval import config_from_dict, run_training

    out = tmp_path_factory.mktemp("pretrained-victim")
    run_training(config_from_dict({"data": DEMO_CONFIG["data"], "train": DEMO_CONFIG["victim"]}), out, progress=False)
    return out


@pytest.mark.slow
def test_padhash_over_http_succeeds_on_the_pretrained_victim(pretrained_run, tmp_path):
    config = tmp_path / "remote.yaml"
    config.write_text(yaml.safe_dump(_attack_config()))
    # default tie order: random (seeded per item)
    server = Server(pretrained_run, tmp_path / "service")
    try:
        assert main(["attack", "padhash", "--victim-url", server.url, "--config", str(config), "--out",
                     str(tmp_path / "out"), "--ingest-token", TOKENS["PADHASH_INGEST_TOKEN"],
                     "--admin-token", TOKENS["PADHASH_ADMIN_TOKEN"], "--no-progress"]) == 0
        health = httpx.get(server.url + "/health").json()
    finally:
        server.stop()
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    asr = {m: a["asr"]["mean"] for m, a in results["aggregates"].items()}
    print("ASR", asr, "MAP*", {m: a["map_poisoned"]["mean"] for m, a in results["aggregates"].items()},
          "remote", {k: v for k, v in results["remote"].items() if k != "service_after"})
    assert health["items"] == 1618 + 32 and health["generation"] == 2
    assert asr["none"] == 0
    assert asr["label_flip"] > 0 and asr["padhash"] > 0  # the ceiling and the clean-label attack both succeed
    assert results["aggregates"]["padhash"]["map_poisoned"]["mean"] > 0.8  # MAP* barely moves: a stealthy attack
