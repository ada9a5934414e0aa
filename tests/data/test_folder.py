"""ImageFolder (minigrad/data/folder.py) on small images generated here: torchvision's layout and label order,
every image mode as RGB, resize/crop, unreadable files named or skipped and counted, empty class folders, the
cache file (reused, invalidated when a file changes, written whole), and ``minigrad train --dataset folder``."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from minigrad import cli, train
from minigrad.data import ArrayDataset, ImageFolder, folder
from minigrad.data.folder import train_test_folders
from tests.test_train import one_blas_thread  # noqa: F401  (an autouse fixture: tiny runs, 1 BLAS thread)

RED, GREEN, BLUE = (200, 30, 40), (20, 180, 60), (10, 40, 220)


def solid(path: Path, colour: tuple[int, int, int], size: tuple[int, int] = (32, 32), **options) -> Path:
    """Save a one-colour RGB image (width, height) at ``path`` (the format follows the suffix)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path, **options)
    return path


def make_tree(root: Path, counts: dict[str, tuple[tuple[int, int, int], int]]) -> Path:
    """root/<class>/<n>.png for each class: ``counts[class] = (colour, how many)``."""
    for name, (colour, count) in counts.items():
        for index in range(count):
            solid(root / name / f"{index:02d}.png", colour)
    return root


# ----- layout, labels and pixels ---------------------------------------------------------------------
def test_classes_are_sorted_subfolders_and_labels_follow_them(tmp_path):
    root = tmp_path / "pets"
    solid(root / "dog" / "b.png", RED, (40, 60))          # portrait PNG, resized
    solid(root / "dog" / "a.jpg", GREEN, (32, 32), quality=100)
    solid(root / "dog" / "puppies" / "c.bmp", BLUE)        # a subfolder of a class belongs to it
    solid(root / "cat" / "z.webp", BLUE, lossless=True)
    (root / ".hidden-dir").mkdir()                          # hidden entries are no class and no image
    solid(root / "cat" / ".thumbnail.png", RED)
    dataset = ImageFolder(root, progress=False)

    assert dataset.classes == ["cat", "dog"] and dataset.class_to_idx == {"cat": 0, "dog": 1}
    assert [path.relative_to(root).as_posix() for path in dataset.files] == ["cat/z.webp", "dog/a.jpg", "dog/b.png",
                                                                             "dog/puppies/c.bmp"]
    assert dataset.labels.tolist() == [0, 1, 1, 1] and dataset.labels.dtype == np.int64
    assert dataset.images.shape == (4, 3, 32, 32) and dataset.images.dtype == np.uint8
    assert (dataset.images[0] == np.array(BLUE)[:, None, None]).all()   # lossless WebP
    assert np.abs(dataset.images[1].astype(int) - np.array(GREEN)[:, None, None]).max() <= 3  # JPEG, quality 100
    assert (dataset.images[2] == np.array(RED)[:, None, None]).all()    # resizing one colour keeps it exactly
    image, label = dataset[2]
    assert image.dtype == np.float32 and label == 1 and np.allclose(image[:, 0, 0], np.array(RED) / 255)
    assert isinstance(dataset, ArrayDataset) and "ImageFolder" in repr(dataset)


def test_crop_keeps_the_centre_and_stretch_keeps_everything(tmp_path):
    ramp = np.tile((np.arange(64) * 4).astype(np.uint8), (32, 1))    # 64 wide, 32 high: value = 4 * column
    path = tmp_path / "root" / "ramp" / "ramp.png"
    path.parent.mkdir(parents=True)
    Image.fromarray(ramp).save(path)
    cropped = ImageFolder(tmp_path / "root", progress=False).images[0, 0]
    assert np.array_equal(cropped, np.tile(ramp[0, 16:48], (32, 1)))  # shorter side already 32: columns 16..47
    stretched = ImageFolder(tmp_path / "root", resize="stretch", progress=False).images[0, 0]
    assert stretched.shape == (32, 32) and stretched[0, 0] < 10 and stretched[0, -1] > 240  # both ends kept
    small = ImageFolder(tmp_path / "root", size=8, progress=False)
    assert small.images.shape == (1, 3, 8, 8)


