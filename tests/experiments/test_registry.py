"""The method registry: the single source of the CLI's commands, the ladders, the report labels; a user's attack
in one file outside src/ runs end to end through `padhash attack`."""
from pathlib import Path

import pytest
import yaml

from padhash import registry
from padhash.cli import main
from padhash.errors import PadhashError

TOY = Path(__file__).with_name("toy_attack.py")


@pytest.fixture
def toy_unregistered():
    """Leaves the registry as it was: the toy plug-in registers itself into the process-wide registry."""
    yield
    registry._METHODS.pop(("query", "toy"), None)


def test_ladders_come_from_the_registry():
    assert registry.ladder("poisoning", "padhash") == ["none", "witches_brew", "padhash", "label_flip"]
    assert registry.ladder("poisoning", "witches_brew") == ["none", "witches_brew", "label_flip"]
    assert registry.ladder("poisoning", "label_flip") == ["none", "label_flip"]
    assert registry.ladder("backdoor", "ciba") == ["none", "tri", "tri_noise", "tri_adv", "ciba", "label_flip"]
    assert registry.ladder("backdoor", "tri_adv") == ["none", "tri_adv", "label_flip"]
    assert registry.ladder("query", "dhta") == ["none", "noise", "p2p", "dhta", "hag", "anchor"]
    assert registry.ladder("query", "p2p") == ["none", "p2p", "anchor"]
    assert registry.ladder("transfer", "transfer") == ["none", "pgd", "di", "transfer", "white_box"]


def test_family_configs_and_reports_read_the_registry():
    from padhash.attacks.backdoor import BACKDOOR_METHODS
    from padhash.experiments import backdoor_config, poisoning_config
    from padhash.reports import backdoor as backdoor_report, poisoning as poisoning_report

    assert poisoning_config.METHODS == registry.names("poisoning") == poisoning_report.LADDER
    assert poisoning_config.CRAFTED == ("witches_brew", "padhash")
    assert [m.name for m in registry.methods("backdoor") if m.role == "attack"] == list(BACKDOOR_METHODS)
    assert backdoor_config.METHODS == registry.names("backdoor")
    assert backdoor_report.ROW_NAMES["ciba"] == registry.label("backdoor", "ciba") == "CIBA"
    assert registry.label("query", "gone_plugin") == "gone_plugin"  # a report of a plug-in no longer loaded


def test_registering_twice_or_badly_is_refused():
    with pytest.raises(PadhashError, match="already registered"):
        registry.register_method(name="dhta", family="query", role="attack", label="another DHTA")
    with pytest.raises(PadhashError, match="role"):
        registry.register_method(name="x", family="query", role="boss", label="X")
    with pytest.raises(PadhashError, match="unknown query method 'nope'"):
        registry.get("query", "nope")
    registry.register_method(registry.get("query", "dhta"))  # the same method again: a module imported twice


def test_unknown_plugin_is_one_line(capsys):
    assert main(["--plugin", "/nonexistent/toy.py", "attack", "dhta", "--out", "x"]) == 2
    assert "--plugin: /nonexistent/toy.py: no such plug-in file" in capsys.readouterr().err


@pytest.mark.slow
def test_toy_attack_in_one_file_runs_end_to_end(tmp_path, capsys, toy_unregistered):
    cfg = {"data": {"name": "digits", "image_size": 16, "options": {"train_per_class": 20}},
           "victim": {"epochs": 1, "bits": 16, "batch_size": 64}, "queries": 4, "n_t": 3,
           "options": {"toy": {"eps": 0.05}}, "eval": {"topk": 100, "grid_queries": 0}}
    path = tmp_path / "toy.yaml"
    path.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "run"
    assert main(["--plugin", str(TOY), "attack", "toy", "--config", str(path), "--out", str(out),
                 "--no-progress"]) == 0
    from padhash.records import ResultsFile

    results = ResultsFile.load(out)
    trials = {t["method"]: t for t in results["trials"]}
    assert list(trials) == list(results["aggregates"]) == ["none", "toy", "anchor"]  # the toy's ladder
    assert 0 < trials["toy"]["linf"] <= 0.05 + 1e-6 and trials["none"]["linf"] == 0
    assert trials["toy"]["queries"] == 4
    report = (out / "report.md").read_text()
    assert "Toy FGSM" in report  # the label it registered
    assert "Toy FGSM" in capsys.readouterr().out
    # its options are checked with the key path, before anything trains
    path.write_text(yaml.safe_dump({**cfg, "options": {"toy": {"eps": 2.0}}}))
    assert main(["attack", "toy", "--config", str(path), "--out", str(tmp_path / "bad")]) == 2
    assert "options.toy.eps" in capsys.readouterr().err
