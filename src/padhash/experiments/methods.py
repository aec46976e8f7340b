"""The built-in methods of every family, registered once (padhash.registry). Order = the papers' table order.

Configs and run functions are "module:name" references, resolved on use, so reading the CLI's choices imports
nothing heavy. A user's attack registers the same way from its own file (docs/api.md).
"""
from __future__ import annotations

from padhash.registry import Method, register_method

_Q = "padhash.experiments.adversarial_query"
_TARGETED = "padhash.attacks.adversarial:TargetedAttackConfig"

BUILTINS = (
    # PADHASH (clean-label poisoning by gradient matching): none ≤ witches_brew / padhash ≤ label_flip
    Method("none", "poisoning", "floor", "None"),
    Method("witches_brew", "poisoning", "attack", "Witches' Brew", config="padhash.attacks.poisoning:CraftConfig",
           run="padhash.attacks.poisoning:craft_poisons", command=True, section="attack",
           help="Witches' Brew gradient matching (alpha = 0)"),
    Method("padhash", "poisoning", "attack", "PADHASH", config="padhash.attacks.poisoning:CraftConfig",
           run="padhash.attacks.poisoning:craft_poisons", baselines=("witches_brew",), command=True,
           section="attack", help="PADHASH strict gradient matching"),
    Method("label_flip", "poisoning", "ceiling", "label flip (dirty)", command=True,
           help="the dirty-label ceiling (copies of the trigger labelled y_t)"),
    # CIBA (clean-label backdoor): none, Tri, Tri+Noise, Tri+Adv, CIBA, the dirty-label ceiling
    Method("none", "backdoor", "floor", "None"),
    *(Method(name, "backdoor", "attack", label, config="padhash.attacks.backdoor:PerturbConfig",
             run="padhash.attacks.backdoor:craft_backdoor_poisons", command=True, section="perturb",
             baselines=("tri", "tri_noise", "tri_adv") if name == "ciba" else ())
      for name, label in (("tri", "Tri"), ("tri_noise", "Tri+Noise"), ("tri_adv", "Tri+Adv"), ("ciba", "CIBA"))),
    Method("label_flip", "backdoor", "ceiling", "Label flip (dirty-label ceiling)"),
    # DHTA (adversarial queries on a white-box victim): the benign query, noise, P2P, DHTA, HAG, the anchor code
    Method("none", "query", "floor", "Original", run=f"{_Q}:benign"),
    Method("noise", "query", "attack", "Noise", config=_TARGETED, run=f"{_Q}:noise_attack", command=True,
           section="attack", help="uniform noise in [-eps, eps] on the queries (the floor of DHTA's tables)"),
    Method("p2p", "query", "attack", "P2P", config=_TARGETED, run=f"{_Q}:p2p_attack", command=True, section="attack",
           command_defaults={"n_t": 1}, help="P2P targeted adversarial queries (DHTA with n_t = 1)"),
    Method("dhta", "query", "attack", "DHTA", config=_TARGETED, run=f"{_Q}:dhta_attack", command=True,
           section="attack", baselines=("noise", "p2p", "hag"),
           help="DHTA targeted adversarial queries (point-to-set, anchor code) beside P2P, noise and HAG"),
    Method("hag", "query", "attack", "HAG", config=_TARGETED, run=f"{_Q}:hag_untargeted", command=True,
           section="attack", help="HAG untargeted adversarial queries (push the code away from the query's own)"),
    Method("anchor", "query", "ceiling", "Anchor code (ε = ∞ ceiling)"),
    # the transfer attack (black box): none, PGD, DI, noise-robust, the white-box ceiling, momentum variants
    Method("none", "transfer", "floor", "Original"),
    Method("pgd", "transfer", "attack", "PGD", section="attack"),
    Method("di", "transfer", "attack", "DI", section="attack"),
    Method("transfer", "transfer", "attack", "Noise-robust (Xiao & Wang)",
           config="padhash.attacks.adversarial:TransferAttackConfig", run="padhash.attacks.adversarial:transfer_attack",
           section="attack", baselines=("pgd", "di"), command=True,
           help="black-box transfer attack (noise-robust, Xiao & Wang 2021) beside PGD, DI and a white-box ceiling"),
    Method("white_box", "transfer", "ceiling", "White-box on victim (ceiling)"),
    Method("di_mi", "transfer", "attack", "DI + momentum (DI-Mom)", section="attack"),
    Method("transfer_mi", "transfer", "attack", "Noise-robust + momentum", section="attack"),
)

for _method in BUILTINS:
    register_method(_method)
