"""Clean-label poisoning by gradient matching: Witches' Brew (α = 0) and PADHASH's Strict Gradient-Matching."""
from padhash.attacks.poisoning.craft import CraftConfig, CraftResult, augment_batch, craft_poisons, project
from padhash.attacks.poisoning.matching import (
    gradient_cosine,
    gradient_norm,
    matched_parameters,
    parameter_gradient,
    strict_matching_loss,
)

__all__ = [
    "CraftConfig", "CraftResult", "augment_batch", "craft_poisons", "project",
    "gradient_cosine", "gradient_norm", "matched_parameters", "parameter_gradient", "strict_matching_loss",
]
