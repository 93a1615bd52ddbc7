"""A folder of images, one subfolder per class: `data: {dataset: image_folder, path: photos/}`.

The folder is read as Keras's `image_dataset_from_directory(labels="inferred")`
reads it: the classes are the subfolders of `path` in sorted order of their
names (kept as `class_names`), and a class's images are the files with an
image extension (`.png .jpg .jpeg .bmp .gif .webp`, in any case) anywhere under
its subfolder, walked recursively as Keras walks it, in sorted order of their
relative paths. Files directly in `path` belong to no class and are ignored,
as in Keras.

Every image is decoded once with Pillow, converted to `L` (grayscale) or `RGB`
unless it already is, and resized with Pillow's bilinear filter when
`image_size` is given, straight into its row of one uint8 array `[N, H, W]` or
`[N, H, W, 3]` (channels last like the built-in image datasets), allocated from
the first image's shape. The files are cut into contiguous spans, 64 per
worker, that the workers take in turn, the caller being one of them. From
`PROCESSES_FROM` (1,000) images on Linux the other workers are forked processes
writing into an anonymous shared mapping: decoding a small PNG is mostly Python
work under the GIL, so threads barely scale, and an anonymous mapping has no
name that could outlive the load. Elsewhere, and for fewer images, they are threads.
A worker that dies leaves its spans to the caller; a Ctrl-C stops the caller,
which kills the processes.

The array is cached as `<cache>/image_folder/<key>.npy` (the cache is
`$TRICKLAB_CACHE`, default `~/.cache/tricklab`), written atomically while it is
decoded (each worker writes a span's rows in their place and starts their way
to disk, so the closing `fsync` waits for little): the pixels (what
`numpy.load` returns), then a second array, the size and modification time in
nanoseconds of every file as it was read (`os.fstat` of the open file).
`<key>` is the SHA-256 of the folder's real path, the sorted relative file
list, `image_size` and `color_mode`. A later load of the same list stats every
file (on Linux, from 20,000 files on, half of them in one forked process) and
takes the pixels (`allow_pickle=False`) only when every size and time is the
recorded one, so an unchanged folder opens no image, and touching, adding or
removing any file decodes the folder again.

Everything after reading (splits, classes, scaling) is
`tricklab.data.own.own_splits`, shared with the other sources of own data;
`scale: auto` is `unit` for these uint8 pixels. `INPUT_SHAPES["image_folder"]`
comes from `image_size` and `color_mode` when given, else from the header of
one image, so resolving a recipe never decodes the folder. A relative path is
relative to the working directory.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import mmap
import os
import signal
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO, Annotated, Any, Literal, NamedTuple

import numpy as np
import pydantic
from PIL import Image, UnidentifiedImageError

from tricklab.atomic import atomic_open
from tricklab.data.arrays import Fraction, Validation
from tricklab.data.datasets import AUTO_OPTIONS, INPUT_SHAPES, DatasetSplits, datasets
from tricklab.data.own import TEST_FRACTION, VALIDATION, NonNegativeInt, OwnScale, own_splits
from tricklab.data.splits import PositiveInt
from tricklab.errors import UserInputError
from tricklab.paths import cache_dir

EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
"""File name endings read as images, compared case-insensitively."""

ColorMode = Literal["grayscale", "rgb"]
ImageSize = Annotated[list[PositiveInt], pydantic.Field(min_length=2, max_length=2)]
"""`data.image_size`: `[height, width]`, two integers > 0."""

PROCESSES_FROM = 1000
"""Images from which decoding forks processes (Linux); below, forking costs more than it saves."""

_CACHE_VERSION = 2
"""Part of every cache key: raising it makes every earlier cache file unused."""

_FORK = sys.platform.startswith("linux")
_PWRITE = hasattr(os, "pwrite")
"""Whether workers can write their rows of a cache file each in its place (not on Windows)."""
"""Whether decoding may fork: elsewhere fork is missing or unsafe (macOS), as for studies."""

_STAT_PROCESSES_FROM = 20_000
"""Files from which a reload's stats are shared with one forked process (Linux): a stat
costs about 2.5 us, a fork of a process with torch imported about 15 ms."""

_SPANS_PER_WORKER = 64
"""Short spans, so a worker slowed by the rest of the machine delays the end by little."""
_MOST_SPANS = 1024
"""Spans are handed out as 4-byte numbers through a pipe, written before any worker
starts: 4 KiB, the least a Linux pipe holds, so that write never blocks."""

_UNREADABLE = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)
"""What Pillow raises for a file it cannot read."""

_STOPS = {signal.SIGINT, signal.SIGTERM}
"""The signals tricklab stops on (`tricklab.signals`), held back while a worker is forked."""

_NOT_DONE = -2
_DONE = -1
"""A span's state: not (or not completely) decoded, decoded; else the index of its first problem."""


