import numpy as np
import pytest
import torch
from PIL import Image

from padhash.data import DATASETS, load_dataset
from padhash.data.clips import ClipSplit, frame_indices
from padhash.errors import PadhashError


def _frame(path, value, size=(6, 6)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (value, value, value)).save(path)


def _clip_folder(root, classes=2, clips=10, frames=5):
    """JHMDB layout root/<class>/<clip>/<00001.png>: frame f of every clip has grey value 40·f + class."""
    for c in range(classes):
        for k in range(clips):
            for f in range(frames):
                _frame(root / f"class{c}" / f"clip{k}" / f"{f + 1:05d}.png", 40 * f + c)
    return root


def test_frame_indices_stride_and_padding():
    assert frame_indices(10, 4, 3) == [0, 3, 6, 9]
    assert frame_indices(5, 4, 2) == [0, 2, 4, 4]  # short clip: last kept frame repeated


def test_clip_folder_split_length_stride(tmp_path):
    ds = load_dataset("clip-folder", str(_clip_folder(tmp_path / "v")), image_size=4, clip_length=3, frame_stride=2)
    assert ds.class_names == ["class0", "class1"]
    assert (len(ds.train), len(ds.query), len(ds.database)) == (18, 2, 18) and ds.train is ds.database
    clips = ds.query.images()
    assert clips.shape == (2, 3, 3, 4, 4) and isinstance(ds.query, ClipSplit) and ds.query.frames == 3
    c = int(ds.query.labels[0].argmax())
    assert torch.allclose(clips[0, :, 0, 2, 2] * 255, torch.tensor([0.0, 80, 160]) + c, atol=1)


def test_clip_npz_multihot_and_options(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (20, 6, 8, 8, 3), dtype=np.uint8)
    y = np.zeros((20, 3), np.uint8)
    y[np.arange(20), np.arange(20) % 3] = 1
    y[::4, 2] = 1
    np.savez(tmp_path / "c.npz", clips=x, labels=y)
    ds = load_dataset("clip-npz", str(tmp_path / "c.npz"), clip_length=3, frame_stride=2, seed=1)
    assert ds.train.images().shape[1:] == (3, 3, 8, 8) and ds.num_classes == 3
    assert len(ds.query) + len(ds.database) == 20
    whole = torch.cat([ds.query.labels, ds.database.labels]).sum(0)
    assert whole.tolist() == torch.as_tensor(y, dtype=torch.float32).sum(0).tolist()


def _damage_gap(root):
    (root / "class0" / "clip2" / "00003.png").unlink()


def _damage_size(root):
    _frame(root / "class1" / "clip2" / "00002.png", 9, size=(7, 6))


def _damage_empty_class(root):
    import shutil
    shutil.rmtree(root / "class1")
    (root / "class1").mkdir()


def _damage_empty_clip(root):
    import shutil
    shutil.rmtree(root / "class0" / "clip1")
    (root / "class0" / "clip1").mkdir()


@pytest.mark.parametrize("damage, message", [
    (_damage_gap, "clip2: missing frame number(s) 3"),
    (_damage_size, "clip2: frames of different sizes"),
    (_damage_empty_class, "class1: no clip folders"),
    (_damage_empty_clip, "clip1: no frames"),
])
def test_clip_folder_errors(tmp_path, damage, message):
    root = _clip_folder(tmp_path / "v", clips=3)
    damage(root)
    with pytest.raises(PadhashError) as info:
        load_dataset("clip-folder", str(root))
    assert message in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("arrays, message", [
    ({"clips": np.zeros((4, 2, 5, 5, 3), np.uint8), "labels": np.array([0, 1, 2, 7]), "class_names": np.array(["a", "b", "c"])},
     "class index out of range 0..2"),
    ({"clips": np.zeros((4, 2, 5, 5, 3), np.uint8), "labels": np.zeros((3, 2), np.uint8)}, "expected 4 labels"),
    ({"clips": np.zeros((4, 5, 5, 3), np.uint8), "labels": np.zeros(4, np.int64)}, "clips must be uint8 of shape"),
    ({"clips": np.zeros((4, 2, 5, 5, 3), np.uint8)}, "missing array(s) labels"),
])
def test_clip_npz_errors(tmp_path, arrays, message):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(PadhashError) as info:
        load_dataset("clip-npz", str(tmp_path / "bad.npz"))
    assert message in str(info.value) and "\n" not in str(info.value)


def test_frame_option_errors():
    with pytest.raises(PadhashError, match="clip_length must be 1..40"):
        load_dataset("digits-motion", clip_length=41)
    with pytest.raises(PadhashError, match="frame_stride must be a positive integer"):
        load_dataset("digits-motion", frame_stride=0)


def test_digits_motion_order_is_the_only_cue():
    ds = load_dataset("digits-motion", clips_per_class=10)
    assert "digits-motion" in DATASETS and "digits-mosaic" in DATASETS and "clip-folder" in DATASETS
    assert ds.num_classes == 8 and ds.train.images().shape[1:] == (8, 3, 32, 32)
    clips = torch.cat([ds.query.images(), ds.database.images()])
    labels = torch.cat([ds.query.labels, ds.database.labels]).argmax(1)
    # a class and its reverse pass through the same positions: the mean over frames of the tile's centre of mass
    # is the same for forward and backward clips of an axis, while the first frame's differs
    ys, xs = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    mass = clips[:, :, 0]
    com = torch.stack([(mass * xs).sum((2, 3)), (mass * ys).sum((2, 3))], -1) / mass.sum((2, 3))[..., None]
    for axis in range(4):
        fwd, bwd = com[labels == 2 * axis], com[labels == 2 * axis + 1]
        assert (fwd.mean(1).mean(0) - bwd.mean(1).mean(0)).abs().max() < 3
        assert (fwd[:, 0] - bwd[:, 0]).mean(0).abs().max() > 8


def test_digits_mosaic_multilabel():
    ds = load_dataset("digits-mosaic", num_images=200)
    labels = torch.cat([ds.query.labels, ds.database.labels])
    assert ds.num_classes == 10 and ds.train.images().shape[1:] == (3, 32, 32)
    assert labels.sum(1).min() >= 1 and labels.sum(1).max() <= 4 and (labels.sum(1) > 1).float().mean() > 0.5
    with pytest.raises(PadhashError, match="blank must be in"):
        load_dataset("digits-mosaic", blank=1.0)
