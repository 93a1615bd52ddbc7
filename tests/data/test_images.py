"""The `image_folder` dataset on real images nobody here wrote, written out as PNG folders.

Fashion-MNIST images come from the repository's IDX fixture and scikit-learn's
digits from `load_digits`; each test saves them with Pillow into one folder
per class under `tmp_path`, as a user's photos would be, and reads them back
through the registry. The `isolated` fixture keeps the decoded cache in `tmp_path`.
Tests taking the `decoding` fixture run twice: decoding in threads, and in
forked processes even for a few images (`images.PROCESSES_FROM` lowered).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import resource
import signal
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.datasets import load_digits

import tricklab.data.images as images
from tricklab.data import INPUT_SHAPES, datasets, load_dataset, read_idx
from tricklab.errors import UserInputError
from tricklab.recipe import recipe_from_dict
from tricklab.run import train_recipe

FASHION = Path(__file__).resolve().parent / "fixtures" / "fashion_mnist"
KEPT = {1: "Trouser", 2: "Pullover", 5: "Sandal", 8: "Bag"}
"""Fashion-MNIST classes written out (names without a `/`), 60 images each."""
FORKING = images._FORK
"""Whether this platform decodes in forked processes (Linux)."""


class Forks:
    """How many times this process has forked (counted by `os.register_at_fork`).

    A process forked from this one, such as a pool's worker, inherits the count
    and the counting.
    """

    made = 0


def _count_fork() -> None:
    Forks.made += 1


os.register_at_fork(after_in_parent=_count_fork)


@pytest.fixture(params=["threads", "processes"])
def decoding(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Decode (and stat a reload's files) in threads, or in forked processes from one file on.

    Skipped where decoding never forks.
    """
    if request.param == "processes" and not FORKING:
        pytest.skip("decoding forks processes on Linux only")
    fork = request.param == "processes"
    monkeypatch.setattr(images, "PROCESSES_FROM", 1 if fork else 10**9)
    monkeypatch.setattr(images, "_STAT_PROCESSES_FROM", 1 if fork else 10**9)
    return request.param


def children() -> set[int]:
    """This process's children, ended ones not yet waited for included (Linux; else none).

    Read from /proc, so that no child of another part of the test run is reaped.
    """
    found: set[int] = set()
    for task in Path("/proc/self/task").glob("*/children"):
        found.update(int(pid) for pid in task.read_text().split())
    return found


def fashion_folder(root: Path) -> dict[str, np.ndarray]:
    """60 fixture images of each kept class as PNG; returns each class's images in file order."""
    x = read_idx(FASHION / "train-images-idx3-ubyte.gz")
    y = read_idx(FASHION / "train-labels-idx1-ubyte.gz")
    written = {}
    for label, name in KEPT.items():
        chosen = x[y == label][:60]
        (root / name).mkdir(parents=True)
        for index, pixels in enumerate(chosen):
            Image.fromarray(pixels).save(root / name / f"{index:03d}.png")
        written[name] = chosen
    return written


def digits_pixels() -> tuple[np.ndarray, np.ndarray]:
    """Digits as uint8 8x8 images: the 0-16 intensities times 16, 256 clipped to 255."""
    bunch = load_digits()
    return np.minimum(bunch.images * 16, 255).astype(np.uint8), bunch.target


def digits_folder(root: Path, indices: range | None = None, suffix: str = ".png") -> Path:
    """The digits (all, or `indices`) in folders `0`..`9`, file names in source order."""
    pixels, target = digits_pixels()
    for index in indices if indices is not None else range(len(target)):
        folder = root / str(target[index])
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels[index]).save(folder / f"{index:04d}{suffix}")
    return root


def by_class(data: Any) -> dict[int, list[bytes]]:
    """Every image of every part as raw bytes of its uint8 pixels, grouped by label, sorted."""
    groups: dict[int, list[bytes]] = {}
    for part in (data.train, data.val, data.test):
        if part is None:
            continue
        for x, y in zip(part.x, part.y, strict=True):
            groups.setdefault(int(y), []).append(x.numpy().astype(np.uint8).tobytes())
    return {label: sorted(rows) for label, rows in groups.items()}


