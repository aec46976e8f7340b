"""`train_part`: a seeded, stratified fraction range of the training split (disjoint public / victim parts)."""
import pytest
import torch

from padhash.data import load_dataset
from padhash.data.sampling import train_part_indices
from padhash.errors import PadhashError


def _labels(counts=(7, 10, 13)):
    return torch.nn.functional.one_hot(torch.cat([torch.full((n,), c) for c, n in enumerate(counts)])).float()


def test_adjacent_parts_are_disjoint_cover_their_range_and_are_stratified():
    labels = _labels()
    parts = [train_part_indices(labels, p, seed=3) for p in ([0.0, 0.5], [0.5, 0.8], [0.8, 1.0])]
    together = torch.cat(parts)
    assert len(together) == len(labels) and len(set(together.tolist())) == len(labels)  # disjoint, covering
    half = labels[parts[0]].sum(0).tolist()
    assert half == [round(0.5 * n) for n in (7, 10, 13)]  # per class, not overall
    assert torch.equal(parts[0], train_part_indices(labels, [0, 0.5], seed=3))  # seeded
    assert not torch.equal(parts[0], train_part_indices(labels, [0, 0.5], seed=4))


@pytest.mark.parametrize("bad", [[0.5, 0.5], [0.6, 0.2], [-0.1, 0.5], [0.0, 1.1], [0.5], "half", [True, 1.0]])
def test_bad_ranges_are_refused(bad):
    with pytest.raises(PadhashError, match="train_part must be"):
        train_part_indices(_labels(), bad, seed=0)
    with pytest.raises(PadhashError, match="train_part must be"):
        load_dataset("digits", train_part=bad)


def test_a_part_that_keeps_nothing_is_refused():
    with pytest.raises(PadhashError, match="keeps no training item"):
        train_part_indices(_labels((1, 1)), [0.0, 0.2], seed=0)


def test_digits_part_trains_and_indexes_its_own_half():
    full = load_dataset("digits")
    a, b = load_dataset("digits", train_part=[0.0, 0.5]), load_dataset("digits", train_part=[0.5, 1.0])
    assert len(a.train) + len(b.train) == len(full.train)
    assert a.train is a.database and b.train is b.database  # train = database: the victim indexes its own part
    assert torch.equal(a.query.images(), full.query.images())  # queries untouched
    rows = {tuple(x.flatten().tolist()) for x in full.train.images()}
    halves = [{tuple(x.flatten().tolist()) for x in ds.train.images()} for ds in (a, b)]
    assert len(rows) == len(full.train)  # (no duplicate images, so rows identify items)
    assert halves[0] | halves[1] == rows and not halves[0] & halves[1]


def test_separate_database_is_kept_when_train_is_a_sample():
    ds = load_dataset("digits", train_per_class=20, train_part=[0.0, 0.5])
    full = load_dataset("digits", train_per_class=20)
    assert len(ds.train) == 100 and torch.all(ds.train.labels.sum(0) == 10)
    assert ds.database is not ds.train and len(ds.database) == len(full.database)