class ImageFolder(NamedTuple):
    """A folder of class subfolders as read by `read_image_folder`."""

    x: np.ndarray
    """uint8 pixels `[N, H, W]` (grayscale) or `[N, H, W, 3]`, in the order of `files`."""
    y: np.ndarray
    """The class folder name of every image, `[N]` strings."""
    class_names: list[str]
    """The class folder names, sorted."""
    files: list[str]
    """Every image's path relative to the folder, with `/` separators."""


@datasets.register(
    "image_folder",
    description="Your own images from a folder with one subfolder per class (PNG, JPEG, BMP, "
    "GIF, WebP), decoded once with Pillow and cached",
    reference="Keras image_dataset_from_directory, "
    "https://keras.io/api/data_loading/image/#image_dataset_from_directory-function",
)
def image_folder(
    path: str,
    image_size: ImageSize | None = None,
    color_mode: ColorMode = "rgb",
    test_path: str | None = None,
    validation: Validation = VALIDATION,
    test_fraction: Fraction = TEST_FRACTION,
    train_size: PositiveInt | None = None,
    classes: list[int | float | str] | None = None,
    scale: OwnScale = "auto",
    data_seed: NonNegativeInt = 0,
) -> DatasetSplits:
    """Read a folder of class subfolders of images, then split and scale them.

    Args:
        path: The folder holding one subfolder of images per class.
        image_size: `[height, width]` every image is resized to with Pillow's
            bilinear filter (Keras's default interpolation). Defaults to `None`: the
            images keep their size, which must then be the same for all of them.
        color_mode: `rgb` gives `[N, H, W, 3]` (a grey image gets three equal
            channels), `grayscale` gives `[N, H, W]` (a colour image converted with
            Pillow's ITU-R 601-2 luma). Defaults to `"rgb"`, as in Keras.
        test_path: Another folder with the same class subfolders that forms the
            test part. Defaults to `None`: `test_fraction` of `path`'s images.
        validation: A count (integer >= 0; 0 means no validation part) or a fraction
            in (0, 1) of the training images, stratified by class. Defaults to `0.1`.
        test_fraction: Fraction in (0, 1) of the images held out for testing when
            there is no `test_path`, stratified by class. Defaults to `0.2`.
        train_size: Training images to keep, from the training part shuffled by
            `data_seed`. Defaults to `None` (all of them).
        classes: Class folder names to keep, relabelled in this order (a number
            matches the folder of that name, e.g. `7` the folder `7`). Defaults to
            `None` (all, in sorted order).
        scale: `auto`, `unit` (/255), `standardize` (training mean and deviation per
            pixel) or `none`; `auto` is `unit` for these uint8 images. Defaults to
            `"auto"`.
        data_seed: Seed of the test and validation draws and of the training order,
            independent of the run's seed. Defaults to `0`.

    Returns:
        The train, validation and test parts (see `tricklab.data.own.own_splits`),
        with the class folder names as `class_names`.

    Raises:
        UserInputError: One line naming the folder, the file or `data.<option>`: a
            missing folder, a folder without class subfolders, an empty class folder,
            an image Pillow cannot read, images of different sizes without
            `image_size`, a `test_path` with other class folders, and every problem
            `own_splits` finds.
    """
    train = read_image_folder(path, image_size, color_mode)
    test = None
    if test_path is not None:
        # The class folders are compared before anything of the test folder is decoded.
        test_names, test_files, test_counts = _listing(test_path, "test_path")
        if test_names != train.class_names:
            raise UserInputError(
                f"data.test_path: class folders {', '.join(test_names)} of {test_path} differ "
                f"from {', '.join(train.class_names)} of {path}; expected the same"
            )
        held = _read(test_path, test_names, test_files, test_counts, image_size, color_mode,
                     "test_path")
        if held.x.shape[1:] != train.x.shape[1:]:
            raise UserInputError(_mixed(os.path.join(path, train.files[0]), train.x.shape,
                                        os.path.join(test_path, held.files[0]), held.x.shape))
        test = (held.x, held.y)
    where = {
        "x": f"data.path {path}: images", "y": f"data.path {path}: class folders",
        "x_test": f"data.test_path {test_path}: images",
        "y_test": f"data.test_path {test_path}: class folders",
    }
    data = own_splits(
        "image_folder", train.x, train.y, test, where, task="classification",
        validation=validation, test_fraction=test_fraction, train_size=train_size,
        classes=classes, scale=scale, data_seed=data_seed,
    )
    data.raw_inputs = {"kind": "images", "image_size": data.input_shape[:2],
                       "color_mode": color_mode}
    return data


