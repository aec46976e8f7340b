"""Attack code on a tiny random conv net: ε bound, α schedule, the objective actually moves codes, determinism."""
import pytest
import torch
from torch import nn

from padhash.attacks.adversarial import (
    TargetedAttackConfig,
    TransferAttackConfig,
    adversarial_region,
    tanh_scale_schedule,
    hag_attack,
    input_diversity,
    targeted_attack,
    transfer_attack,
    uniform_noise,
    vulnerable_pairs,
)
from padhash.attacks.adversarial.transfer import model_input
from padhash.errors import PadhashError
from padhash.models.hash_model import build_model

BITS = 16


def tiny_model(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(4), nn.Flatten(),
                         nn.Linear(128, BITS))


def images(n=6, seed=1):
    return torch.rand(n, 3, 12, 12, generator=torch.Generator().manual_seed(seed))


def codes_of(model, x):
    with torch.no_grad():
        return torch.where(model(x) >= 0, 1.0, -1.0)


def hamming(a, b):
    return ((a.shape[1] - (a * b).sum(1)) / 2)


def test_tanh_scale_schedule_matches_the_paper_at_2000_iterations():
    expected = {0: 0.1, 999: 0.1, 1000: 0.2, 1199: 0.2, 1200: 0.3, 1400: 0.5, 1600: 0.7, 1799: 0.7, 1800: 1.0, 1999: 1.0}
    for i, alpha in expected.items():
        assert tanh_scale_schedule(i, 2000) == alpha
    values = [tanh_scale_schedule(i, 10) for i in range(10)]
    assert values == [0.1] * 5 + [0.2, 0.3, 0.5, 0.7, 1.0]
    assert [tanh_scale_schedule(i, 7) for i in range(7)] == sorted(tanh_scale_schedule(i, 7) for i in range(7))


@pytest.mark.parametrize("optimizer", ["normalized", "sign", "sgd"])
def test_targeted_attack_stays_in_the_eps_ball_and_image_range(optimizer):
    model, x = tiny_model(), images()
    target = -codes_of(model, x)
    eps = 4 / 255
    adv = targeted_attack(model, x, target, TargetedAttackConfig(eps=eps, steps=6, optimizer=optimizer))
    assert (adv - x).abs().max() <= eps + 1e-6
    assert adv.min() >= 0 and adv.max() <= 1
    assert not torch.equal(adv, x)


def test_dhta_pulls_codes_to_the_target_and_hag_pushes_them_away():
    model, x = tiny_model(), images(8)
    clean = codes_of(model, x)
    target = -clean  # the farthest code: the attack must move every query toward it
    cfg = TargetedAttackConfig(eps=0.1, steps=60, step_fraction=0.1)
    adv = targeted_attack(model, x, target, cfg)
    assert hamming(codes_of(model, adv), target).mean() < hamming(clean, target).mean() - 2
    away = hag_attack(model, x, cfg)
    assert hamming(codes_of(model, away), clean).mean() > 2
    assert (away - x).abs().max() <= 0.1 + 1e-6


def test_targeted_attack_is_batch_independent_and_leaves_the_model_alone():
    model, x = tiny_model(), images(5)
    before = [p.clone() for p in model.parameters()]
    target = -codes_of(model, x)
    cfg = TargetedAttackConfig(eps=0.05, steps=10)
    whole = targeted_attack(model, x, target, cfg, batch_size=5)
    split = targeted_attack(model, x, target, cfg, batch_size=2)
    assert torch.allclose(whole, split, atol=1e-6)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert model.training  # mode restored


def test_bad_attack_settings_are_one_line_errors():
    with pytest.raises(PadhashError, match="eps"):
        TargetedAttackConfig(eps=8.0).validate()
    with pytest.raises(PadhashError, match="optimizer"):
        TargetedAttackConfig(optimizer="adam").validate()
    with pytest.raises(PadhashError, match="noise"):
        TransferAttackConfig(noise="laplace").validate()
    with pytest.raises(PadhashError, match="target codes"):
        targeted_attack(tiny_model(), images(3), torch.ones(2, BITS), TargetedAttackConfig(steps=1))


