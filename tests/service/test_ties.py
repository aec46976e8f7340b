"""The service's tie order among items at the same Hamming distance (RetrievalEngine `ties`), in process."""
from __future__ import annotations

import numpy as np
import pytest

from padhash.errors import PadhashError
from padhash.service.engine import RetrievalEngine, tie_keys
from padhash.service.store import to_images


def _search_after_upload(victim_run, state, ties: str, copies: int = 4):
    engine = RetrievalEngine(victim_run, state, ties=ties)
    image = to_images(engine.store.pixels[7:8])[0]
    labels = engine.store.labels[7:8]
    new = [engine.ingest(image, labels) for _ in range(copies)]
    _, hits = engine.search(image, k=len(engine.store))
    return engine, new, hits


def test_oldest_ties_put_uploads_after_every_earlier_item_of_their_distance(victim_run, tmp_path):
    engine, new, hits = _search_after_upload(victim_run, tmp_path / "s", "oldest")
    at_zero = [i for i, d in hits if d == 0]
    assert len(at_zero) > len(new) and at_zero == sorted(at_zero) and at_zero[-len(new):] == new


def test_random_ties_are_seeded_per_item_and_do_not_favour_old_ids(victim_run, tmp_path):
    engine, new, hits = _search_after_upload(victim_run, tmp_path / "s", "random")
    dists = [d for _, d in hits]
    assert dists == sorted(dists) and sorted(i for i, _ in hits) == list(range(len(engine.store)))
    for d in set(dists):  # within each distance: ascending tie key
        group = np.array([i for i, dd in hits if dd == d])
        keys = tie_keys(group, engine.tie_salt)
        assert (keys[1:] > keys[:-1]).all()
    at_zero = [i for i, d in hits if d == 0]
    assert at_zero != sorted(at_zero)                      # not the id order
    assert min(at_zero.index(i) for i in new) < len(at_zero) - len(new)  # some upload ahead of an original
    # reproducible: a second service over the same run ranks the same items the same way
    _, _, again = _search_after_upload(victim_run, tmp_path / "t", "random")
    assert again == hits


def test_unknown_tie_order_refused(victim_run, tmp_path):
    with pytest.raises(PadhashError, match="ties"):
        RetrievalEngine(victim_run, tmp_path / "s", ties="newest")
