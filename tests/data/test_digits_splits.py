import pytest
import torch

from padhash.data import DATASETS, DataConfig, FileSplit, TensorSplit, load_dataset, load_dataset_from, stolen_subset
from padhash.errors import PadhashError


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", seed=0)


def test_digits_shapes_ranges_and_paper_preset(digits):
    assert digits.num_classes == 10 and digits.class_names[3] == "3"
    assert digits.train is digits.database  # paper preset: the training set is searched
    assert len(digits.query) + len(digits.database) == 1797
    x = digits.query.images()
    assert x.dtype == torch.float32 and x.shape[1:] == (3, 32, 32)
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0 and float(x.max()) > 0.9
    assert torch.equal(x[:, 0], x[:, 1]) and torch.equal(x[:, 0], x[:, 2])  # grey digits repeated to RGB
    labels = digits.query.labels
    assert labels.dtype == torch.float32 and torch.all(labels.sum(1) == 1)
    per_class = labels.sum(0)
    assert per_class.min() >= 17 and per_class.max() <= 19  # ~10% of each ~180-image class


def test_digits_deterministic_and_seed_dependent(digits):
    again = load_dataset_from(DataConfig(name="digits", seed=0))
    other = load_dataset("digits", seed=1)
    assert torch.equal(again.query.images(), digits.query.images())
    assert torch.equal(again.database.labels, digits.database.labels)
    assert not torch.equal(other.query.images(), digits.query.images())


def test_data_config_from_yaml_dict():
    from padhash.config import from_dict
    cfg = from_dict(DataConfig, {"name": "digits", "seed": 2, "options": {"max_queries": 30}}, "data")
    ds = load_dataset_from(cfg)
    assert len(ds.query) == 30 and torch.all(ds.query.labels.sum(0) == 3)
    with pytest.raises(PadhashError, match="data: unknown key"):
        from_dict(DataConfig, {"nmae": "digits"}, "data")


def test_digits_options(digits):
    ds = load_dataset("digits", seed=0, image_size=16, train_per_class=20, max_queries=50, query_fraction=0.2)
    assert ds.train is not ds.database and len(ds.train) == 200
    assert torch.all(ds.train.labels.sum(0) == 20)
    assert len(ds.query) == 50 and torch.all(ds.query.labels.sum(0) >= 4)
    assert ds.query.images().shape[1:] == (3, 16, 16)
    assert "digits" in DATASETS


@pytest.mark.parametrize("kwargs, message", [
    (dict(name="nope"), "unknown dataset 'nope'"),
    (dict(name="digits", colour=1), "unknown option(s) colour"),
    (dict(name="digits", preset="deephash"), "unknown preset 'deephash'"),
    (dict(name="digits", image_size=0), "image_size must be a positive integer"),
    (dict(name="digits", query_fraction=1.5), "query_fraction must be in (0, 1)"),
    (dict(name="digits", max_queries=0), "max_queries must be a positive integer"),
    (dict(name="digits", seed="1"), "seed must be a non-negative integer"),
    (dict(name="digits", train_per_class=0), "train_per_class must be a positive integer"),
    (dict(name="digits", train_per_class=200), "too few for per-class split"),
])
def test_bad_options_give_one_line_errors(kwargs, message):
    with pytest.raises(PadhashError, match=None) as info:
        load_dataset(**kwargs)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_stolen_subset_stratified_sorted_deterministic(digits):
    idx = stolen_subset(digits.train, 0.1, seed=5)
    assert idx.dtype == torch.long and torch.equal(idx, torch.sort(idx).values) and len(set(idx.tolist())) == len(idx)
    counts = digits.train.labels[idx].sum(0)
    class_sizes = digits.train.labels.sum(0)
    assert torch.all((counts - 0.1 * class_sizes).abs() <= 0.5 + 1e-6)
    assert torch.equal(idx, stolen_subset(digits.train, 0.1, seed=5))
    assert not torch.equal(idx, stolen_subset(digits.train, 0.1, seed=6))
    assert torch.equal(stolen_subset(digits.train, 1.0, seed=0), torch.arange(len(digits.train)))
    tiny = stolen_subset(digits.train, 0.0001, seed=0)  # at least one per class
    assert len(tiny) == 10 and torch.all(digits.train.labels[tiny].sum(0) == 1)


@pytest.mark.parametrize("fraction", [0.0, -0.1, 1.5, "half"])
def test_stolen_subset_rejects_bad_fraction(digits, fraction):
    with pytest.raises(PadhashError, match="stolen fraction must be in"):
        stolen_subset(digits.train, fraction, seed=0)


def test_stolen_subset_multilabel_stratifies_by_first_label():
    labels = torch.tensor([[1, 1, 0]] * 10 + [[0, 1, 1]] * 10 + [[0, 0, 1]] * 20, dtype=torch.float32)
    split = TensorSplit(torch.zeros(40, 3, 2, 2), labels)
    idx = stolen_subset(split, 0.25, seed=0)
    first = labels[idx].argmax(1)
    assert (first == 0).sum() == 2 and (first == 1).sum() == 2 and (first == 2).sum() == 5


def _check_split_ops(split, n):
    labels = split.labels
    base = split.images()
    poison = torch.full((2, 3, base.shape[-1], base.shape[-1]), 0.5)
    replaced = split.replace([1, 3], poison)
    assert torch.equal(replaced.images([1, 3]), poison) and torch.equal(replaced.labels, labels)
    assert torch.equal(replaced.images([0, 2]), base[[0, 2]])
    assert torch.equal(split.images(), base)  # the original is untouched
    sub = replaced.subset(torch.tensor([3, 0]))
    assert torch.equal(sub.images(), torch.stack([poison[1], base[0]])) and torch.equal(sub.labels, labels[[3, 0]])
    grown = replaced.append(poison, labels[:2])
    assert len(grown) == n + 2 and torch.equal(grown.images([n, n + 1]), poison)
    assert torch.equal(grown.labels[n:], labels[:2])
    with pytest.raises(PadhashError, match="expected 1 images"):
        split.replace([0], poison)
    with pytest.raises(IndexError):
        split.images([n])
    mask = torch.zeros(n, dtype=torch.bool)
    mask[[0, 2]] = True
    assert torch.equal(split.images(mask), base[[0, 2]]) and torch.equal(split.images([-1]), base[[n - 1]])


def test_tensor_split_replace_subset_append():
    g = torch.Generator().manual_seed(0)
    labels = torch.eye(2)[torch.tensor([0, 1, 0, 1])]
    split = TensorSplit(torch.rand(4, 3, 5, 5, generator=g), labels)
    assert len(split) == 4 and split.image_size == 5
    _check_split_ops(split, 4)


def test_file_split_replace_subset_append(tmp_path):
    from PIL import Image
    paths = []
    for i in range(4):
        path = tmp_path / f"{i}.png"
        Image.new("RGB", (12, 8), (60 * i, 255 - 60 * i, 7)).save(path)
        paths.append(path)
    split = FileSplit(paths, torch.eye(2)[torch.tensor([0, 1, 0, 1])], image_size=6)
    x = split.images()
    assert x.shape == (4, 3, 6, 6)
    assert torch.allclose(x[2, :, 0, 0], torch.tensor([120, 135, 7]) / 255.0, atol=1 / 255)
    _check_split_ops(split, 4)
