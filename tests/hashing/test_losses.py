import pytest
import torch
import torch.nn.functional as F

from padhash.errors import PadhashError
from padhash.hashing import METHODS, make_loss
from padhash.hashing.base import label_centers
from padhash.hashing.csq import hash_centers


def one_hot(ys, c):
    return F.one_hot(torch.tensor(ys), c).float()


def test_csq_centres_are_hadamard_rows_half_the_code_apart():
    loss = make_loss("csq", 10, 32)
    c = loss.centers
    assert c.shape == (10, 32) and set(c.unique().tolist()) == {-1.0, 1.0}
    assert torch.equal(c @ c.T, 32 * torch.eye(10))  # orthogonal rows: Hamming distance exactly K/2
    h = torch.from_numpy(__import__("scipy.linalg").linalg.hadamard(32)).float()
    assert torch.equal(c, h[:10])


def test_csq_random_centres_when_classes_exceed_2k_are_balanced_and_seeded():
    g = lambda: torch.Generator().manual_seed(5)  # noqa: E731
    c = hash_centers(20, 8, g())
    assert torch.equal(c, hash_centers(20, 8, g()))
    assert torch.equal(c[:16], torch.cat([c[:8], -c[:8]]))
    assert torch.all((c[16:] == -1).sum(1) == 4)  # exactly K/2 entries -1
    c12 = hash_centers(3, 12, g())  # 12 is not a power of 2: all centres random
    assert torch.all((c12 == -1).sum(1) == 6)


def test_multi_label_centre_is_sign_of_sum_with_fixed_fill():
    centers = torch.tensor([[1., 1., -1., -1.], [1., -1., 1., -1.]])
    fill = torch.tensor([1., -1., -1., 1.])
    out = label_centers(torch.tensor([[1., 1.], [0., 1.]]), centers, fill)
    assert torch.equal(out, torch.tensor([[1., -1., -1., -1.], [1., -1., 1., -1.]]))


def test_csq_loss_value_by_hand():
    loss = make_loss("csq", 2, 4, **{"lambda": 0.5})
    u = torch.zeros(1, 4)  # tanh 0 = 0 → p = 0.5 everywhere: BCE = log 2, quantization (|0|-1)² = 1
    assert float(loss(u, one_hot([1], 2))) == pytest.approx(torch.log(torch.tensor(2.)).item() + 0.5)


def test_dpn_hinge_value_and_balanced_targets():
    loss = make_loss("dpn", 3, 8, seed=1)
    t = loss.centers
    assert torch.all((t == -1).sum(1) == 4)
    u = 2 * t[[0]]  # beyond the margin on every bit → 0
    assert float(loss(u, one_hot([0], 3))) == 0.0
    u = torch.full((1, 8), 0.5) * t[[0]]  # u·t = 0.5 < m = 1 → hinge 0.5
    assert float(loss(u, one_hot([0], 3))) == pytest.approx(0.5)
    assert float(loss(torch.zeros(1, 8), one_hot([0], 3))) == pytest.approx(1.0)


def test_hashnet_scale_continuation():
    loss = make_loss("hashnet", 2, 8)
    for epoch, scale in [(0, 1.0), (19, 1.0), (20, 2 ** 0.5), (45, 3 ** 0.5)]:
        loss.start_epoch(epoch)
        assert loss.scale == pytest.approx(scale)


def test_hashnet_balanced_weights_equalise_positive_and_negative_mass():
    loss = make_loss("hashnet", 2, 4)
    u = torch.zeros(3, 4)  # ip = 0 → nll = log 2 per pair; positives and negatives each weigh numel → 2·log 2
    assert float(loss(u, one_hot([0, 0, 1], 2))) == pytest.approx(2 * float(torch.log(torch.tensor(2.))))


