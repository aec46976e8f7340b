import pytest
import torch

from padhash.attacks.poisoning import (
    CraftConfig,
    augment_batch,
    craft_poisons,
    gradient_cosine,
    parameter_gradient,
    project,
    strict_matching_loss,
)
from padhash.errors import PadhashError
from tests.poisoning.helpers import CentreLoss, TinyHashNet


def _grads(seed, shapes=((3, 4), (5,))):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(s, generator=g) for s in shapes]


def test_alpha_zero_is_one_minus_global_cosine():
    gp, gv = _grads(1), _grads(2)
    flat_p, flat_v = torch.cat([g.flatten() for g in gp]), torch.cat([g.flatten() for g in gv])
    expected = 1 - torch.nn.functional.cosine_similarity(flat_p, flat_v, dim=0)
    assert torch.allclose(strict_matching_loss(gp, gv, 0.0), expected, atol=1e-6)
    assert torch.allclose(gradient_cosine(gp, gv), 1 - expected, atol=1e-6)


def test_strict_loss_follows_eq5_and_penalises_magnitude():
    gv = _grads(3)
    same_dir_longer = [3 * g for g in gv]
    # same direction: cosine term is 0, only the magnitude term remains (Eq. 5: ‖Gp−Gv‖/(‖Gv‖‖Gp‖))
    nv = torch.sqrt(sum((g * g).sum() for g in gv))
    expected = 0.2 * (2 * nv) / (nv * 3 * nv)
    assert torch.allclose(strict_matching_loss(same_dir_longer, gv, 0.2), expected, atol=1e-6)
    assert float(strict_matching_loss(gv, gv, 0.2)) == pytest.approx(0.0, abs=1e-6)
    rel = strict_matching_loss(same_dir_longer, gv, 0.5, magnitude="relative")
    assert float(rel) == pytest.approx(0.5 * 2.0, rel=1e-5)
    with pytest.raises(PadhashError, match="alpha"):
        strict_matching_loss(gv, gv, 1.5)


def _setup(n=6, seed=0):
    torch.manual_seed(seed)
    model = TinyHashNet().eval()
    loss = CentreLoss(num_classes=3, bits=8)
    g = torch.Generator().manual_seed(seed)
    bases = torch.rand(n, 3, 8, 8, generator=g)
    labels = torch.zeros(n, 3)
    labels[:, 2] = 1
    trigger = torch.rand(1, 3, 8, 8, generator=g)
    return model, loss, bases, labels, trigger, labels[0]


def test_gradients_flow_to_delta():
    model, loss, bases, labels, trigger, target = _setup()
    params = [p for p in model.parameters()]
    gv = [g.detach() for g in parameter_gradient(model, loss, trigger, target[None], params)]
    delta = torch.zeros_like(bases, requires_grad=True)
    gp = parameter_gradient(model, loss, bases + delta, labels, params, create_graph=True)
    for alpha in (0.0, 0.2):
        (d,) = torch.autograd.grad(strict_matching_loss(gp, gv, alpha), delta, retain_graph=True)
        assert d.abs().sum() > 0 and torch.isfinite(d).all()
    assert all(p.grad is None for p in model.parameters())  # crafting never touches parameter .grad


@pytest.mark.parametrize("eps_l2", [None, 0.3])
def test_crafting_respects_eps_and_lowers_the_loss(eps_l2):
    model, loss, bases, labels, trigger, target = _setup()
    bases[0, :, :2] = 1.0  # saturated pixels: the [0, 1] box must bind
    cfg = CraftConfig(alpha=0.2, eps=8 / 255, eps_l2=eps_l2, steps=30, restarts=2, step_size=0.01, augment=False)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    res = craft_poisons([model], [loss], bases, labels, trigger, target, cfg,
                        generator=torch.Generator().manual_seed(0), progress=False)
    delta = res.poisons - bases
    assert delta.abs().max() <= 8 / 255 + 1e-6
    assert res.poisons.min() >= 0 and res.poisons.max() <= 1
    if eps_l2 is not None:
        assert delta.flatten(1).norm(dim=1).max() <= eps_l2 + 1e-5
    assert len(res.restart_losses) == 2 and res.loss == min(res.restart_losses)
    assert res.loss_history[-1] < res.loss_history[0]  # the matching loss goes down
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # surrogate untouched (eval BN)


def test_crafting_is_reproducible_and_ensembles_average():
    model, loss, bases, labels, trigger, target = _setup()
    other = TinyHashNet().eval()
    cfg = CraftConfig(alpha=0.0, steps=5, batch_size=4)
    run = lambda: craft_poisons([model, other], [loss, loss], bases, labels, trigger, target, cfg,  # noqa: E731
                                generator=torch.Generator().manual_seed(3), progress=False)
    a, b = run(), run()
    assert torch.equal(a.poisons, b.poisons)
    assert -1 <= a.grad_cosine_after <= 1 and a.grad_norm_ratio_after > 0


def test_projection_and_augmentation():
    g = torch.Generator().manual_seed(0)
    bases = torch.rand(4, 3, 8, 8, generator=g)
    delta = project(torch.randn(4, 3, 8, 8, generator=g), bases, 0.1, None)
    assert delta.abs().max() <= 0.1 + 1e-7 and ((bases + delta) >= 0).all() and ((bases + delta) <= 1).all()
    x = torch.rand(4, 3, 8, 8, generator=g, requires_grad=True)
    out = augment_batch(x, 0, torch.Generator().manual_seed(1))
    # zero shift: each image is either itself or its mirror
    for i in range(4):
        assert torch.allclose(out[i], x[i], atol=1e-5) or torch.allclose(out[i], x[i].flip(-1), atol=1e-5)
    out.sum().backward()
    assert x.grad is not None


def test_crafting_shifts_as_the_victim_trains():
    # whole-pixel, zero-padded shifts (hashing.trainer's family): every output is a crop of the padded image
    x = torch.rand(6, 3, 8, 8) + 0.1
    out = augment_batch(x, 2, torch.Generator().manual_seed(3), flip=False)
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    crops = [[padded[i, :, dy:dy + 8, dx:dx + 8] for dy in range(5) for dx in range(5)] for i in range(6)]
    assert all(any(torch.equal(out[i], c) for c in crops[i]) for i in range(6))
    assert not torch.equal(out, x)  # some image moved, its vacated border is zeros
    with pytest.raises(PadhashError, match="attack.shift"):
        CraftConfig(shift=2.5).validate()


def test_bad_config_is_one_line_error():
    model, loss, bases, labels, trigger, target = _setup()
    with pytest.raises(PadhashError, match="bn_mode"):
        craft_poisons([model], [loss], bases, labels, trigger, target, CraftConfig(bn_mode="frozen"),
                      generator=torch.Generator(), progress=False)
