"""Experiment configs: every bad value is refused by the config builder (so the Python API and the CLI say the
same), before anything trains: NaN / inf / negative / zero / wrong type, unknown choices, sweeps of strings."""
import pytest
import torch

from padhash.errors import PadhashError
from padhash.experiments import adversarial, backdoor, defenses, poisoning
from tests.bad_input.helpers import assert_one_line, cli, dhta_config

# (command, builder, config text, words of the one line)
CASES = {
    "padhash_eps_nan": (["attack", "padhash"], poisoning.config_from_dict, "attack: {eps: .nan}", ["attack.eps"]),
    "padhash_eps_inf": (["attack", "padhash"], poisoning.config_from_dict, "attack: {eps: .inf}", ["attack.eps"]),
    "padhash_eps_zero": (["attack", "padhash"], poisoning.config_from_dict, "attack: {eps: 0}", ["attack.eps"]),
    "padhash_eps_wrong_type": (["attack", "padhash"], poisoning.config_from_dict, "attack: {eps: big}", ["attack.eps"]),
    "padhash_jpeg_quality_zero": (["attack", "padhash"], poisoning.config_from_dict, "eval: {jpeg_quality: 0}",
                                  ["eval.jpeg_quality"]),
    "padhash_noise_std_negative": (["attack", "padhash"], poisoning.config_from_dict, "eval: {noise_std: -1}",
                                   ["eval.noise_std"]),
    "padhash_seed_negative": (["attack", "padhash"], poisoning.config_from_dict, "seeds: [0, -1]", ["seeds[1]"]),
    "padhash_victim_bits_huge": (["attack", "padhash"], poisoning.config_from_dict, "victim: {bits: 100000}",
                                 ["victim", "bits"]),
    "padhash_victim_lr_nan": (["attack", "padhash"], poisoning.config_from_dict, "victim: {lr: .nan}",
                              ["victim.lr"]),
    "padhash_device_tpu9": (["attack", "padhash"], poisoning.config_from_dict, "device: tpu9", ["device", "tpu9"]),
    "padhash_pairs_zero": (["attack", "padhash"], poisoning.config_from_dict, "pairs: 0", ["pairs"]),
    "padhash_sweep_of_strings": (["attack", "padhash"], poisoning.config_from_dict,
                                 "sweep: {attack.eps: [a, b]}", ["sweep.attack.eps"]),
    "padhash_sweep_point_out_of_range": (["attack", "padhash"], poisoning.config_from_dict,
                                         "sweep: {eval.jpeg_quality: [50, 0]}", ["jpeg_quality"]),
    "padhash_renamed_lr": (["attack", "padhash"], poisoning.config_from_dict, "attack: {lr: 0.01}",
                           ["attack.lr", "renamed to `step_size`"]),
    "padhash_renamed_lr_in_sweep": (["attack", "padhash"], poisoning.config_from_dict, "sweep: {attack.lr: [0.01]}",
                                    ["sweep.attack.lr", "step_size"]),
    "defend_renamed_lr": (["defend", "spectral"], defenses.defense_config_from_dict,
                          "source: padhash\npadhash: {data: {name: digits}, attack: {lr: 0.01}}",
                          ["padhash.attack.lr", "step_size"]),
    "dhta_sweep_of_strings": (["attack", "dhta"], adversarial.query_config_from_dict,
                              "sweep: {attack.eps: [x]}", ["sweep.attack.eps"]),
    "dhta_epsilon_nan": (["attack", "dhta"], adversarial.query_config_from_dict, "attack: {eps: .nan}",
                         ["attack.eps"]),
    "dhta_open_set_negative": (["attack", "dhta"], adversarial.query_config_from_dict, "open_set_classes: [-1]",
                               ["open_set_classes"]),
    "dhta_victim_seed_negative": (["attack", "dhta"], adversarial.query_config_from_dict, "victim: {seed: -1}",
                                  ["victim.seed"]),
    "transfer_region_noise_bogus": (["attack", "transfer"], adversarial.transfer_config_from_dict,
                                    "eval: {region_noise: bogus}", ["eval.region_noise", "bogus"]),
    "ciba_blend_nan": (["attack", "ciba"], backdoor.config_from_dict, "blend: .nan", ["blend"]),
    "ciba_victim_batch_size_one": (["attack", "ciba"], backdoor.config_from_dict, "victim: {batch_size: 1}",
                                   ["victim", "batch_size"]),
    "defend_jpeg_quality_zero": (["defend", "preprocess"], defenses.defense_config_from_dict,
                                 "preprocess: {jpeg_quality: [0]}", ["preprocess.jpeg_quality[0]"]),
    "defend_spectral_budget_negative": (["defend", "spectral"], defenses.defense_config_from_dict,
                                        "spectral: {budget: -5}", ["spectral.budget"]),
    "defend_attack_eps_nan": (["defend", "spectral"], defenses.defense_config_from_dict,
                              "attack: {victim: {lr: .nan}}", ["attack.victim.lr"]),
}


def _needs_base(command):
    return command[1] in ("padhash",)  # the poisoning commands have no built-in default config


@pytest.mark.parametrize("name", sorted(CASES))
def test_cli_refuses_before_training(name, tmp_path, capsys):
    command, _, text, needles = CASES[name]
    base = "data: {name: digits}\n" if _needs_base(command) else ""
    (tmp_path / "c.yaml").write_text(base + text + "\n")
    out = tmp_path / "out"
    code, _, err = cli([*command, "--config", tmp_path / "c.yaml", "--out", out, "--no-progress"], capsys)
    assert_one_line(code, err, *needles)
    assert not out.exists()


@pytest.mark.parametrize("name", sorted(CASES))
def test_api_refuses_the_same(name):
    import yaml

    _, build, text, needles = CASES[name]
    with pytest.raises(PadhashError) as info:
        build(yaml.safe_load(text), "cfg")
    for needle in needles:
        assert needle in str(info.value)


def _padhash_config(tmp, **over):
    import yaml

    from tests.poisoning.helpers import tiny_config, write_tiny_digits

    (tmp / "c.yaml").write_text(yaml.safe_dump(tiny_config(write_tiny_digits(tmp / "d.npz"), **over)))
    return tmp / "c.yaml"


# refused once the data or the machine is known (the config alone cannot tell), still before any training; the
# configs are the cheapest runs of their command, should a regression let one through
LATE_CASES = {
    "dhta_open_set_class_beyond_the_data": (["attack", "dhta"],
                                            lambda t: dhta_config(t / "c.yaml", open_set_classes=[42]),
                                            ["open_set_classes", "42", "0..9"]),
}
if not torch.cuda.is_available():
    LATE_CASES["dhta_device_cuda_without_gpu"] = (["attack", "dhta"],
                                                  lambda t: dhta_config(t / "c.yaml", device="cuda"),
                                                  ["device", "cuda"])
    LATE_CASES["padhash_device_cuda_without_gpu"] = (["attack", "padhash"], lambda t: _padhash_config(t, device="cuda"),
                                                     ["device", "cuda"])


@pytest.mark.parametrize("name", sorted(LATE_CASES))
def test_cli_refuses_once_the_data_or_machine_is_known(name, tmp_path, capsys):
    command, make_config, needles = LATE_CASES[name]
    out = tmp_path / "out"
    code, _, err = cli([*command, "--config", make_config(tmp_path), "--out", out, "--no-progress"], capsys)
    assert_one_line(code, err, *needles)
    assert not out.exists()