def read_image_folder(
    path: str, image_size: Sequence[int] | None = None, color_mode: str = "rgb",
    key: str = "path",
) -> ImageFolder:
    """List a folder of class subfolders and read all its images, from the cache or decoded.

    This is everything `image_folder` does before splitting: the listing, the
    cache key, and decoding (then caching) or reading the cached pixels.

    Args:
        path: The folder with one subfolder of images per class.
        image_size: `(height, width)` to resize every image to, bilinear. Defaults
            to `None` (keep the size, which must be the same for all).
        color_mode: `grayscale` or `rgb`. Defaults to `"rgb"`.
        key: The option that named the folder, for messages (`path` or
            `test_path`). Defaults to `"path"`.

    Returns:
        The pixels, the class name of each image, the class names and the files.

    Raises:
        UserInputError: A missing folder, one without class subfolders, an empty
            class folder, an image Pillow cannot read, images of different sizes
            without `image_size`.
    """
    names, files, counts = _listing(path, key)
    return _read(path, names, files, counts, image_size, color_mode, key)


def list_images(path: str, key: str = "path") -> tuple[list[str], list[tuple[int, str]]]:
    """The class names and the images of a folder, without opening any image.

    Args:
        path: The folder with one subfolder per class.
        key: The option that named it, for messages (`path` or `test_path`).
            Defaults to `"path"`.

    Returns:
        The class folder names, sorted, and `(class index, relative path)` of every
        image, by class then by sorted relative path (with `/` separators).

    Raises:
        UserInputError: A missing folder, one without subfolders, an empty class folder.
    """
    names, files, counts = _listing(path, key)
    labels = np.repeat(np.arange(len(names)), counts).tolist()
    return names, list(zip(labels, files, strict=True))


def cache_key(
    path: str, files: list[str], image_size: tuple[int, int] | None, color_mode: str
) -> str:
    """SHA-256 of the folder's real path, its relative file list and the pixel options.

    The files' sizes and modification times are not part of the key: they are
    stored in the cache file and compared when it is read.
    """
    digest = hashlib.sha256(repr((
        _CACHE_VERSION, os.path.realpath(path),
        None if image_size is None else list(image_size), color_mode,
    )).encode())
    # NUL cannot occur in a path, so the joined list reads back one way only.
    digest.update(os.fsencode("\0".join(files)))
    return digest.hexdigest()


