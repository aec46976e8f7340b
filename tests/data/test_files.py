import pytest
import torch
from PIL import Image

from padhash.data import FileSplit, load_dataset
from padhash.errors import PadhashError

COLOURS = [(250, 10, 10), (10, 250, 10), (10, 10, 250)]


def _png(path, colour, size=(10, 10)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)


def _image_list(root, with_names=True):
    """9 images; labels are multi-hot over 3 classes (image i carries class i % 3, and class 2 when i % 4 == 0)."""
    rows = []
    for i in range(9):
        _png(root / "img" / f"{i}.png", COLOURS[i % 3])
        labels = [int(c == i % 3 or (c == 2 and i % 4 == 0)) for c in range(3)]
        rows.append(f"img/{i}.png " + " ".join(map(str, labels)))
    (root / "train.txt").write_text("\n".join(rows[:5]) + "\n")
    (root / "test.txt").write_text("\n".join(rows[5:7]) + "\n\n")
    (root / "database.txt").write_text("\n".join(rows) + "\n")
    if with_names:
        (root / "classes.txt").write_text("red\ngreen\nblue\n")
    return root


def test_image_list_multilabel(tmp_path):
    ds = load_dataset("image-list", str(_image_list(tmp_path / "lists")), image_size=8)
    assert ds.class_names == ["red", "green", "blue"] and ds.name == "lists"
    assert (len(ds.train), len(ds.query), len(ds.database)) == (5, 2, 9)
    assert isinstance(ds.database, FileSplit) and ds.train is not ds.database
    assert ds.train.labels[0].tolist() == [1, 0, 1] and ds.train.labels[4].tolist() == [0, 1, 1]
    x = ds.database.images([4, 2])
    assert x.shape == (2, 3, 8, 8)
    assert torch.allclose(x[0, :, 3, 3], torch.tensor(COLOURS[1]) / 255, atol=1 / 255)
    assert torch.allclose(x[1, :, 3, 3], torch.tensor(COLOURS[2]) / 255, atol=1 / 255)


def test_image_list_data_path_and_default_names(tmp_path):
    root = _image_list(tmp_path / "lists", with_names=False)
    (tmp_path / "elsewhere").mkdir()
    (root / "img").rename(tmp_path / "elsewhere" / "img")
    ds = load_dataset("image-list", str(root), data_path=str(tmp_path / "elsewhere"), image_size=4, max_queries=1)
    assert ds.class_names == ["0", "1", "2"] and len(ds.query) == 1
    assert ds.train.images().shape == (5, 3, 4, 4)


LIST_ERRORS = [
    (lambda r: (r / "database.txt").unlink(), "database.txt: no such file"),
    (lambda r: (r / "img" / "3.png").unlink(), "3.png: no such file (listed in"),
    (lambda r: (r / "test.txt").write_text("img/0.png 1 0\n"), "test.txt:1: 2 labels, expected 3"),
    (lambda r: (r / "train.txt").write_text("img/0.png 1 0 2\n"), "train.txt:1: labels must be 0 or 1"),
    (lambda r: (r / "train.txt").write_text("img/0.png\n"), "train.txt:1: expected 'relative/path.jpg 0 1 0 ...'"),
    (lambda r: (r / "test.txt").write_text("\n"), "test.txt: no images listed"),
    (lambda r: (r / "train.txt").write_text("img/0.png 1 0 0\nimg/1.png 1 0 0\n"),
     "train.txt: no images for class(es) 1 (green), 2 (blue)"),
    (lambda r: (r / "classes.txt").write_text("red\ngreen\n"), "classes.txt: 2 class names, but the lists have 3"),
]


@pytest.mark.parametrize("damage, message", LIST_ERRORS)
def test_image_list_errors(tmp_path, damage, message):
    root = _image_list(tmp_path / "lists")
    damage(root)
    with pytest.raises(PadhashError) as info:
        load_dataset("image-list", str(root))
    assert message in str(info.value) and "\n" not in str(info.value)


def test_bad_image_file_named_when_read(tmp_path):
    root = _image_list(tmp_path / "lists")
    (root / "img" / "1.png").write_bytes(b"this is not a png")
    ds = load_dataset("image-list", str(root), image_size=8)
    with pytest.raises(PadhashError, match=r"1\.png: not a readable image"):
        ds.train.images()


def _folder(root, counts=(5, 6, 7)):
    for c, n in enumerate(counts):
        for i in range(n):
            _png(root / f"class_{c}" / f"{i}.{'png' if i % 2 else 'jpg'}", COLOURS[c], size=(12, 9))
    return root


def test_image_folder_split(tmp_path):
    root = _folder(tmp_path / "folder")
    (root / "class_1" / "notes.txt").write_text("ignored")
    ds = load_dataset("image-folder", str(root), image_size=6, query_fraction=0.2, seed=3)
    assert ds.class_names == ["class_0", "class_1", "class_2"] and ds.train is ds.database
    assert ds.query.labels.sum(0).tolist() == [1, 1, 1] and len(ds.database) == 15
    x = ds.query.images()
    assert x.shape == (3, 3, 6, 6)
    assert torch.allclose(x[2, :, 2, 2], torch.tensor(COLOURS[2]) / 255, atol=3 / 255)  # jpg is lossy
    again = load_dataset("image-folder", str(root), image_size=6, query_fraction=0.2, seed=3)
    assert again.query.paths == ds.query.paths
    picked = load_dataset("image-folder", str(root), image_size=6, train_per_class=2)
    assert len(picked.train) == 6 and picked.train is not picked.database


def test_image_folder_errors(tmp_path):
    root = _folder(tmp_path / "folder")
    (root / "class_3").mkdir()
    with pytest.raises(PadhashError, match=r"class_3: no images"):
        load_dataset("image-folder", str(root))
    with pytest.raises(PadhashError, match="no such folder"):
        load_dataset("image-folder", str(tmp_path / "missing"))
    (root / "class_3").rmdir()
    single = _folder(tmp_path / "single", counts=(1, 3))
    with pytest.raises(PadhashError, match="too few for per-class split"):
        load_dataset("image-folder", str(single))
    with pytest.raises(PadhashError, match="needs root"):
        load_dataset("image-folder")
