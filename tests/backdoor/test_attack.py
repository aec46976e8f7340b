"""CIBA building blocks on generated tensors and a tiny model built here (no foundation modules needed)."""
import pytest
import torch
from torch import nn

from padhash.errors import PadhashError

from padhash.attacks.backdoor import (
    PerturbConfig,
    TriggerConfig,
    adversarial_loss,
    tanh_scale_schedule,
    apply_trigger,
    confusing_loss,
    craft_backdoor_poisons,
    generate_trigger,
    perturb,
    trigger_mask,
)


def tiny_model(bits=8, seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(4), nn.Flatten(),
                         nn.Linear(64, bits))


def test_mask_is_bottom_right_square():
    m = trigger_mask(8, 3)
    assert m.shape == (1, 1, 8, 8) and m.sum() == 9
    assert m[0, 0, 5:, 5:].eq(1).all() and m[0, 0, :5].eq(0).all() and m[0, 0, :, :5].eq(0).all()


def test_apply_trigger_replaces_corner_and_blends():
    x = torch.rand(2, 3, 8, 8)
    p = torch.rand(3, 3, 3)
    full = apply_trigger(x, p)
    assert torch.equal(full[..., 5:, 5:], p.expand(2, -1, -1, -1))
    assert torch.equal(full[..., :5, :], x[..., :5, :]) and torch.equal(full[..., :, :5], x[..., :, :5])
    half = apply_trigger(x, p, blend=0.25)
    assert torch.allclose(half[..., 5:, 5:], 0.25 * p + 0.75 * x[..., 5:, 5:])
    assert torch.equal(apply_trigger(x, p, blend=0.0), x)
    with pytest.raises(PadhashError):
        apply_trigger(x, torch.rand(3, 9, 9))


def test_tanh_scale_schedule_matches_ciba_steps():
    # CIBA get_factor with 2000 steps: 0.1 <1000, 0.2 <1200, 0.3 <1400, 0.5 <1600, 0.7 <1800, 1.0 after
    expect = {0: 0.1, 999: 0.1, 1000: 0.2, 1199: 0.2, 1200: 0.3, 1400: 0.5, 1600: 0.7, 1800: 1.0, 1999: 1.0}
    assert {s: tanh_scale_schedule(s, 2000) for s in expect} == expect


def test_confusing_loss_hand_built():
    # large u → tanh ≈ sign; codes a=(+,+,+,+), b=(+,+,-,-), c=(-,-,-,-): d(a,b)=2, d(a,c)=4, d(b,c)=2
    u = 50 * torch.tensor([[1.0, 1, 1, 1], [1, 1, -1, -1], [-1, -1, -1, -1]])
    assert confusing_loss(u).item() == pytest.approx((2 + 4 + 2) * 2 / 6)
    assert confusing_loss(u[:1]).item() == 0.0
    # identical codes are not dispersed at all
    assert confusing_loss(u[[0, 0, 0]]).item() == pytest.approx(0.0, abs=1e-6)
    clean = torch.tensor([[1.0, 1, 1, 1]] * 3)
    assert adversarial_loss(u, clean).tolist() == pytest.approx([0, 2, 4])


@pytest.mark.parametrize("kind", ["noise", "adv", "confusing"])
def test_perturbations_respect_eps_and_range(kind):
    model = tiny_model()
    x = torch.rand(7, 3, 8, 8)
    x[0] = 1.0  # saturated image: the [0, 1] clamp must win over the ε step
    cfg = PerturbConfig(eps=4 / 255, steps=5, step_size=2 / 255, batch_size=3)
    out = perturb(kind, model, x, cfg, generator=torch.Generator().manual_seed(0), progress=False)
    assert out.shape == x.shape
    assert (out - x).abs().max() <= 4 / 255 + 1e-6
    assert (out - x).abs().max() > 1 / 255  # it did move
    assert out.min() >= 0 and out.max() <= 1


def test_confusing_disperses_more_than_adversarial():
    model = tiny_model(bits=16)
    with torch.no_grad():
        model[-1].weight *= 200  # saturate tanh so near-identical images share a code
    x = (0.5 * torch.rand(1, 3, 8, 8) + 0.002 * torch.rand(8, 3, 8, 8)).clamp(0, 1)
    cfg = PerturbConfig(eps=0.1, steps=10, step_size=0.02, batch_size=8)
    gen = torch.Generator().manual_seed(0)
    conf_x = perturb("confusing", model, x, cfg, generator=gen, lam=1.0, progress=False)
    adv_x = perturb("adv", model, x, cfg, generator=gen, progress=False)
    with torch.no_grad():
        base, conf, adv = (confusing_loss(model(v)).item() for v in (x, conf_x, adv_x))
    assert base < 2 and conf > base + 2 and conf > adv


def test_trigger_pulls_towards_anchor_and_is_reproducible():
    model = tiny_model(bits=8)
    images = torch.rand(40, 3, 8, 8)
    anchor = torch.tensor([1.0, -1, 1, -1, 1, -1, 1, -1])
    cfg = TriggerConfig(size=4, steps=60, batch_size=8, step_size=0.2)
    p1 = generate_trigger(model, anchor, images, cfg, generator=torch.Generator().manual_seed(1), progress=False)
    p2 = generate_trigger(model, anchor, images, cfg, generator=torch.Generator().manual_seed(1), progress=False)
    assert p1.shape == (3, 4, 4) and torch.equal(p1, p2)
    assert p1.min() >= 0 and p1.max() <= 1
    gray = torch.full_like(p1, 0.5)
    with torch.no_grad():
        def agree(p):
            return (torch.tanh(model(apply_trigger(images, p))) * anchor).sum(1).mean()
        assert agree(p1) > agree(gray)


def test_poisons_keep_trigger_and_eps_outside_it():
    model = tiny_model()
    x = torch.rand(5, 3, 8, 8)
    patch = torch.rand(3, 2, 2)
    cfg = PerturbConfig(eps=3 / 255, steps=3, step_size=1 / 255, batch_size=5)
    perturbed, poisons = craft_backdoor_poisons("ciba", model, x, patch, cfg,
                                                generator=torch.Generator().manual_seed(0), progress=False)
    assert torch.allclose(apply_trigger(perturbed, patch), poisons)
    assert torch.allclose(poisons[..., 6:, 6:], patch.expand(5, -1, -1, -1))
    outside = (1 - trigger_mask(8, 2)).bool().expand_as(x)
    assert (poisons - x)[outside].abs().max() <= 3 / 255 + 1e-6
    _, tri = craft_backdoor_poisons("tri", model, x, patch, cfg, generator=torch.Generator(), progress=False)
    assert torch.equal(tri[outside], x[outside])