def decode_images(
    files: Sequence[str | os.PathLike[str]], image_size: Sequence[int] | None = None,
    color_mode: str = "rgb", key: str = "data.path",
) -> np.ndarray:
    """Decode `files` with Pillow in parallel into one uint8 array `[N, H, W(, 3)]`.

    Args:
        files: The image files, in the order of the result.
        image_size: `(height, width)` to resize to, bilinear. Defaults to `None`
            (keep the size, which must be the same for all).
        color_mode: `grayscale` or `rgb`. Defaults to `"rgb"`.
        key: What messages name the images by. Defaults to `"data.path"`.

    Raises:
        UserInputError: The first file in order that Pillow cannot read or whose size
            differs from the first file's without `image_size`, named.
    """
    return _decode([os.fspath(file) for file in files], image_size, color_mode, key)[0]


def _listing(path: str, key: str) -> tuple[list[str], list[str], list[int]]:
    """The sorted class names, every image's relative path (class by class), each class's count."""
    if not os.path.isdir(path):
        raise UserInputError(
            f"data.{key}: folder not found: {path}; expected a folder with one subfolder of "
            "images per class"
        )
    with os.scandir(path) as entries:
        names = sorted(entry.name for entry in entries if entry.is_dir())
    if not names:
        raise UserInputError(
            f"data.{key}: {path} has no class subfolders; expected one subfolder of images "
            "per class"
        )
    files: list[str] = []
    counts = []
    for name in names:
        found = _images_under(path, name)
        if not found:
            raise UserInputError(
                f"data.{key}: class folder {os.path.join(path, name)} holds no images "
                f"({' '.join(EXTENSIONS)}); add some or remove the folder"
            )
        files.extend(found)
        counts.append(len(found))
    return names, files, counts


def _images_under(path: str, folder: str) -> list[str]:
    """The image files under `path/folder` as sorted paths relative to `path`, walked as `os.walk`.

    As `os.walk` does, a folder that cannot be listed is skipped and a link to a
    folder is not followed below the top.
    """
    found = []
    pending = [folder]
    while pending:
        current = pending.pop()
        try:
            entries = os.scandir(os.path.join(path, current))
        except OSError:
            continue
        with entries:
            for entry in entries:
                try:
                    is_folder = entry.is_dir()
                except OSError:
                    is_folder = False
                if is_folder:
                    if not entry.is_symlink():
                        pending.append(f"{current}/{entry.name}")
                elif entry.name.lower().endswith(EXTENSIONS):
                    found.append(f"{current}/{entry.name}")
    found.sort()
    return found


def _read(
    path: str, names: list[str], files: list[str], counts: list[int],
    image_size: Sequence[int] | None, color_mode: str, key: str,
) -> ImageFolder:
    """The listed images of `path` from the cache when it is current, else decoded and cached."""
    size = None if image_size is None else (int(image_size[0]), int(image_size[1]))
    cached = cache_dir() / "image_folder" / f"{cache_key(path, files, size, color_mode)}.npy"
    x = _from_cache(cached, path, files)
    if x is None:
        prefix = os.path.join(path, "")
        x = _decode_cached(cached, [prefix + file for file in files], size, color_mode,
                           f"data.{key}")
    y = np.repeat(np.array(names), counts)
    return ImageFolder(x, y, names, files)


class _Unwritten(Exception):
    """Part of a cache file could not be written (a full disk): the file is dropped."""


def _decode_cached(
    cached: Path, files: list[str], size: tuple[int, int] | None, color_mode: str, key: str
) -> np.ndarray:
    """`_decode`, writing the cache file as the spans are decoded (atomically, see `atomic_open`).

    A cache that cannot be written (read-only, full) only costs the next load its time.
    """
    decoded = None
    try:
        with atomic_open(cached, "wb") as handle:
            decoded, _, written = _decode(files, size, color_mode, key, handle)
            if not written:
                raise _Unwritten  # the file is dropped, the pixels kept
    except (OSError, _Unwritten):
        if decoded is None:  # the file could not even be begun
            decoded = _decode(files, size, color_mode, key)[0]
    return decoded


