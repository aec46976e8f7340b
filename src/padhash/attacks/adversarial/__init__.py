"""Adversarial queries: DHTA / P2P / HAG / noise (`targeted`) and the black-box transfer attack (`transfer`)."""
from padhash.attacks.adversarial.targeted import (
    TargetedAttackConfig,
    alpha_schedule,
    code_similarity_loss,
    hag_attack,
    project,
    targeted_attack,
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
    "TargetedAttackConfig", "TransferAttackConfig", "adversarial_region", "alpha_schedule", "code_similarity_loss",
    "hag_attack", "input_diversity", "project", "sample_noise", "targeted_attack", "transfer_attack",
    "mean_pair_distance", "uniform_noise", "vulnerable_pairs",
]