def test_fashion_png_folder_round_trips_grayscale(isolated: Path, decoding: str) -> None:
    written = fashion_folder(isolated / "photos")
    forks, before = Forks.made, children()
    path = str(isolated / "photos")
    data = load_dataset("image_folder", path=path, color_mode="grayscale", scale="none")
    assert data.class_names == ["Bag", "Pullover", "Sandal", "Trouser"]  # sorted folder names
    assert data.input_shape == (28, 28) and data.train.x.dtype == torch.float32
    assert data.scale == "none" and data.train.y.dtype == torch.int64
    # 240 images: 48 test, 19 validation (10% of 192), 173 training.
    assert (len(data.train), len(data.val), len(data.test)) == (173, 19, 48)
    groups = by_class(data)
    for label, name in enumerate(data.class_names):
        assert groups[label] == sorted(row.tobytes() for row in written[name])
    # Decoding keeps the file order: class by class, files sorted.
    names, files = images.list_images(path)
    decoded = images.decode_images([Path(path) / file for _, file in files], None, "grayscale")
    assert np.array_equal(decoded, np.concatenate([written[name] for name in names]))
    assert INPUT_SHAPES["image_folder"]({"path": path, "color_mode": "grayscale"}) == (28, 28)
    # What load_dataset splits: the pixels in file order with their class folder names.
    folder = images.read_image_folder(path, color_mode="grayscale")
    assert folder.class_names == names and folder.files == [file for _, file in files]
    (cached,) = (isolated / "cache" / "image_folder").glob("*.npy")  # written as decoded
    assert np.array_equal(np.load(cached, allow_pickle=False), decoded)
    assert np.array_equal(folder.x, decoded) and folder.x.flags.writeable
    assert folder.y.tolist() == [names[label] for label, _ in files]
    assert (Forks.made > forks) == (decoding == "processes") and children() == before


def test_rgb_default_gives_three_equal_channels_and_unit_scale(isolated: Path) -> None:
    written = fashion_folder(isolated / "photos")
    path = str(isolated / "photos")
    data = load_dataset("image_folder", path=path, validation=0)
    assert data.input_shape == (28, 28, 3) and data.train.x.shape[1:] == (28, 28, 3)
    assert data.scale == "unit" and data.val is None
    x = data.test.x
    assert torch.equal(x[..., 0], x[..., 1]) and torch.equal(x[..., 0], x[..., 2])
    # The test part keeps the file order: its first Bag is a Bag of the source, /255.
    first = (data.test.x[data.test.y == 0][0, ..., 0] * 255).round().numpy().astype(np.uint8)
    assert any(np.array_equal(first, image) for image in written["Bag"])
    assert INPUT_SHAPES["image_folder"]({"path": path}) == (28, 28, 3)


def test_image_size_resizes_bilinear(isolated: Path) -> None:
    fashion_folder(isolated / "photos")
    path = str(isolated / "photos")
    data = load_dataset("image_folder", path=path, image_size=[16, 12],
                        color_mode="grayscale", scale="none", validation=0)
    assert data.input_shape == (16, 12) and data.train.x.shape[1:] == (16, 12)
    assert INPUT_SHAPES["image_folder"](
        {"path": path, "image_size": [16, 12], "color_mode": "grayscale"}) == (16, 12)
    assert INPUT_SHAPES["image_folder"]({"path": path, "image_size": [16, 12]}) == (16, 12, 3)
    _, files = images.list_images(path)
    decoded = images.decode_images([Path(path) / files[0][1]], (16, 12), "grayscale")
    with Image.open(Path(path) / files[0][1]) as image:
        expected = np.asarray(image.convert("L").resize((12, 16), Image.Resampling.BILINEAR))
    assert np.array_equal(decoded[0], expected)
    rgb = load_dataset("image_folder", path=path, image_size=[16, 12], validation=0)
    assert rgb.train.x.shape[1:] == (16, 12, 3)