def _from_cache(cached: Path, path: str, files: list[str]) -> np.ndarray | None:
    """The cached pixels if `cached` holds them for exactly these files as they are now."""
    try:
        with open(cached, "rb") as handle:
            x = np.lib.format.read_array(handle, allow_pickle=False)
            recorded = np.lib.format.read_array(handle, allow_pickle=False)
    except (OSError, ValueError):
        return None  # absent or unreadable: decoded again and replaced
    if x.dtype != np.uint8 or len(x) != len(files) or recorded.shape != (2, len(files)):
        return None
    try:
        current = _file_stats(path, files)
    except OSError:
        return None  # a file gone since the listing: decoding names it
    return x if current is not None and np.array_equal(current, recorded) else None


def _file_stats(path: str, files: list[str]) -> np.ndarray | None:
    """Size and modification time (ns) of every file, `[2, N]` int64, as `_decode` records them.

    From `_STAT_PROCESSES_FROM` files on Linux, the files are shared with one
    forked process (threads would share the time in the kernel, not the rest,
    which holds the GIL). `None` if that process died.

    Raises:
        OSError: A file the caller could not stat.
    """
    count = len(files)
    processes = _FORK and count >= _STAT_PROCESSES_FROM and _cpus() > 1
    stats = np.frombuffer(_buffer(16 * count, processes), np.int64).reshape(2, count)

    def work(start: int, stop: int) -> int:
        stats[:, start:stop] = _stat_span(path, files[start:stop])
        return _DONE

    workers = 2 if processes else 1
    if _NOT_DONE in _each_span(work, spans=_cut(count, workers * _SPANS_PER_WORKER),
                               workers=workers, processes=processes):
        return None  # the forked process died, on a file it could not stat or otherwise
    return stats.copy() if processes else stats


