import torch

from padhash.retrieval import hamming_distance, paired_hamming


def test_hamming_distance_counts_differing_bits_and_relaxes_for_real_values():
    g = torch.Generator().manual_seed(0)
    a = torch.randint(0, 2, (4, 13), generator=g).to(torch.int8) * 2 - 1
    b = torch.randint(0, 2, (5, 13), generator=g).to(torch.int8) * 2 - 1
    d = hamming_distance(a, b)
    assert d.dtype == torch.int64
    assert torch.equal(d, (a[:, None, :] != b[None, :, :]).sum(-1))
    u = a.float().requires_grad_(True)
    relaxed = hamming_distance(u, b)
    assert relaxed.dtype == torch.float32 and torch.equal(relaxed.detach().long(), d)
    relaxed.sum().backward()
    assert u.grad is not None


def test_paired_hamming_is_the_diagonal_of_hamming_distance():
    g = torch.Generator().manual_seed(1)
    a = torch.randint(0, 2, (6, 17), generator=g).to(torch.int8) * 2 - 1
    b = torch.randint(0, 2, (6, 17), generator=g).to(torch.int8) * 2 - 1
    assert torch.equal(paired_hamming(a, b).long(), hamming_distance(a, b).diagonal())
    u = torch.tanh(torch.randn(6, 17, generator=g)).requires_grad_(True)
    paired_hamming(u, b).sum().backward()
    assert torch.allclose(u.grad, -b.float() / 2)
