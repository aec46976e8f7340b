import pytest
import torch
import torch.nn.functional as F

import padhash.hashing.trainer as trainer
from padhash.errors import PadhashError
from padhash.hashing import TrainConfig, encode, resolve_recipe, train_hash_model


class TinySplit:
    """The part of padhash.data.Split the trainer uses, on generated tensors."""

    def __init__(self, n=24, classes=3, size=16, seed=0):
        g = torch.Generator().manual_seed(seed)
        ys = torch.arange(n) % classes
        colour = torch.eye(3)[ys][:, :, None, None]
        self._x = (0.6 * colour + 0.4 * torch.rand(n, 3, size, size, generator=g)).clamp(0, 1)
        self.labels = F.one_hot(ys, classes).float()
        self.image_size = size

    def __len__(self):
        return len(self.labels)

    def images(self, idx=None):
        return self._x if idx is None else self._x[torch.as_tensor(idx)]


def die_after_first_checkpoint(monkeypatch):
    """Make the trainer raise KeyboardInterrupt right after it wrote epoch 1's checkpoint; returns the undo."""
    real_save = trainer._save_checkpoint

    def save_then_die(path, fingerprint, epoch, *args):
        real_save(path, fingerprint, epoch, *args)
        raise KeyboardInterrupt

    monkeypatch.setattr(trainer, "_save_checkpoint", save_then_die)
    return lambda: monkeypatch.setattr(trainer, "_save_checkpoint", real_save)


def tiny_cfg(**kw):
    base = dict(method="dpsh", bits=8, epochs=2, batch_size=8, seed=3)
    return TrainConfig(**{**base, **kw})


def weights(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_same_seed_same_weights_and_other_seed_differs():
    split = TinySplit()
    a = weights(train_hash_model(split, 3, tiny_cfg(), progress=False))
    b = weights(train_hash_model(split, 3, tiny_cfg(), progress=False))
    c = weights(train_hash_model(split, 3, tiny_cfg(seed=4), progress=False))
    assert same(a, b) and not same(a, c)


def test_trainer_leaves_the_global_rng_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    train_hash_model(TinySplit(), 3, tiny_cfg(epochs=1), progress=False)
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize("method", ["dpsh", "hashnet"])
def test_resume_after_a_kill_gives_bit_identical_weights(tmp_path, monkeypatch, method):
    split = TinySplit()
    cfg = tiny_cfg(method=method)
    uninterrupted = weights(train_hash_model(split, 3, cfg, checkpoint_dir=tmp_path / "a", progress=False))
    assert (tmp_path / "a" / "checkpoint.safetensors").is_file()

    undo = die_after_first_checkpoint(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        train_hash_model(split, 3, cfg, checkpoint_dir=tmp_path / "b", progress=False)
    undo()
    resumed = weights(train_hash_model(split, 3, cfg, checkpoint_dir=tmp_path / "b", progress=False))
    assert same(uninterrupted, resumed)


def test_checkpoint_records_the_torch_thread_counts_of_its_epochs(tmp_path, monkeypatch):
    from safetensors import safe_open

    def threads_of(folder):
        with safe_open(str(folder / "checkpoint.safetensors"), framework="pt") as fh:
            return fh.metadata()["torch_threads"]

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        train_hash_model(TinySplit(), 3, tiny_cfg(), checkpoint_dir=tmp_path / "a", progress=False)
        assert threads_of(tmp_path / "a") == "1"
        undo = die_after_first_checkpoint(monkeypatch)
        with pytest.raises(KeyboardInterrupt):
            train_hash_model(TinySplit(), 3, tiny_cfg(), checkpoint_dir=tmp_path / "b", progress=False)
        undo()
        torch.set_num_threads(2)  # the resumed epochs run on another count: both are named
        train_hash_model(TinySplit(), 3, tiny_cfg(), checkpoint_dir=tmp_path / "b", progress=False)
        assert threads_of(tmp_path / "b") == "1,2"
    finally:
        torch.set_num_threads(before)


def test_finished_checkpoint_is_reused_and_foreign_one_refused(tmp_path, monkeypatch):
    split = TinySplit()
    first = weights(train_hash_model(split, 3, tiny_cfg(epochs=1), checkpoint_dir=tmp_path, progress=False))
    monkeypatch.setattr(trainer, "augment_batch", lambda *a: pytest.fail("no training expected"))
    again = weights(train_hash_model(split, 3, tiny_cfg(epochs=1), checkpoint_dir=tmp_path, progress=False))
    assert same(first, again)
    with pytest.raises(PadhashError, match="different training config"):
        train_hash_model(split, 3, tiny_cfg(epochs=1, bits=16), checkpoint_dir=tmp_path, progress=False)


def test_training_separates_classes_and_encode_gives_int8_codes():
    split = TinySplit(n=30)
    model = train_hash_model(split, 3, tiny_cfg(method="csq", epochs=6, bits=16), progress=False)
    codes = encode(model, split, batch_size=7)
    assert codes.dtype == torch.int8 and codes.shape == (30, 16) and set(codes.unique().tolist()) <= {-1, 1}
    assert torch.equal(codes, encode(model, split.images()))
    c = codes.float()
    dist = (16 - c @ c.T) / 2
    same_class = split.labels @ split.labels.T > 0
    assert dist[same_class].mean() + 3 < dist[~same_class].mean()


def test_augmentation_is_seeded_and_shape_preserving():
    x = torch.rand(4, 3, 16, 16)
    a = trainer.augment_batch(x, torch.Generator().manual_seed(0), hflip=True)
    b = trainer.augment_batch(x, torch.Generator().manual_seed(0), hflip=True)
    assert a.shape == x.shape and torch.equal(a, b) and not torch.equal(a, x)


def test_recipes_and_bad_values():
    assert resolve_recipe(TrainConfig()).optimizer == "adam"
    paper = resolve_recipe(TrainConfig(optimizer="rmsprop"))
    assert (paper.lr, paper.weight_decay, paper.schedule) == (1e-5, 1e-5, "constant")
    cosine = resolve_recipe(TrainConfig())
    assert cosine.lr_at(0, 10) == pytest.approx(1e-3) and cosine.lr_at(5, 10) == pytest.approx(5e-4)
    for bad, match in [(dict(method="lsh"), "unknown hashing method"), (dict(backbone="x"), "unknown backbone"),
                       (dict(epochs=-1), "epochs"), (dict(optimizer="lbfgs"), "optimizer"),
                       (dict(lr=0.0), "lr must be"), (dict(weights="/no/such.safetensors"), "no such weights")]:
        with pytest.raises(PadhashError, match=match):
            train_hash_model(TinySplit(), 3, tiny_cfg(**bad), progress=False)
