"""#17: distance-band pair mining, momentum, the pretrained configs, victims built through the feature cache."""
import dataclasses
from pathlib import Path

import torch

from padhash.attacks.adversarial import TransferAttackConfig, transfer_attack, vulnerable_pairs
from padhash.config import load_yaml
from padhash.data import DataConfig
from padhash.experiments.adversarial import (_apply, _Models, query_config_from_dict, sweep_points,
                                             seed_recipe, transfer_config_from_dict)
from padhash.reports.adversarial import query_tables, transfer_tables
from padhash.hashing import TrainConfig

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def test_band_mining_keeps_pairs_inside_the_band_evenly_over_the_list():
    bits = 16
    g = torch.Generator().manual_seed(0)
    ref = torch.where(torch.rand(40, bits, generator=g) > 0.5, 1, -1).to(torch.int8)
    ref_classes = torch.arange(40) % 4
    q = torch.where(torch.rand(30, bits, generator=g) > 0.5, 1, -1).to(torch.int8)
    q_classes = torch.arange(30) % 4
    pairs = vulnerable_pairs(q, q_classes, ref, ref_classes, 5, num_classes=4, mode="band", band=(0.4, 0.6))
    assert len(pairs) == 5 and all(t != int(q_classes[i]) for i, t in pairs)
    for i, t in pairs:
        d = ((bits - ref[ref_classes == t].float() @ q[i].float()) / 2).mean()
        assert 0.4 * bits < d < 0.6 * bits
    mined = vulnerable_pairs(q, q_classes, ref, ref_classes, 5, num_classes=4, mode="mined")
    assert pairs != mined  # the globally closest pairs are not the band's


def test_momentum_changes_the_path_and_keeps_the_budget():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 8))
    x = torch.rand(4, 3, 8, 8)
    target = torch.where(torch.rand(4, 8) > 0.5, 1.0, -1.0)
    cfg = TransferAttackConfig(eps=4 / 255, steps=6, noise_weight=0.0)
    plain = transfer_attack(model, x, target, cfg, torch.Generator().manual_seed(1))
    mom = transfer_attack(model, x, target, dataclasses.replace(cfg, momentum=1.0), torch.Generator().manual_seed(1))
    assert (mom - x).abs().max() <= 4 / 255 + 1e-6 and not torch.equal(plain, mom)


def test_pretrained_configs_parse_with_48_bits_and_the_epsilon_axis():
    q = query_config_from_dict(load_yaml(CONFIGS / "dhta-cifar10-pretrained.yaml"))
    assert q.victim.weights == "imagenet" and q.victim.finetune == "frozen"
    assert [p["victim.bits"] for p, _ in sweep_points(q)] == [16, 32, 48, 64]
    t = transfer_config_from_dict(load_yaml(CONFIGS / "transfer-cifar10-pretrained.yaml"))
    assert t.surrogates[0].backbone == "efficientnet_lite0" and "band" in t.pair_selection
    eps = sorted({_apply(t, p).attack.eps for p, _ in sweep_points(t)})  # '8/255' in the YAML
    assert [round(e * 255) for e in eps] == [8, 16, 32]


def test_pretrained_victim_is_trained_through_the_feature_cache(tmp_path):
    models = _Models(tmp_path, "cpu", False, None, str(tmp_path / "shared"))
    data = DataConfig(name="digits", image_size=16, options={"train_per_class": 3, "max_queries": 10})
    cfg = TrainConfig(backbone="efficientnet_lite0", weights="imagenet", finetune="frozen", resolution=32,
                      bits=8, epochs=1)
    _, model = models.trained("victim", data, cfg)
    assert model.feature_cache is models.feature_cache and models.feature_cache.computed > 0
    assert any((tmp_path / "shared").rglob("*.safetensors"))


def test_anchor_ceiling_ratio_is_reported_beside_dhta():
    agg = {"dhta": {"t_map": {"mean": 0.3, "std": 0, "n": 1}}, "anchor": {"t_map": {"mean": 0.6, "std": 0, "n": 1}}}
    data = {"aggregates": agg, "config": {"methods": ["dhta", "anchor"], "sweep": {}}}
    table = query_tables(data)[0]
    assert "DHTA ÷ anchor ceiling" in table and "0.50" in table


def test_transfer_table_counts_the_seeds_where_a_method_reaches_pgd():
    rates = {"pgd": [0.5, 0.5], "transfer": [0.6, 0.4], "none": [0.1, 0.1]}
    agg, trials = {}, []
    for m, per_seed in rates.items():
        g = f"{m}@pairs=band"
        agg[g] = {"transfer_rate": {"mean": sum(per_seed) / 2, "std": 0.1, "n": 2}}
        trials += [{"method": g, "seed": s, "transfer_rate": r} for s, r in enumerate(per_seed)]
    cfg = {"methods": list(rates), "pair_selection": ["band"], "sweep": {}}
    table = transfer_tables({"aggregates": agg, "trials": trials, "config": {**cfg, "seeds": [0, 1]}})[0]
    row = next(line for line in table.splitlines() if line.startswith("| Noise-robust"))
    assert "≥ PGD (seeds)" in table and row.rstrip(" |").endswith("1 of 2")
    single = transfer_tables({"aggregates": agg, "trials": trials, "config": {**cfg, "seeds": [0]}})[0]
    assert "≥ PGD (seeds)" not in single


def test_seed_recipe_offsets_the_training_seed_only_when_retraining_per_seed():
    recipe = TrainConfig(seed=3)
    cfg = query_config_from_dict({"seeds": [0, 2], "retrain_per_seed": True})
    assert seed_recipe(cfg, recipe, 2).seed == 5 and seed_recipe(cfg, recipe, 0) == recipe
    shared = query_config_from_dict({"seeds": [0, 2]})
    assert seed_recipe(shared, recipe, 2).seed == 3 and seed_recipe(shared, recipe, 2) is not recipe