def test_odd_modes_arrive_as_rgb(tmp_path):
    root = tmp_path / "modes" / "all"
    root.mkdir(parents=True)
    Image.new("L", (32, 32), 100).save(root / "1-grey.png")
    Image.fromarray(np.full((32, 32), 257 * 200, dtype=np.uint16)).save(root / "2-deep.png")  # 16-bit grey
    rgba = np.zeros((32, 32, 4), dtype=np.uint8)
    rgba[..., :3] = RED                                        # transparent red: white paper, not red
    Image.fromarray(rgba, "RGBA").save(root / "3-alpha.png")
    palette = Image.new("P", (32, 32), 1)
    palette.putpalette([0, 0, 0, *GREEN] + [0] * 762)
    palette.save(root / "4-palette.gif")
    Image.new("CMYK", (32, 32), (0, 0, 0, 0)).save(root / "5-cmyk.tif")  # no ink: white
    images = ImageFolder(tmp_path / "modes", progress=False).images
    expected = [(100, 100, 100), (200, 200, 200), (255, 255, 255), GREEN, (255, 255, 255)]
    assert [tuple(image[:, 5, 7].tolist()) for image in images] == expected


# ----- bad input ---------------------------------------------------------------------------------------
def broken_tree(tmp_path: Path) -> Path:
    root = make_tree(tmp_path / "data", {"cat": (RED, 2), "dog": (BLUE, 2)})
    (root / "cat" / "notes.txt").write_text("not an image")
    jpeg = solid(root / "dog" / "cut.jpg", BLUE, (64, 64))
    jpeg.write_bytes(jpeg.read_bytes()[:200])  # truncated
    return root


def test_an_unreadable_file_is_named_and_skipping_it_is_an_explicit_choice(tmp_path):
    root = broken_tree(tmp_path)
    with pytest.raises(ValueError, match=r"cat/notes.txt is not an image file.*bad_files='skip'"):
        ImageFolder(root, progress=False)
    with pytest.warns(UserWarning, match=r"skipped 2 unreadable file\(s\) in .*notes.txt.*cut.jpg"):
        dataset = ImageFolder(root, bad_files="skip", progress=False)
    assert len(dataset) == 4 and dataset.labels.tolist() == [0, 0, 1, 1]
    assert [Path(path).name for path, _ in dataset.skipped] == ["notes.txt", "cut.jpg"]
    assert "truncated or corrupt" in dataset.skipped[1][1] and "skipped=2" in repr(dataset)
    with pytest.raises(ValueError, match="bad_files must be 'error' or 'skip'"):
        ImageFolder(root, bad_files="ignore")


def test_an_empty_class_folder_is_named(tmp_path):
    root = make_tree(tmp_path / "data", {"cat": (RED, 2)})
    (root / "dog").mkdir()
    with pytest.raises(ValueError, match=rf"class folder {root / 'dog'} holds no files"):
        ImageFolder(root, progress=False)
    (root / "dog" / "readme.md").write_text("# dogs")  # nothing readable left once skipped
    with pytest.raises(ValueError, match=r"dog holds no readable image \(all 1 of its files were skipped"):
        ImageFolder(root, bad_files="skip", progress=False)


