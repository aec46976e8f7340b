import torch

from padhash.defenses.spectral import spectral_filter, spectral_scores


def planted(seed=0):
    gen = torch.Generator().manual_seed(seed)
    clean = torch.randn(200, 16, generator=gen)
    shift = torch.zeros(16)
    shift[3] = 6.0  # a small cluster displaced along one direction: the poisons' spectral signature
    poisons = torch.randn(10, 16, generator=gen) * 0.5 + shift
    return torch.cat([clean, poisons]), torch.arange(200, 210)


def test_scores_rank_planted_cluster_on_top():
    feats, poison_idx = planted()
    scores = spectral_scores(feats)
    top = set(torch.argsort(scores, descending=True)[:15].tolist())
    assert set(poison_idx.tolist()) <= top


def test_filter_per_class_counts():
    feats, poison_idx = planted()
    labels = torch.zeros(210, 2)
    labels[:100, 0] = 1
    labels[100:, 1] = 1  # class 1 holds 100 clean + 10 poisons
    res = spectral_filter(feats, labels, budget=10, poison_idx=poison_idx)
    assert len(res.removed) == 30  # 15 per class
    assert res.poisons_removed == 10 and res.poisons_kept == 0
    assert res.clean_removed == 20 and res.clean_kept == 180
    assert sorted(res.removed.tolist() + res.kept.tolist()) == list(range(210))


def test_filter_without_signal_removes_few_poisons():
    gen = torch.Generator().manual_seed(1)
    feats = torch.randn(110, 16, generator=gen)  # poisons indistinguishable from clean
    labels = torch.ones(110, 1)
    res = spectral_filter(feats, labels, budget=10, poison_idx=torch.arange(100, 110))
    assert res.poisons_removed < 6