def _stat_span(path: str, files: list[str]) -> list[list[int]]:
    """`[sizes, times]` of `files`."""
    sizes, times = [], []
    if os.stat in os.supports_dir_fd:
        # Statting a name in an open folder spares the kernel the walk down the whole path.
        folders: dict[str, int] = {}
        try:
            for file in files:
                folder, _, name = file.rpartition("/")
                descriptor = folders.get(folder)
                if descriptor is None:
                    descriptor = folders[folder] = os.open(
                        os.path.join(path, folder), os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
                stat = os.stat(name, dir_fd=descriptor)
                sizes.append(stat.st_size)
                times.append(stat.st_mtime_ns)
        finally:
            for descriptor in folders.values():
                os.close(descriptor)
    else:
        for file in files:
            stat = os.stat(os.path.join(path, file))
            sizes.append(stat.st_size)
            times.append(stat.st_mtime_ns)
    return [sizes, times]


class _Job(NamedTuple):
    """What every worker of one `_decode` shares."""

    files: list[str]
    size: tuple[int, int] | None
    mode: str
    shape: tuple[int, ...]
    x: np.ndarray
    """The result `[N, *shape]`, written row by row."""
    stats: np.ndarray
    """`[2, N]`: each file's size and modification time in ns, from `os.fstat`."""


def _decode(
    files: list[str], image_size: Sequence[int] | None, color_mode: str, key: str,
    cache: IO[bytes] | None = None,
) -> tuple[np.ndarray, np.ndarray, bool]:
    """Every file decoded into one uint8 array; the `[2, N]` sizes and times of the files read.

    With `cache` (a new file), the pixels and then the sizes and times are written to
    it as a cache file; last, whether all of it was written (else it is to be dropped).
    """
    size = None if image_size is None else (int(image_size[0]), int(image_size[1]))
    mode = "L" if color_mode == "grayscale" else "RGB"
    try:
        first = _decode_one(files[0], size, mode)[0]
    except _UNREADABLE as error:
        raise UserInputError(
            f"{key}: cannot read image {files[0]} ({_reason(error, files[0])})") from None
    count = len(files)
    workers = min(_cpus(), count)
    processes = _FORK and count >= PROCESSES_FROM and workers > 1
    spans = _cut(count, workers * _SPANS_PER_WORKER)
    x_buffer = _buffer(count * first.size, processes)
    job = _Job(files, size, mode, first.shape,
               np.frombuffer(x_buffer, np.uint8).reshape(count, *first.shape),
               np.frombuffer(_buffer(16 * count, processes), np.int64).reshape(2, count))
    rows = None if cache is None else _CacheRows(cache, job.x.shape, processes)

    def work(start: int, stop: int) -> int:
        problem = _decode_span(job, start, stop)
        if problem is not None:
            return problem[0]
        if rows is not None:
            rows.write(job.x, start, stop)
        return _DONE

    states = _each_span(work, spans, workers, processes)
    # Spans left undone (a worker died) are decoded here, and a span's problem is met
    # again here, where its message can be raised: spans in order, so the first
    # problem in file order is the one reported.
    for (start, stop), done in zip(spans, states, strict=True):
        if done == _DONE:
            continue
        problem = _decode_span(job, start if done == _NOT_DONE else done, stop)
        if problem is not None:
            index, detail = problem
            if isinstance(detail, str):
                raise UserInputError(f"{key}: cannot read image {files[index]} ({detail})")
            raise UserInputError(_mixed(files[0], first.shape, files[index], detail, sample=True))
        if rows is not None:
            rows.write(job.x, start, stop)
    x = _private(job.x, x_buffer) if processes else job.x
    stats = job.stats.copy() if processes else job.stats
    return x, stats, rows is None or rows.finish(x, stats)


class _CacheRows:
    """A cache file written as it is decoded: the `.npy` header, each span's rows, the stats.

    The worker that decoded a span writes its rows (`os.pwrite`) and has the system
    start writing them to disk (`posix_fadvise`), so the `fsync` that ends the file
    waits for little; without `os.pwrite`, the rows are written at the end.
    A failed write is remembered, in memory the forked workers share.

    Args:
        handle: The new file, at its start.
        shape: The pixels' shape.
        shared: Whether forked processes write too.
    """

    def __init__(self, handle: IO[bytes], shape: tuple[int, ...], shared: bool) -> None:
        np.lib.format.write_array_header_1_0(
            handle, {"descr": "|u1", "fortran_order": False, "shape": shape})
        handle.flush()
        self.handle = handle
        self.offset = handle.tell()
        self.row = int(np.prod(shape[1:]))
        self.failed = np.frombuffer(_buffer(8, shared), np.int64)  # zeroed

    def write(self, x: np.ndarray, start: int, stop: int) -> None:
        """Write rows `start:stop` of `x` in their place."""
        if not _PWRITE:
            return
        data = memoryview(x[start:stop]).cast("B")
        position = self.offset + start * self.row
        try:
            while data:
                done = os.pwrite(self.handle.fileno(), data, position)
                data, position = data[done:], position + done
            if hasattr(os, "posix_fadvise"):
                # Starts writing these pages to disk now; pages being written stay cached.
                os.posix_fadvise(self.handle.fileno(), self.offset + start * self.row,
                                 (stop - start) * self.row, os.POSIX_FADV_DONTNEED)
        except OSError:
            self.failed[0] = 1

    def finish(self, x: np.ndarray, stats: np.ndarray) -> bool:
        """Write what is left: the rows (without `os.pwrite`), then the sizes and times.

        Returns:
            Whether every row was written.
        """
        if self.failed[0]:
            return False
        self.handle.seek(self.offset)
        if not _PWRITE:
            self.handle.write(memoryview(x).cast("B"))
        self.handle.seek(self.offset + x.nbytes)
        np.save(self.handle, stats, allow_pickle=False)
        return True


def _decode_one(
    file: str, size: tuple[int, int] | None, mode: str
) -> tuple[np.ndarray, os.stat_result]:
    """One image as uint8 `[H, W]` or `[H, W, 3]`, and the `os.fstat` of the file read."""
    with open(file, "rb") as handle:
        stat = os.fstat(handle.fileno())
        with Image.open(handle) as opened:
            image = opened if opened.mode == mode else opened.convert(mode)
            if size is not None and image.size != (size[1], size[0]):
                image = image.resize((size[1], size[0]), Image.Resampling.BILINEAR)
            return np.asarray(image), stat


def _decode_span(
    job: _Job, start: int, stop: int
) -> tuple[int, str | tuple[int, ...]] | None:
    """Decode files `start:stop` into their rows; the first problem: its index, why or its shape."""
    for index in range(start, stop):
        file = job.files[index]
        try:
            pixels, stat = _decode_one(file, job.size, job.mode)
        except _UNREADABLE as error:
            return index, _reason(error, file)
        if pixels.shape != job.shape:
            return index, pixels.shape
        job.x[index] = pixels
        job.stats[0, index] = stat.st_size
        job.stats[1, index] = stat.st_mtime_ns
    return None


def _reason(error: BaseException, file: str) -> str:
    """The first line of Pillow's message, worded as if Pillow had been given the path."""
    if isinstance(error, UnidentifiedImageError):
        return f"cannot identify image file {file!r}"  # given a handle it names the handle
    text = str(error)
    return text.splitlines()[0] if text else type(error).__name__


def _cpus() -> int:
    """The CPUs this process may run on (its affinity where the platform has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _buffer(size: int, shared: bool) -> Any:
    """`size` bytes: an anonymous shared mapping (forked workers write into it), or private."""
    if shared:
        return mmap.mmap(-1, size)  # anonymous: nothing to unlink, even after a crash
    return bytearray(size)


def _private(shared: np.ndarray, mapping: mmap.mmap) -> np.ndarray:
    """A private copy of an array in a shared mapping, which is emptied as the copy proceeds.

    Returned shared, the array would stay shared with any process forked later
    (a study's workers): one's writes would show in the others. Emptying the
    mapping in steps keeps the peak memory near one array, not two.
    """
    copy = np.empty_like(shared)
    source, target = shared.reshape(-1), copy.reshape(-1)
    step = 1 << 23  # a whole number of pages, as madvise wants
    for start in range(0, source.size, step):
        target[start:start + step] = source[start:start + step]
        mapping.madvise(mmap.MADV_REMOVE, start, min(step, source.size - start))
    return copy


def _cut(count: int, parts: int) -> list[tuple[int, int]]:
    """`0..count` cut into `parts` (at most `_MOST_SPANS`, at most `count`) contiguous spans."""
    bounds = np.linspace(0, count, min(count, parts, _MOST_SPANS) + 1).astype(int).tolist()
    return list(itertools.pairwise(bounds))


def _each_span(
    work: Callable[[int, int], int], spans: list[tuple[int, int]], workers: int,
    processes: bool,
) -> list[int]:
    """`work(start, stop)` of every span, in parallel: its result, `_NOT_DONE` if its worker died.

    With `processes`, `work` runs in forked processes too: what it writes must be
    in memory from `_buffer(..., shared=True)`.
    """
    states = np.frombuffer(_buffer(8 * len(spans), processes), np.int64)
    states[:] = _NOT_DONE

    def run(index: int) -> None:
        states[index] = work(*spans[index])

    _in_parallel(run, len(spans), workers, processes)
    return states.tolist()


def _in_parallel(work: Callable[[int], None], spans: int, workers: int, processes: bool) -> None:
    """Run `work(span)` for spans `0..spans-1`, taken in turn by `workers` workers.

    The caller is one of them; the others are threads, or forked processes when
    `processes` (whose work must then go to shared memory). The span numbers wait in
    a pipe, so each is read by exactly one worker.
    """
    read, write = os.pipe()
    try:
        try:
            os.write(write, b"".join(index.to_bytes(4, "little") for index in range(spans)))
        finally:
            os.close(write)  # a worker reading an empty pipe gets its end, and stops
        run = _in_processes if processes else _in_threads
        run(lambda: _take(read, work), read, workers)
    finally:
        os.close(read)


def _take(read: int, work: Callable[[int], None]) -> None:
    while record := os.read(read, 4):
        work(int.from_bytes(record, "little"))


def _in_processes(task: Callable[[], None], read: int, workers: int) -> None:
    """Run `task` here and in `workers - 1` forked processes; kill them if this one fails."""
    children: list[int] = []
    try:
        for _ in range(workers - 1):
            # A signal's exception raised between fork's return and the append would
            # lose the child: stopping signals wait until it is counted.
            held = signal.pthread_sigmask(signal.SIG_BLOCK, _STOPS)
            try:
                pid = os.fork()
                if pid == 0:
                    _child(task, held)
                children.append(pid)
            except OSError:
                break  # no more processes to be had: fewer workers do the spans
            finally:
                signal.pthread_sigmask(signal.SIG_SETMASK, held)
        task()
        while children:
            os.waitpid(children[-1], 0)  # one that died has its spans redone by the caller
            children.pop()
    finally:
        if children:
            os.read(read, 1 << 16)  # the spans left: no worker starts another
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for pid in children:
            os.waitpid(pid, 0)


def _child(task: Callable[[], None], mask: set[signal.Signals]) -> None:
    """A forked worker: run `task`, then end without returning into the caller's code."""
    code = 1
    try:
        # The caller stops on a Ctrl-C (or SIGTERM) and kills this process; the
        # caller's own handlers (tricklab's stop_signals) have no business here.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        task()
        code = 0
    finally:
        os._exit(code)  # nor into its exit handlers


def _in_threads(task: Callable[[], None], read: int, workers: int) -> None:
    """Run `task` here and in `workers - 1` threads."""
    if workers == 1:
        task()
        return
    with ThreadPoolExecutor(workers - 1) as pool:
        helpers = [pool.submit(task) for _ in range(workers - 1)]
        try:
            task()
        except BaseException:
            os.read(read, 1 << 16)  # the spans left: each thread stops after its current one
            raise
        for helper in helpers:
            helper.result()


def _mixed(
    first: str, first_shape: tuple[int, ...], other: str, other_shape: tuple[int, ...],
    sample: bool = False,
) -> str:
    """The message for two images of different sizes without `image_size`."""
    start = 0 if sample else 1
    height, width = first_shape[start], first_shape[start + 1]
    other_height, other_width = other_shape[start], other_shape[start + 1]
    return (
        f"data.image_size: images differ in size: {first} is {height}x{width} (HxW) but "
        f"{other} is {other_height}x{other_width}; set data.image_size: [height, width] to "
        "resize them all"
    )


def _image_folder_shape(options: dict[str, Any]) -> tuple[int, ...]:
    """The per-sample shape from the resolved `data:` options, opening one image header at most."""
    channels = () if options.get("color_mode", "rgb") == "grayscale" else (3,)
    size = options.get("image_size")
    if size is None:
        path = options["path"]
        _, files, _ = _listing(path, "path")
        file = os.path.join(path, files[0])
        try:
            with Image.open(file) as image:
                width, height = image.size  # read from the header; nothing decoded
        except (OSError, ValueError, SyntaxError) as error:
            raise UserInputError(f"data.path: cannot read image {file} ({error})") from None
        size = (height, width)
    return (int(size[0]), int(size[1]), *channels)


INPUT_SHAPES["image_folder"] = _image_folder_shape
# Pixels are always uint8, so `scale: auto` is always `unit`.
AUTO_OPTIONS["image_folder"] = lambda options: (
    {"scale": "unit"} if options.get("scale", "auto") == "auto" else {}
)
