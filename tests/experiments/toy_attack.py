"""A user's own query attack in one file: one FGSM step toward the anchor code. Loaded as a plug-in
(`padhash --plugin tests/experiments/toy_attack.py attack toy ...`); nothing in src/ names it."""
from dataclasses import dataclass

import torch

from padhash.errors import PadhashError
from padhash.registry import register_method


@dataclass
class ToyConfig:
    eps: float = 8 / 255               # L∞ budget of the single step

    def validate(self, where: str = "toy") -> None:
        if not 0 < self.eps <= 1:
            raise PadhashError(f"{where}.eps: must be in (0, 1], got {self.eps}")


def toy_attack(model, images, ctx):
    """x − ε·sign(∇ₓ −⟨tanh f(x), anchor⟩): one signed step that raises the code's agreement with the anchor."""
    x = images.clone().requires_grad_(True)
    loss = -(torch.tanh(model(x)) * ctx.anchors.to(x.dtype)).sum()
    (grad,) = torch.autograd.grad(loss, x)
    return (images - ctx.params.eps * grad.sign()).clamp(0, 1).detach()


register_method(name="toy", family="query", role="attack", label="Toy FGSM", config=ToyConfig, run=toy_attack,
                command=True, help="one FGSM step toward the anchor code (a plug-in's attack)")