def test_dch_handles_any_batch_size_and_prefers_close_positives():
    loss = make_loss("dch", 2, 8)
    y = one_hot([0, 0, 1], 2)
    good = torch.tensor([[1.] * 8, [1.] * 8, [-1.] * 8])
    bad = torch.tensor([[1.] * 8, [-1.] * 8, [1.] * 8])
    assert float(loss(good, y)) < float(loss(bad, y))
    assert torch.isfinite(loss(torch.randn(5, 8), one_hot([0, 1, 1, 0, 1], 2)))


def test_dpsh_memory_update_and_in_batch_mode():
    loss = make_loss("dpsh", 2, 4, num_train=5)
    u = torch.tensor([[1., -1., 1., -1.], [0.5, 0.5, -0.5, -0.5]])
    loss(u, one_hot([0, 1], 2), index=torch.tensor([3, 1]))
    assert torch.equal(loss.memory_codes[3], u[0]) and torch.equal(loss.memory_codes[1], u[1])
    assert torch.equal(loss.memory_labels[[1, 3]], one_hot([1, 0], 2))
    assert loss.memory_codes[[0, 2, 4]].abs().sum() == 0
    # in-batch mode: θ = ½ u uᵀ; check one pair by hand against the stable formula
    single = make_loss("dpsh", 2, 4, eta=0.0)
    x = torch.tensor([[1., 1., 1., 1.]])
    theta = 2.0  # ½·4
    expected = torch.log1p(torch.exp(torch.tensor(-theta))) + theta - theta  # similar to itself
    assert float(single(x, one_hot([0], 2))) == pytest.approx(float(expected))


@pytest.mark.parametrize("method", METHODS)
def test_gradient_flows_to_u_for_every_method(method):
    torch.manual_seed(0)
    loss = make_loss(method, 3, 16, num_train=8)
    u = torch.randn(6, 16, requires_grad=True)
    y = one_hot([0, 1, 2, 0, 1, 2], 3)
    for index in (None, torch.arange(6)):
        value = loss(u, y, index=index)
        (grad,) = torch.autograd.grad(value, u)
        assert value.dim() == 0 and torch.isfinite(value) and grad.abs().sum() > 0


@pytest.mark.parametrize("method", METHODS)
def test_loss_decreases_and_codes_separate_on_a_tiny_separable_problem(method):
    g = torch.Generator().manual_seed(0)
    protos = torch.randn(3, 10, generator=g) * 3
    ys = torch.arange(3).repeat_interleave(8)
    x = protos[ys] + 0.3 * torch.randn(24, 10, generator=g)
    torch.manual_seed(0)
    net = torch.nn.Linear(10, 16)
    loss = make_loss(method, 3, 16, num_train=24)
    opt = torch.optim.Adam(net.parameters(), lr=0.05)
    first = None
    for _ in range(60):
        value = loss(net(x), one_hot(ys.tolist(), 3), index=torch.arange(24))
        first = value.item() if first is None else first
        opt.zero_grad()
        value.backward()
        opt.step()
    assert value.item() < first
    codes = torch.where(net(x) >= 0, 1.0, -1.0)
    dist = (16 - codes @ codes.T) / 2
    same = ys[:, None] == ys[None, :]
    assert dist[same].mean() + 2 < dist[~same].mean()


def test_make_loss_rejects_bad_method_and_hparams():
    with pytest.raises(PadhashError, match="unknown hashing method"):
        make_loss("lsh", 2, 8)
    with pytest.raises(PadhashError, match="unknown hyper-parameter"):
        make_loss("csq", 2, 8, margin=1)
    with pytest.raises(PadhashError, match="must be a number"):
        make_loss("dpn", 2, 8, m="big")
    with pytest.raises(PadhashError, match=r"DPSHLoss hparams.alpha: renamed to `eta`"):  # the DPSH paper's η
        make_loss("dpsh", 2, 8, alpha=0.1)
    assert make_loss("hashnet", 2, 8, alpha=0.2).hp["alpha"] == 0.2  # HashNet's own α keeps its name
