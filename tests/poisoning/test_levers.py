"""The poisoning study levers (each off by default): a public model on a disjoint part, checkpoint-ensemble
surrogates, and projecting the clean target-class gradient out before matching."""
import pytest
import torch

from padhash.attacks.poisoning import CraftConfig, craft_poisons, gradient_cosine, parameter_gradient
from padhash.attacks.poisoning.matching import project_out
from padhash.config import to_dict
from padhash.errors import PadhashError
from padhash.experiments import poisoning
from padhash.io import load_tensors
from tests.poisoning.helpers import CentreLoss, TinyHashNet, tiny_config


def _cfg(npz, **over):
    return poisoning.config_from_dict(tiny_config(npz, **over))


def test_project_out_leaves_nothing_along_the_removed_direction():
    direction = [torch.tensor([[1.0, 0.0], [0.0, 0.0]]), torch.tensor([1.0, 0.0])]  # spans two parameters
    grads = [torch.tensor([[3.0, 2.0], [0.0, 5.0]]), torch.tensor([1.0, -1.0])]
    out = project_out(grads, direction)
    # g·d = 4, d·d = 2: remove 2·d
    assert torch.equal(out[0], torch.tensor([[1.0, 2.0], [0.0, 5.0]])) and torch.equal(out[1], torch.tensor([-1.0, -1.0]))
    assert float(sum((o * d).sum() for o, d in zip(out, direction))) == 0.0
    assert all(torch.equal(a, b) for a, b in zip(project_out(grads, [torch.zeros(2, 2), torch.zeros(2)]), grads))


def test_target_mean_projection_changes_what_is_matched_only():
    torch.manual_seed(0)
    model, loss = TinyHashNet().eval(), CentreLoss(num_classes=3, bits=8)
    g = torch.Generator().manual_seed(0)
    bases, trigger = torch.rand(6, 3, 8, 8, generator=g), torch.rand(1, 3, 8, 8, generator=g)
    labels = torch.zeros(6, 3)
    labels[:, 2] = 1
    params = list(model.parameters())
    removed = parameter_gradient(model, loss, bases, labels, params)  # the clean target-class mean gradient
    g_v = parameter_gradient(model, loss, trigger, labels[:1], params)
    assert abs(float(gradient_cosine(project_out(g_v, removed), removed))) < 1e-5
    results = {}
    for mode in ("none", "target_mean"):
        cfg = CraftConfig(steps=5, augment=False, project_out=mode)
        results[mode] = craft_poisons([model], [loss], bases, labels, trigger, labels[0], cfg,
                                      generator=torch.Generator().manual_seed(1), progress=False)
    assert results["none"].grad_cosine_before == results["target_mean"].grad_cosine_before  # raw diagnostics
    assert not torch.equal(results["none"].poisons, results["target_mean"].poisons)
    with pytest.raises(PadhashError, match="project_out"):
        CraftConfig(project_out="mean").validate()


def test_checkpoint_ensemble_has_one_member_per_checkpoint(tiny_npz, tmp_path):
    cfg = _cfg(tiny_npz, surrogate={"stolen_fraction": 0.5, "checkpoints": [1, 3, 2]})
    run = poisoning.PoisoningRun(cfg, tmp_path, progress=False)
    models, losses = run.surrogates(cfg, 0)
    assert len(models) == 3 and all(loss is losses[0] for loss in losses)
    weights = [m.hash_layer.weight for m in models]
    assert not torch.equal(weights[0], weights[1]) and not torch.equal(weights[1], weights[2])
    # latest first: members[0] is the fully trained surrogate (3 = the victim's epochs)
    ckpt = next((tmp_path / "models").glob("surrogate-*/checkpoint.safetensors"))
    assert torch.equal(load_tensors(ckpt)["model.hash_layer.weight"], weights[0])
    with pytest.raises(PadhashError, match="checkpoints"):
        _cfg(tiny_npz, surrogate={"checkpoints": [2, 4]})


def test_levers_at_their_defaults_leave_config_and_cache_names_as_before(tiny_npz):
    plain = to_dict(_cfg(tiny_npz))
    assert "public" not in plain and "checkpoints" not in plain["surrogate"] and "project_out" not in plain["attack"]
    assert to_dict(_cfg(tiny_npz, attack={"project_out": "target_mean"}))["attack"]["project_out"] == "target_mean"


def _public(npz, **over):
    # the victim's half of the data leaves too few target-class images in the stolen share: bases from the split
    attack = {**tiny_config(npz)["attack"], "bases_from": "train"}
    return tiny_config(npz, data={"name": "npz", "root": npz, "options": {"train_part": [0.5, 1.0]}},
                       public={"train_part": [0.0, 0.5], "epochs": 2}, attack=attack, **over)


def test_public_pretrained_init_runs_end_to_end(tiny_npz, tmp_path):
    cfg = poisoning.config_from_dict(_public(tiny_npz, pairs=1, methods=["none", "padhash"]))
    results = poisoning.run_poisoning(cfg, tmp_path, progress=False)
    assert [t["method"] for t in results["trials"]] == ["none", "padhash"]
    assert all(t["database_size"] == 30 for t in results["trials"])  # the victim's half of 60 is its database
    (weights,) = (tmp_path / "models").glob("public-*/weights.safetensors")
    run = poisoning.PoisoningRun(cfg, tmp_path, progress=False)
    resolved = run.with_public(cfg, 0)
    assert resolved.victim_init == resolved.surrogate.init == f"public:{weights.parent.name}"
    # victim and surrogate start from the public model: with 0 epochs of fine-tuning they are that model
    frozen = poisoning.config_from_dict(_public(tiny_npz, victim={**tiny_config(tiny_npz)["victim"], "epochs": 0}))
    victim = run.clean_victim(frozen, 0)
    assert torch.equal(victim.hash_layer.weight, load_tensors(weights)["hash_layer.weight"])


@pytest.mark.parametrize("over, match", [
    ({"public": {"train_part": [0.0, 0.6]}}, "overlaps"),
    ({"data": {"name": "digits"}}, "set data.options.train_part"),
    ({"victim_init": "x.safetensors"}, "drop victim_init"),
    ({"surrogate": {"backbones": ["resnet18"]}}, "backbone and bits"),
])
def test_public_config_errors(tiny_npz, over, match):
    with pytest.raises(PadhashError, match=match):
        poisoning.config_from_dict({**_public(tiny_npz), **over})
