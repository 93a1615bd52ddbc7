"""A folder of images, one subfolder per class: `data: {dataset: image_folder, path: photos/}`.

The folder is read as Keras's `image_dataset_from_directory(labels="inferred")`
reads it: the classes are the subfolders of `path` in sorted order of their
names (kept as `class_names`), and a class's images are the files with an
image extension (`.png .jpg .jpeg .bmp .gif .webp`, in any case) anywhere under
its subfolder, walked recursively as Keras walks it, in sorted order of their
relative paths. Files directly in `path` belong to no class and are ignored,
as in Keras.

Every image is decoded once with Pillow, in a thread pool of `os.cpu_count()`
workers (Pillow releases the GIL while it decodes, and threads measured faster
than a process pool, which pays for sending every array back), converted to
`L` (grayscale) or `RGB`, resized with Pillow's bilinear filter when
`image_size` is given, and stacked into one uint8 array `[N, H, W]` or
`[N, H, W, 3]`, channels last like the built-in image datasets. The array is
cached as `<cache>/image_folder/<key>.npy` (the cache is `$TRICKLAB_CACHE`,
default `~/.cache/tricklab`), written atomically and read back with
`allow_pickle=False`; `<key>` is the SHA-256 of the sorted relative file list
with each file's size and modification time, and of `image_size` and
`color_mode`, so a later load of an unchanged folder opens no image, and
touching, adding or removing any file decodes the folder again.

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
import json
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import pydantic
from PIL import Image

from tricklab.atomic import write_with
from tricklab.data.arrays import Fraction, Validation
from tricklab.data.datasets import AUTO_OPTIONS, INPUT_SHAPES, DatasetSplits, datasets
from tricklab.data.own import TEST_FRACTION, VALIDATION, NonNegativeInt, OwnScale, own_splits
from tricklab.data.sources import cache_dir
from tricklab.data.splits import PositiveInt
from tricklab.errors import UserInputError

EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
"""File name endings read as images, compared case-insensitively."""

ColorMode = Literal["grayscale", "rgb"]
ImageSize = Annotated[list[PositiveInt], pydantic.Field(min_length=2, max_length=2)]
"""`data.image_size`: `[height, width]`, two integers > 0."""

_CACHE_VERSION = 1
"""Part of every cache key: raising it makes every earlier cache file unused."""


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
    size = None if image_size is None else (image_size[0], image_size[1])
    names, files = list_images(path, "path")
    x, first = _pixels(path, files, size, color_mode)
    y = np.array([names[label] for label, _ in files])
    test = None
    if test_path is not None:
        test_names, test_files = list_images(test_path, "test_path")
        if test_names != names:
            raise UserInputError(
                f"data.test_path: class folders {', '.join(test_names)} of {test_path} differ "
                f"from {', '.join(names)} of {path}; expected the same"
            )
        x_test, test_first = _pixels(test_path, test_files, size, color_mode)
        if x_test.shape[1:] != x.shape[1:]:
            raise UserInputError(_mixed(first, x.shape, test_first, x_test.shape))
        test = (x_test, np.array([names[label] for label, _ in test_files]))
    where = {
        "x": f"data.path {path}: images", "y": f"data.path {path}: class folders",
        "x_test": f"data.test_path {test_path}: images",
        "y_test": f"data.test_path {test_path}: class folders",
    }
    data = own_splits(
        "image_folder", x, y, test, where, task="classification", validation=validation,
        test_fraction=test_fraction, train_size=train_size, classes=classes, scale=scale,
        data_seed=data_seed,
    )
    data.raw_inputs = {"kind": "images", "image_size": data.input_shape[:2],
                       "color_mode": color_mode}
    return data


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
    root = Path(path)
    if not root.is_dir():
        raise UserInputError(
            f"data.{key}: folder not found: {path}; expected a folder with one subfolder of "
            "images per class"
        )
    names = sorted(entry.name for entry in root.iterdir() if entry.is_dir())
    if not names:
        raise UserInputError(
            f"data.{key}: {path} has no class subfolders; expected one subfolder of images "
            "per class"
        )
    files: list[tuple[int, str]] = []
    for label, name in enumerate(names):
        found = sorted(
            Path(folder, file).relative_to(root).as_posix()
            for folder, _, entries in os.walk(root / name)
            for file in entries if file.lower().endswith(EXTENSIONS)
        )
        if not found:
            raise UserInputError(
                f"data.{key}: class folder {root / name} holds no images "
                f"({' '.join(EXTENSIONS)}); add some or remove the folder"
            )
        files.extend((label, file) for file in found)
    return names, files


def cache_key(
    path: str, files: list[tuple[int, str]], image_size: tuple[int, int] | None,
    color_mode: str,
) -> str:
    """SHA-256 of the relative file list, each file's size and mtime, and the pixel options."""
    root = Path(path)
    listing = []
    for _, file in files:
        stat = (root / file).stat()
        listing.append([file, stat.st_size, stat.st_mtime_ns])
    document = {
        "version": _CACHE_VERSION, "files": sorted(listing),
        "image_size": None if image_size is None else list(image_size),
        "color_mode": color_mode,
    }
    return hashlib.sha256(json.dumps(document).encode()).hexdigest()