def test_digits_stratified_split_and_classes(isolated: Path) -> None:
    path = str(digits_folder(isolated / "digits"))
    _, target = digits_pixels()
    full = np.bincount(target, minlength=10)
    data = load_dataset("image_folder", path=path, color_mode="grayscale", validation=300,
                        data_seed=3)
    assert data.class_names == [str(digit) for digit in range(10)]
    test = np.bincount(data.test.y.numpy(), minlength=10)
    assert np.all(np.abs(test - len(data.test) * full / len(target)) <= 1)
    rest = full - test
    val = np.bincount(data.val.y.numpy(), minlength=10)
    assert np.all(np.abs(val - 300 * rest / rest.sum()) <= 1)
    again = load_dataset("image_folder", path=path, color_mode="grayscale", validation=300,
                         data_seed=3)
    assert torch.equal(data.train.x, again.train.x) and torch.equal(data.test.y, again.test.y)
    chosen = load_dataset("image_folder", path=path, color_mode="grayscale", classes=[7, "3"])
    assert chosen.class_names == ["7", "3"]
    assert len(chosen.train) + len(chosen.val) + len(chosen.test) == int(full[3] + full[7])


def test_digits_round_trip_and_test_path(isolated: Path) -> None:
    pixels, target = digits_pixels()
    train = str(digits_folder(isolated / "train", range(1500)))
    test = str(digits_folder(isolated / "test", range(1500, len(target))))
    data = load_dataset("image_folder", path=train, test_path=test, color_mode="grayscale",
                        scale="none", validation=0)
    assert len(data.train) == 1500 and len(data.test) == len(target) - 1500
    # The test part is the test folder in file order: by class, then by index.
    order = sorted(range(1500, len(target)), key=lambda index: (target[index], index))
    assert torch.equal(data.test.x, torch.from_numpy(pixels[order].astype(np.float32)))
    assert torch.equal(data.test.y, torch.from_numpy(target[order]))
    groups = by_class(data)
    for digit in range(10):
        source = pixels[:1500][target[:1500] == digit]
        assert len(groups[digit]) == len(source) + int((target[1500:] == digit).sum())


def recorded(cached: Path) -> list[list[int]]:
    """The sizes and modification times a cache file holds after its pixels."""
    with open(cached, "rb") as handle:
        np.load(handle, allow_pickle=False)
        return np.load(handle, allow_pickle=False).tolist()