def test_a_root_without_class_folders_says_what_it_expected(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nowhere does not exist"):
        ImageFolder(tmp_path / "nowhere")
    loose = tmp_path / "loose"
    solid(loose / "cat.png", RED)
    with pytest.raises(ValueError, match=r"loose has no class folders \(it holds 1 loose file.*/cat/0001.jpg"):
        ImageFolder(loose)
    with pytest.raises(NotADirectoryError, match="is a file"):
        ImageFolder(loose / "cat.png")


def test_a_test_set_must_have_the_training_classes(tmp_path):
    root = make_tree(tmp_path / "val", {"cat": (RED, 1), "cow": (GREEN, 1)})
    with pytest.raises(ValueError, match=r"missing \['dog'\], unexpected \['cow'\]"):
        ImageFolder(root, classes=["cat", "dog"], progress=False)


def test_decoding_shows_a_progress_bar(tmp_path, capsys):
    ImageFolder(make_tree(tmp_path / "data", {"cat": (RED, 3)}), progress=True)
    error = capsys.readouterr().err
    assert "decoding" in error and "3/3" in error


# ----- the cache ---------------------------------------------------------------------------------------
def no_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("decoded although the cache is valid")

    monkeypatch.setattr(folder, "load_image", refuse)


def test_the_cache_is_reused_until_a_file_changes(tmp_path, monkeypatch):
    root = make_tree(tmp_path / "data", {"cat": (RED, 2), "dog": (BLUE, 2)})
    cache = tmp_path / "cache"
    first = ImageFolder(root, cache=cache, progress=False)
    assert first.cache_path.parent == cache and first.cache_path.is_file()
    assert [path.name for path in cache.iterdir()] == [first.cache_path.name], "no temporary file is left behind"

    with monkeypatch.context() as patch:
        no_decoding(patch)
        again = ImageFolder(root, cache=cache, progress=False)
    assert np.array_equal(again.images, first.images) and again.labels.tolist() == first.labels.tolist()

    solid(root / "cat" / "00.png", GREEN)                     # edited: new pixels, new size or time
    os.utime(root / "cat" / "00.png", ns=(1, 1))
    edited = ImageFolder(root, cache=cache, progress=False)
    assert tuple(edited.images[0, :, 0, 0]) == GREEN
    solid(root / "dog" / "02.png", RED)                       # added
    assert len(ImageFolder(root, cache=cache, progress=False)) == 5
    (root / "dog" / "02.png").unlink()                         # removed
    assert len(ImageFolder(root, cache=cache, progress=False)) == 4
    other_size = ImageFolder(root, size=16, cache=cache, progress=False)  # other settings, another file
    assert other_size.images.shape[-1] == 16 and len(list(cache.iterdir())) == 2


def test_cache_true_lives_next_to_the_data_and_is_not_a_class(tmp_path, monkeypatch):
    root = make_tree(tmp_path / "data", {"cat": (RED, 2)})
    dataset = ImageFolder(root, cache=True, progress=False)
    assert dataset.cache_path.parent == root / folder.CACHE_FOLDER and dataset.cache_path.is_file()
    no_decoding(monkeypatch)
    assert ImageFolder(root, cache=True, progress=False).classes == ["cat"]


def test_a_damaged_cache_is_decoded_again_and_an_unwritable_one_only_warns(tmp_path, monkeypatch):
    root = make_tree(tmp_path / "data", {"cat": (RED, 2)})
    cache = tmp_path / "cache"
    path = ImageFolder(root, cache=cache, progress=False).cache_path
    path.write_bytes(path.read_bytes()[:100])
    with pytest.warns(UserWarning, match="ignoring the unreadable cache"):
        assert len(ImageFolder(root, cache=cache, progress=False)) == 2
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ImageFolder(root, cache=cache, progress=False)  # rewritten whole by the previous call: no warning
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the cache folder should be")
    with pytest.warns(UserWarning, match="cannot write the cache"):
        assert len(ImageFolder(root, cache=blocked, progress=False)) == 2


def test_a_cache_write_that_fails_leaves_no_file(tmp_path, monkeypatch):
    root = make_tree(tmp_path / "data", {"cat": (RED, 2)})
    cache = tmp_path / "cache"

    def disk_full(file, **arrays):
        file.write(b"half a cache")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(folder.numpy, "savez", disk_full)
    with pytest.warns(UserWarning, match="could not write the cache.*No space left"):
        assert len(ImageFolder(root, cache=cache, progress=False)) == 2
    assert list(cache.iterdir()) == []


# ----- train/ and test/, and minigrad train --dataset folder -------------------------------------------
def split_tree(root: Path, test_name: str = "test") -> Path:
    for split, count in (("train", 8), (test_name, 4)):
        make_tree(root / split, {"red": (RED, count), "blue": (BLUE, count)})
    return root


def test_train_and_test_folders(tmp_path):
    train_set, test_set = train_test_folders(split_tree(tmp_path / "d", "val"), progress=False)
    assert train_set.root.name == "train" and test_set.root.name == "val" and len(test_set) == 8
    assert train_set.classes == test_set.classes == ["blue", "red"]
    (tmp_path / "d" / "test").mkdir()  # test/ is preferred over val/ when both exist
    with pytest.raises(ValueError, match=r"test has no class folders"):
        train_test_folders(tmp_path / "d", progress=False)


def test_a_folder_without_train_and_test_names_what_it_looked_for(tmp_path, capsys):
    data = make_tree(tmp_path / "flat", {"cat": (RED, 1), "dog": (BLUE, 1)})
    with pytest.raises(FileNotFoundError, match=r"has no train/ folder \(looked for .*flat/train and .*flat/test or "
                                                r".*flat/val; found \['cat', 'dog'\]\)"):
        train_test_folders(data)
    make_tree(data / "train", {"cat": (RED, 1)})
    with pytest.raises(FileNotFoundError, match=r"has no test/ or val/ folder"):
        train_test_folders(data)
    status = cli.main(["train", "--dataset", "folder", "--data-dir", str(data), "--out", str(tmp_path / "run")])
    error = capsys.readouterr().err
    assert status == 1 and error.startswith("minigrad train: folder dataset:") and "Traceback" not in error
    assert not (tmp_path / "run").exists(), "nothing is written for a run that cannot start"


def test_minigrad_train_on_a_folder_records_the_classes(tmp_path, capsys):
    data = split_tree(tmp_path / "colours")
    out = tmp_path / "run"
    status = cli.main(["train", "--dataset", "folder", "--data-dir", str(data), "--epochs", "1", "--batch-size", "4",
                       "--width", "0.125", "--out", str(out), "--quiet", "--cache-dir", str(tmp_path / "cache")])
    assert status == 0, capsys.readouterr().err
    config = json.loads((out / "config.json").read_text())
    assert config["classes"] == ["blue", "red"] and config["dataset"] == "folder"
    assert sorted(os.listdir(out)) == ["checkpoint.npz", "config.json", "curves.png", "metrics.csv"]
    assert len(list((tmp_path / "cache").iterdir())) == 2, "one cache file for train/, one for test/"

    (data / "train" / "red" / "00.png").write_text("broken")
    assert cli.main(["train", "--dataset", "folder", "--data-dir", str(data), "--out", str(out), "--quiet"]) == 1
    assert "00.png is not an image file" in capsys.readouterr().err
    with pytest.warns(UserWarning, match="skipped 1 unreadable"):
        train_set, _ = train.build_datasets(train.TrainConfig(dataset="folder", data_dir=str(data),
                                                              skip_bad_images=True, progress=False))
    assert len(train_set) == 15


def test_limit_train_on_a_folder_takes_every_class(tmp_path):
    data = split_tree(tmp_path / "colours")
    config = train.TrainConfig(dataset="folder", data_dir=str(data), limit_train=6, progress=False)
    train_set, _ = train.build_datasets(config)
    assert len(train_set) == 6 and set(train_set.labels.tolist()) == {0, 1}, "the first 6 would all be 'blue'"
    assert train_set.labels.tolist() == sorted(train_set.labels.tolist())