def _pixels(
    path: str, files: list[tuple[int, str]], size: tuple[int, int] | None, color_mode: str
) -> tuple[np.ndarray, str]:
    """All images of `files` as one uint8 array, from the cache or decoded; and the first file."""
    first = str(Path(path) / files[0][1])
    cached = cache_dir() / "image_folder" / f"{cache_key(path, files, size, color_mode)}.npy"
    if cached.is_file():
        try:
            x = np.load(cached, allow_pickle=False)
        except (OSError, ValueError):
            x = None  # an unreadable cache file is decoded again and replaced
        if x is not None and x.dtype == np.uint8 and len(x) == len(files):
            return x, first
    x = decode_images([Path(path) / file for _, file in files], size, color_mode)
    # A cache that cannot be written (read-only, full) only costs the next load its time.
    with contextlib.suppress(OSError):
        write_with(cached, lambda handle: np.save(handle, x, allow_pickle=False))
    return x, first


def decode_images(
    files: list[Path], image_size: tuple[int, int] | None = None, color_mode: str = "rgb",
    executor: Callable[..., Any] = ThreadPoolExecutor, key: str = "data.path",
) -> np.ndarray:
    """Decode `files` with Pillow in parallel into one uint8 array `[N, H, W(, 3)]`.

    Args:
        files: The image files, in the order of the result.
        image_size: `(height, width)` to resize to, bilinear. Defaults to `None`
            (keep the size, which must be the same for all).
        color_mode: `grayscale` or `rgb`. Defaults to `"rgb"`.
        executor: The pool class, given `max_workers=os.cpu_count()`. Defaults to
            `ThreadPoolExecutor`.
        key: What messages name the images by. Defaults to `"data.path"`.

    Raises:
        UserInputError: A file Pillow cannot read, or two files of different sizes
            without `image_size`, each named.
    """
    jobs = [(str(file), image_size, color_mode) for file in files]
    with executor(max_workers=os.cpu_count() or 1) as pool:
        decoded = list(pool.map(_decode, jobs, chunksize=64))
    for file, result in zip(files, decoded, strict=True):
        if isinstance(result, str):
            raise UserInputError(f"{key}: cannot read image {file} ({result})")
    shapes = [result.shape for result in decoded]
    for file, shape in zip(files, shapes, strict=True):
        if shape != shapes[0]:
            raise UserInputError(_mixed(str(files[0]), shapes[0], str(file), shape, sample=True))
    return np.stack(decoded)


def _decode(job: tuple[str, tuple[int, int] | None, str]) -> np.ndarray | str:
    """One image as uint8 `[H, W]` or `[H, W, 3]`, or why Pillow cannot read it."""
    file, size, color_mode = job
    try:
        with Image.open(file) as image:
            converted = image.convert("L" if color_mode == "grayscale" else "RGB")
        if size is not None and converted.size != (size[1], size[0]):
            converted = converted.resize((size[1], size[0]), Image.Resampling.BILINEAR)
        return np.asarray(converted, dtype=np.uint8)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        return str(error).splitlines()[0] if str(error) else type(error).__name__


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
        _, files = list_images(path, "path")
        file = Path(path) / files[0][1]
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