def test_cache_is_used_and_invalidated_by_mtime(
    isolated: Path, monkeypatch: pytest.MonkeyPatch, decoding: str
) -> None:
    # BMP files of one size have the same length, so one can replace another byte for byte.
    path = str(digits_folder(isolated / "digits", range(40), suffix=".bmp"))
    pixels, target = digits_pixels()
    options = {"path": path, "color_mode": "grayscale", "scale": "none", "validation": 0}
    first = load_dataset("image_folder", **options)
    cached = list((isolated / "cache" / "image_folder").glob("*.npy"))
    assert len(cached) == 1 and re.fullmatch(r"[0-9a-f]{64}\.npy", cached[0].name)
    assert np.load(cached[0], allow_pickle=False).shape == (40, 8, 8)
    _, files = images.list_images(path)
    stats = [os.stat(Path(path, file)) for _, file in files]
    assert recorded(cached[0]) == [[stat.st_size for stat in stats],
                                   [stat.st_mtime_ns for stat in stats]]
    victim = Path(path) / str(target[0]) / "0000.bmp"
    other = next(index for index in range(1, 40) if not np.array_equal(pixels[index], pixels[0]))
    donor = Path(path) / str(target[other]) / f"{other:04d}.bmp"
    stat = victim.stat()
    assert donor.stat().st_size == stat.st_size
    victim.write_bytes(donor.read_bytes())
    os.utime(victim, ns=(stat.st_atime_ns, stat.st_mtime_ns))

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("an image was opened although the cache is valid")

    with monkeypatch.context() as patch:
        patch.setattr(images.Image, "open", refuse)
        again = load_dataset("image_folder", **options)
    for part in ("train", "test"):  # the old pixels: the cache was read, no image decoded
        assert torch.equal(getattr(first, part).x, getattr(again, part).x)
    os.utime(victim, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    changed = load_dataset("image_folder", **options)
    # The same files: their entry is replaced, now with the new time.
    assert list((isolated / "cache" / "image_folder").glob("*.npy")) == cached
    assert stat.st_mtime_ns + 1_000_000_000 in recorded(cached[0])[1]
    old = torch.from_numpy(pixels[0].astype(np.float32))
    new = torch.from_numpy(pixels[other].astype(np.float32))
    everything = torch.cat([changed.train.x, changed.test.x])
    assert any(torch.equal(image, new) for image in everything)
    assert sum(torch.equal(image, old) for image in everything) < sum(
        torch.equal(image, old) for image in torch.cat([first.train.x, first.test.x]))
    # Another file list (a file added) and other pixel options are other cache entries.
    Image.fromarray(pixels[40]).save(Path(path) / str(target[40]) / "0040.bmp")
    more = load_dataset("image_folder", **options)
    assert len(more.train) + len(more.test) == 41
    assert len(list((isolated / "cache" / "image_folder").glob("*.npy"))) == 2
    load_dataset("image_folder", **{**options, "color_mode": "rgb"})
    assert len(list((isolated / "cache" / "image_folder").glob("*.npy"))) == 3
    # An unreadable cache file is decoded again and replaced.
    cached[0].write_bytes(b"not a cache")
    (Path(path) / str(target[40]) / "0040.bmp").unlink()
    assert torch.equal(load_dataset("image_folder", **options).train.x, changed.train.x)
    assert np.load(cached[0], allow_pickle=False).shape == (40, 8, 8)
    monkeypatch.setenv("TRICKLAB_CACHE", str(victim))  # a file: no folder can be made in it
    resized = load_dataset("image_folder", **{**options, "image_size": [4, 4]})
    assert resized.input_shape == (4, 4)
    # A file that cannot be statted any more is named by the decoding that follows.
    monkeypatch.setenv("TRICKLAB_CACHE", str(isolated / "cache"))
    donor.unlink()
    donor.symlink_to(donor.with_name("absent.bmp"))
    with pytest.raises(UserInputError, match=re.escape(
            f"data.path: cannot read image {donor} ([Errno 2] No such file or directory: ")):
        load_dataset("image_folder", **options)


def write(root: Path, files: dict[str, Any]) -> Path:
    """Files under `root` by relative path: an array is saved as an image, bytes as they are."""
    root.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        target = root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            target.write_bytes(content)
        elif content is None:
            target.mkdir()
        else:
            Image.fromarray(content).save(target)
    return root


GREY = np.full((8, 8), 100, dtype=np.uint8)


@pytest.mark.parametrize(
    ("files", "options", "message"),
    [
        (None, {},
         "data.path: folder not found: {root}; expected a folder with one subfolder of images "
         "per class"),
        ({"a.png": GREY}, {},
         "data.path: {root} has no class subfolders; expected one subfolder of images per class"),
        ({"cat/1.png": GREY, "dog/notes.txt": b"x"}, {},
         "data.path: class folder {root}/dog holds no images (.png .jpg .jpeg .bmp .gif .webp); "
         "add some or remove the folder"),
        ({"cat/1.png": GREY, "dog/2.png": b"not an image"}, {},
         "data.path: cannot read image {root}/dog/2.png (cannot identify image file "
         "'{root}/dog/2.png')"),
        ({"cat/1.png": GREY, "dog/2.png": np.zeros((6, 9), np.uint8)}, {},
         "data.image_size: images differ in size: {root}/cat/1.png is 8x8 (HxW) but "
         "{root}/dog/2.png is 6x9; set data.image_size: [height, width] to resize them all"),
        ({"cat/1.png": GREY, "dog/2.png": GREY, "test/cat/3.png": GREY, "test/cow/4.png": GREY},
         {"test_path": "{root}/test"},
         "data.test_path: class folders cat, cow of {root}/test differ from cat, dog, test of "
         "{root}; expected the same"),
        ({"cat/1.png": GREY, "dog/2.png": GREY}, {"classes": ["cat", "cow"]},
         "data.classes: 'cow' is not a class of the data; classes: cat, dog"),
    ],
)
def test_bad_folders_are_one_line(
    isolated: Path, decoding: str, files: dict[str, Any] | None, options: dict[str, Any],
    message: str,
) -> None:
    root = isolated / "photos"
    if files is not None:
        write(root, files)
    options = {key: value.format(root=root) if isinstance(value, str) else value
               for key, value in options.items()}
    with pytest.raises(UserInputError) as caught:
        load_dataset("image_folder", path=str(root), **options)
    assert str(caught.value) == message.format(root=root)
    assert "\n" not in str(caught.value)


def test_the_first_problem_in_file_order_is_named(isolated: Path, decoding: str) -> None:
    # 200 digits, so the problems fall in different spans of the workers.
    path = digits_folder(isolated / "digits", range(200))
    before = children()
    _, files = images.list_images(str(path))
    unreadable, other_size = Path(path, files[150][1]), Path(path, files[60][1])
    unreadable.write_bytes(b"not an image")
    Image.fromarray(np.zeros((6, 9), np.uint8)).save(other_size, format="PNG")
    first = Path(path, files[0][1])
    with pytest.raises(UserInputError) as caught:
        images.read_image_folder(str(path), color_mode="grayscale")
    assert str(caught.value) == (
        f"data.image_size: images differ in size: {first} is 8x8 (HxW) but {other_size} is "
        "6x9; set data.image_size: [height, width] to resize them all")
    Image.fromarray(digits_pixels()[0][0]).save(other_size, format="PNG")
    with pytest.raises(UserInputError) as caught:
        images.read_image_folder(str(path), color_mode="grayscale")
    assert str(caught.value) == (f"data.path: cannot read image {unreadable} (cannot identify "
                                 f"image file '{unreadable}')")
    assert not list((isolated / "cache").rglob("*.npy*")) and children() == before
    # Past the problems: every image, cached; in the test folder, messages name test_path.
    unreadable.write_bytes(other_size.read_bytes())
    data = load_dataset("image_folder", path=str(path), test_path=str(path),
                        color_mode="grayscale", validation=0)
    assert len(data.train) == len(data.test) == 200
    assert len(list((isolated / "cache" / "image_folder").glob("*.npy"))) == 1
    test = digits_folder(isolated / "test", range(200, 300))
    broken = test / str(digits_pixels()[1][250]) / "0250.png"
    broken.write_bytes(b"")
    with pytest.raises(UserInputError, match=re.escape(f"data.test_path: cannot read image "
                                                       f"{broken} (cannot identify image file")):
        load_dataset("image_folder", path=str(path), test_path=str(test))


def read_in_worker(path: str, processes_from: int) -> tuple[np.ndarray, list[str], int, bool]:
    """In a pool's worker: read a folder; its pixels, labels, forks made and children left."""
    images.PROCESSES_FROM = processes_from
    forks = Forks.made
    folder = images.read_image_folder(path, color_mode="grayscale")
    return folder.x, folder.y.tolist(), Forks.made - forks, bool(children())


def interrupt_in_worker(path: str) -> tuple[str, int, bool, list[str]]:
    """In a pool's worker: a Ctrl-C right after decoding forks its first process.

    Returns how the read ended, the forks made, whether a child is left, and the
    files in the cache.
    """
    images.PROCESSES_FROM = 1
    os.register_at_fork(after_in_parent=lambda: os.kill(os.getpid(), signal.SIGINT))
    forks = Forks.made
    try:
        images.read_image_folder(path, color_mode="grayscale")
        ended = "read"
    except KeyboardInterrupt:
        ended = "interrupted"
    cache = Path(os.environ["TRICKLAB_CACHE"])
    written = [str(file) for file in cache.rglob("*") if file.is_file()]
    return ended, Forks.made - forks, bool(children()), written


def die_in_worker(path: str) -> tuple[np.ndarray, np.ndarray, int, bool]:
    """In a pool's worker: read a folder while every decoding process dies 5 ms after its fork.

    Returns the pixels, those of the cache file, the forks made and whether a child is left.
    """
    images.PROCESSES_FROM = 1
    # SIGALRM's default action ends the process; the timer is the child's alone.
    os.register_at_fork(after_in_child=lambda: signal.setitimer(signal.ITIMER_REAL, 0.005))
    forks = Forks.made
    folder = images.read_image_folder(path, color_mode="grayscale")
    (cached,) = Path(os.environ["TRICKLAB_CACHE"], "image_folder").glob("*.npy")
    return (folder.x, np.load(cached, allow_pickle=False), Forks.made - forks,
            bool(children()))


def read_unwritable_in_worker(
    path: str, processes_from: int
) -> tuple[np.ndarray, int, list[str]]:
    """In a pool's worker that may write files of 1000 bytes at most: read a folder.

    Returns the pixels, the forks made and the files in the cache.
    """
    images.PROCESSES_FROM = processes_from
    resource.setrlimit(resource.RLIMIT_FSIZE, (1000, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
    forks = Forks.made
    folder = images.read_image_folder(path, color_mode="grayscale")
    cache = Path(os.environ["TRICKLAB_CACHE"])
    return folder.x, Forks.made - forks, [str(file) for file in cache.rglob("*") if file.is_file()]


@pytest.mark.skipif(not FORKING, reason="decoding forks processes on Linux only")
@pytest.mark.parametrize("processes_from", [1, 10**9])
def test_a_cache_file_that_cannot_be_written_whole_is_dropped(
    isolated: Path, processes_from: int
) -> None:
    # The limit lets the cache file begin (its header) and refuses its rows.
    path = str(digits_folder(isolated / "digits", range(300)))
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork")) as executor:
        x, forks, cache = executor.submit(read_unwritable_in_worker, path, processes_from).result()
    assert np.array_equal(x, images.read_image_folder(path, color_mode="grayscale").x)
    # Decoded once (in two processes when forking), the partial file dropped.
    assert forks == (1 if processes_from == 1 else 0) and cache == []


@pytest.mark.skipif(not FORKING, reason="decoding forks processes on Linux only")
@pytest.mark.parametrize("pool", ["ProcessPoolExecutor", "multiprocessing.Pool"])
def test_processes_decode_inside_a_pool_worker(isolated: Path, pool: str) -> None:
    # A study's workers are forked ProcessPoolExecutor processes; a multiprocessing.Pool's
    # are daemons, which multiprocessing forbids to start processes of its own.
    path = str(digits_folder(isolated / "digits", range(300)))
    expected = images.read_image_folder(path, color_mode="grayscale")
    for cached in (isolated / "cache").rglob("*.npy"):
        cached.unlink()
    fork = multiprocessing.get_context("fork")
    if pool == "ProcessPoolExecutor":
        with ProcessPoolExecutor(1, mp_context=fork) as executor:
            x, y, forks, left = executor.submit(read_in_worker, path, 1).result()
    else:
        with fork.Pool(1) as workers:
            x, y, forks, left = workers.apply(read_in_worker, (path, 1))
    assert np.array_equal(x, expected.x) and y == expected.y.tolist()
    assert forks >= 1 and not left


@pytest.mark.skipif(not FORKING, reason="decoding forks processes on Linux only")
def test_a_ctrl_c_kills_the_processes_and_a_dead_one_leaves_its_spans(isolated: Path) -> None:
    path = str(digits_folder(isolated / "digits"))
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork")) as executor:
        ended, forks, left, cache = executor.submit(interrupt_in_worker, path).result()
    assert (ended, forks, left, cache) == ("interrupted", 1, False, [])
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork")) as executor:
        x, cached, forks, left = executor.submit(die_in_worker, path).result()
    pixels, target = digits_pixels()
    order = sorted(range(len(target)), key=lambda index: (target[index], index))
    assert np.array_equal(x, pixels[order]) and np.array_equal(cached, x)
    assert forks >= 1 and not left


def test_mixed_sizes_across_test_path_and_resolution_errors(isolated: Path) -> None:
    root = write(isolated / "photos", {"cat/1.png": GREY, "dog/2.png": GREY})
    test = write(isolated / "test", {"cat/3.png": np.zeros((4, 4), np.uint8),
                                     "dog/4.png": np.zeros((4, 4), np.uint8)})
    with pytest.raises(UserInputError, match=re.escape(
        f"data.image_size: images differ in size: {root}/cat/1.png is 8x8 (HxW) but "
        f"{test}/cat/3.png is 4x4"
    )):
        load_dataset("image_folder", path=str(root), test_path=str(test))
    fixed = load_dataset("image_folder", path=str(root), test_path=str(test),
                         image_size=[4, 4], validation=0, color_mode="grayscale")
    assert fixed.input_shape == (4, 4) and len(fixed.test) == 2
    absent = str(isolated / "absent")
    with pytest.raises(UserInputError, match=re.escape(f"data.path: folder not found: {absent}")):
        INPUT_SHAPES["image_folder"]({"path": absent})


def test_registry_entry_and_recipe_defaults(isolated: Path) -> None:
    info = datasets.info("image_folder")
    assert "subfolder per class" in info.description
    assert "image_dataset_from_directory" in info.reference
    path = str(isolated / "photos")
    assert datasets.validate("image_folder", {"path": path}, "data") == {
        "path": path, "image_size": None, "color_mode": "rgb", "test_path": None,
        "validation": 0.1, "test_fraction": 0.2, "train_size": None, "classes": None,
        "scale": "auto", "data_seed": 0,
    }
    for bad in ({"image_size": [0, 8]}, {"image_size": [8]}, {"color_mode": "rgba"}):
        with pytest.raises(UserInputError, match=r"^data\.(image_size|color_mode)"):
            datasets.validate("image_folder", {"path": path, **bad}, "data")


def test_digits_png_folder_end_to_end_reaches_90_percent(isolated: Path) -> None:
    path = digits_folder(isolated / "digits")
    doc = {
        "name": "digits-folder", "seed": 1,
        "data": {"dataset": "image_folder", "path": str(path), "color_mode": "grayscale"},
        "model": {"layers": [
            "flatten", {"dense": {"units": 64, "activation": "relu"}},
            {"dense": {"units": 10, "activation": "softmax"}},
        ]},
        "train": {"loss": "sparse_categorical_crossentropy",
                  "optimizer": {"name": "adam", "learning_rate": 1e-3},
                  "batch_size": 32, "epochs": 30, "metrics": ["accuracy"]},
    }
    outcome = train_recipe(recipe_from_dict(doc), out=isolated / "run", progress="none")
    accuracy = outcome.result["metrics"]["test_accuracy"]
    print(f"digits PNG folder test accuracy {accuracy:.4f}")
    assert accuracy > 0.9
    assert outcome.result["dataset"] == {"name": "image_folder", "train": 1294, "val": 144,
                                         "test": 359}
    assert json.loads((isolated / "run" / "result.json").read_text())["status"] == "completed"
