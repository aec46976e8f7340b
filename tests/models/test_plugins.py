"""A backbone added in one file outside src/, registered through the public registry, trains through the CLI."""
import json
import textwrap

import pytest

from padhash.cli import main
from padhash.errors import PadhashError
from padhash.plugins import load_plugins

TOY = textwrap.dedent('''
    from torch import nn
    from padhash.models import Backbone, register_backbone

    @register_backbone("toy_mlp")
    def toy_mlp(weights):
        net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 64), nn.ReLU())
        return Backbone(net, feature_dim=64, stages=[net])
''')


def test_a_plugin_backbone_trains_end_to_end(tmp_path, monkeypatch, capsys):
    plugin = tmp_path / "toy_backbone.py"
    plugin.write_text(TOY)
    monkeypatch.setenv("PADHASH_PLUGINS", str(plugin))
    out = tmp_path / "run"
    rc = main(["train", "--dataset", "digits", "--backbone", "toy_mlp", "--bits", "16", "--epochs", "2",
               "--out", str(out), "--no-progress"])
    assert rc == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["backbone"] == "toy_mlp" and metrics["map"] > metrics["map_random_codes"]
    assert main(["eval", str(out)]) == 0  # the run loads again (the plug-in registered once)


def test_bad_plugins_are_one_line_errors(tmp_path, capsys):
    with pytest.raises(PadhashError, match="no such plug-in file"):
        load_plugins(str(tmp_path / "missing.py"))
    with pytest.raises(PadhashError, match="cannot import plug-in module"):
        load_plugins("no_such_padhash_plugin_module")
    broken = tmp_path / "broken.py"
    broken.write_text("def (:\n")
    with pytest.raises(PadhashError, match="not valid Python"):
        load_plugins(str(broken))
