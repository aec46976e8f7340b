"""Adversarial queries: DHTA / P2P / HAG / noise (`targeted`) and the black-box transfer attack (`transfer`)."""
from padhash.attacks.adversarial.targeted import (
    TargetedAttackConfig,
    hag_attack,
    project,
    targeted_attack,
    tanh_scale_schedule,
    uniform_noise,
)
from padhash.attacks.adversarial.transfer import (
    TransferAttackConfig,
    adversarial_region,
    mean_pair_distance,
    input_diversity,
    sample_noise,
    transfer_attack,
    vulnerable_pairs,
)

__all__ = [
    "TargetedAttackConfig", "TransferAttackConfig", "adversarial_region", "hag_attack", "input_diversity", "project", "sample_noise", "tanh_scale_schedule", "targeted_attack",
    "transfer_attack",
    "mean_pair_distance", "uniform_noise", "vulnerable_pairs",
]
