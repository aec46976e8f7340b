"""Clean-label backdoor against deep hashing (CIBA, Gao et al.): trigger patch, confusing perturbations, baselines."""
from padhash.attacks.backdoor.perturb import (
    PERTURBATIONS,
    PerturbConfig,
    adversarial_loss,
    confusing_loss,
    perturb,
)
from padhash.attacks.backdoor.placement import PLACEMENTS, TriggerAfterAugment
from padhash.attacks.backdoor.poisons import BACKDOOR_METHODS, craft_backdoor_poisons, dirty_label_poisons
from padhash.attacks.backdoor.trigger import (
    TriggerConfig,
    apply_trigger,
    generate_trigger,
    tanh_scale_schedule,
    trigger_mask,
)

__all__ = [
    "BACKDOOR_METHODS", "PERTURBATIONS", "PLACEMENTS", "TriggerAfterAugment", "PerturbConfig", "TriggerConfig", "adversarial_loss",
    "apply_trigger", "confusing_loss", "craft_backdoor_poisons", "dirty_label_poisons",
    "generate_trigger", "perturb", "tanh_scale_schedule", "trigger_mask",
]