def test_uniform_noise_is_bounded_seeded_and_not_constant():
    x = images()
    a = uniform_noise(x, 8 / 255, torch.Generator().manual_seed(3))
    b = uniform_noise(x, 8 / 255, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    assert (a - x).abs().max() <= 8 / 255 + 1e-6
    assert (a - x).abs().mean() > 1 / 255


@pytest.mark.parametrize("noise_weight,diversity", [(0.0, 0.0), (1.0, 0.0), (0.0, 1.0)])
def test_transfer_attack_bounded_deterministic_and_effective_on_the_surrogate(noise_weight, diversity):
    model, x = tiny_model(), images(6)
    clean = codes_of(model, x)
    target = -clean
    cfg = TransferAttackConfig(eps=0.1, step_size=0.01, steps=30, noise_weight=noise_weight,
                               noise_level=0.05, diversity_prob=diversity)
    adv = transfer_attack(model, x, target, cfg, torch.Generator().manual_seed(0))
    again = transfer_attack(model, x, target, cfg, torch.Generator().manual_seed(0))
    assert torch.equal(adv, again)
    assert (adv - x).abs().max() <= 0.1 + 1e-6 and adv.min() >= 0 and adv.max() <= 1
    assert hamming(codes_of(model, adv), target).mean() < hamming(clean, target).mean() - 2


class Upsampling(nn.Module):
    """A tiny model that upsamples its inputs to 24 px, as HashModel does, and records the sides it is fed."""

    def __init__(self):
        super().__init__()
        self.net, self.sides = tiny_model(), []

    def upsample(self, x):
        return x if x.shape[-1] == 24 else nn.functional.interpolate(x, size=(24, 24), mode="bilinear")

    def forward(self, x):
        self.sides.append(x.shape[-1])
        return self.net(self.upsample(x))


def test_noise_at_the_model_resolution_reaches_the_network_per_input_pixel():
    x, target = images(4), torch.ones(4, BITS)
    runs = {}
    for where in ("image", "model"):
        model = Upsampling()
        cfg = TransferAttackConfig(eps=0.1, step_size=0.01, steps=3, noise_level=0.05, noise_resolution=where)
        runs[where] = transfer_attack(model, x, target, cfg, torch.Generator().manual_seed(0))
        # each step: the clean term at the query's 12 px, the noisy term at 12 px or at the model's 24 px
        assert model.sides == [12, 12 if where == "image" else 24] * 3
        assert runs[where].shape == x.shape and (runs[where] - x).abs().max() <= 0.1 + 1e-6
    assert not torch.equal(runs["image"], runs["model"])
    with pytest.raises(PadhashError, match="upsample"):
        transfer_attack(tiny_model(), x, target, TransferAttackConfig(steps=1, noise_resolution="model"),
                        torch.Generator())
    with pytest.raises(PadhashError, match="noise_resolution"):
        TransferAttackConfig(noise_resolution="pixel").validate()
    pgd = TransferAttackConfig(noise_weight=0.0, noise_resolution="model")
    assert pgd.effective() == TransferAttackConfig(noise_weight=0.0)


def test_model_input_is_what_a_hash_model_feeds_its_network():
    model = build_model("smallcnn", BITS, image_size=16, resolution=32).eval()
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    upsampled = model_input(model, x)
    assert upsampled.shape[-1] == 32
    with torch.no_grad():
        assert torch.equal(model(upsampled), model(x))  # fed its own input size, the model upsamples no further


def test_input_diversity_keeps_shape_and_is_identity_when_off():
    x = images(2)
    gen = torch.Generator().manual_seed(0)
    assert torch.equal(input_diversity(x, 1.1, 0.0, gen), x)
    out = input_diversity(x, 1.3, 1.0, gen)
    assert out.shape == x.shape and not torch.equal(out, x)


def test_adversarial_region_is_zero_for_misses_and_grows_with_robustness():
    model, x = tiny_model(), images(4)
    clean = codes_of(model, x)
    levels = [0.01, 0.05, 0.2, 0.5]
    gen = torch.Generator().manual_seed(0)
    # The clean image "hits" its own code at radius 0 and survives at least the tiniest noise ...
    own = adversarial_region(model, x, clean, levels, gen, radius=BITS // 4, samples=4)
    # ... and never reaches the opposite code.
    far = adversarial_region(model, x, -clean, levels, gen, radius=0, samples=4)
    assert torch.all(far == 0)
    assert torch.all(own >= 0.01)
    assert set(own.tolist()) <= set(levels)


def test_vulnerable_pairs_mines_the_closest_other_class():
    ref_codes = torch.tensor([[1] * 8, [1] * 7 + [-1], [-1] * 8, [-1] * 7 + [1]], dtype=torch.int8)
    ref_classes = torch.tensor([0, 0, 1, 1])
    query_codes = torch.tensor([[1] * 8, [-1] * 8, [1] * 6 + [-1] * 2], dtype=torch.int8)
    query_classes = torch.tensor([1, 0, 2])
    pairs = vulnerable_pairs(query_codes, query_classes, ref_codes, ref_classes, 2, num_classes=3)
    assert pairs == [(0, 0), (1, 1)]  # each query's closest other class, the closest pairs first
    assert all(t != int(query_classes[i]) for i, t in pairs)
    rnd = vulnerable_pairs(query_codes, query_classes, ref_codes, ref_classes, 3, num_classes=3, mode="random",
                           generator=torch.Generator().manual_seed(0))
    assert len(rnd) == 3 and all(t != int(query_classes[i]) and t in (0, 1) for i, t in rnd)
