"""CIFAR-10 and CIFAR-100 from the official binary archives: `data: {dataset: cifar10}`.

The format is the archives' "binary version" (Krizhevsky 2009,
https://www.cs.toronto.edu/~kriz/cifar.html): each record is its label byte(s)
then 3072 pixel bytes, the 1024 red values of the 32x32 image in row-major
order, then the 1024 green, then the 1024 blue.

- `cifar-10-binary.tar.gz`: one label byte (0-9) per record;
  `cifar-10-batches-bin/data_batch_1.bin` to `data_batch_5.bin` (10,000 records
  each) are the training part, `test_batch.bin` (10,000) the test part, and
  `batches.meta.txt` names the classes, line k naming label k.
- `cifar-100-binary.tar.gz`: a coarse label byte (0-19, the superclass) then a
  fine label byte (0-99) per record; `cifar-100-binary/train.bin` (50,000),
  `test.bin` (10,000), `coarse_label_names.txt` and `fine_label_names.txt`.

`cifar100` gives the fine labels, 100 classes, unless `label_mode: coarse`
asks for the 20 superclasses, as Keras's `cifar100.load_data(label_mode=...)`
does (default `"fine"` there too).

Loading never unpickles (the archives' Python versions are pickles; the binary
ones are raw bytes) and never extracts: the archive, found on this machine by
`tricklab.data.sources.require` (`tricklab data fetch cifar10` downloads it,
SHA-256 verified), is read once as a stream, taking only the expected member
names and only regular files of at most the official size, so no name from the
archive ever reaches the file system. The gzip stream is read to its end, so
its CRC-32 and length check the whole archive. The images become uint8
`[N, 32, 32, 3]`, channels last, exactly what `image_folder` gives for RGB
images (the convolution layers take that layout), and are kept with every label
and the class names in one uncompressed `.npz`,
`<cache>/<name>/decoded-<key>.npz` (the cache is `$TRICKLAB_CACHE`, default
`~/.cache/tricklab`; `<key>` is the SHA-256 of the archive's path, size and
modification time), written atomically and read back with
`allow_pickle=False`: a later load reads the arrays (0.1 s for CIFAR-10 on a
2-core machine) instead of decompressing the archive again (1.3-2 s there, as
long as a plain gunzip of it).

Everything after reading is `tricklab.data.own.own_splits`, shared with the
user's own data: the test part is the official test file; `validation` is
drawn from the training file, stratified by class, from `data_seed` (never the
run's seed); `train_size` keeps that many of the rest, shuffled by `data_seed`;
`classes` keeps some classes, named or numbered; `scale` defaults to `unit`, as
for the other uint8 images. Class k is the dataset's label k, named by the
names file.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import tarfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from tricklab.atomic import write_with
from tricklab.data.arrays import Validation
from tricklab.data.datasets import INPUT_SHAPES, DatasetSplits, Scale, datasets
from tricklab.data.own import NonNegativeInt, own_splits
from tricklab.data.sources import require
from tricklab.data.splits import PositiveInt
from tricklab.errors import UserInputError
from tricklab.paths import cache_dir

LabelMode = Literal["fine", "coarse"]

IMAGE_SHAPE = (32, 32, 3)
"""One image as loaded: height, width, channels (red, green, blue)."""
PIXEL_BYTES = 3 * 32 * 32
VALIDATION = 5000
"""Default validation images: a tenth of the training file, as the book's `X_train[:5000]`."""

_NAMES_LIMIT = 1 << 16
"""Largest names file read, in bytes; the official ones hold a few hundred."""
_MAX_RECORDS = 50_000
"""Most records one member may hold: the largest official file, CIFAR-100's train.bin."""
_CACHE_VERSION = 1
"""Part of every cache key: raising it makes every earlier decoded file unused."""


@dataclass(frozen=True)
class LabelByte:
    """One label byte of a record.

    Args:
        mode: Its name, the `label_mode` that chooses it.
        names: The member naming its classes, one per line.
        classes: How many classes it numbers.
    """

    mode: str
    names: str
    classes: int


@dataclass(frozen=True)
class Format:
    """The layout of one official binary archive.

    Args:
        name: The registry name, e.g. `cifar10`.
        title: How messages name the dataset, e.g. `CIFAR-10`.
        archive: The archive's file name, as downloaded.
        train: Members holding the training records, in order.
        test: Members holding the test records, in order.
        labels: The label bytes at the start of every record, in order.
    """

    name: str
    title: str
    archive: str
    train: tuple[str, ...]
    test: tuple[str, ...]
    labels: tuple[LabelByte, ...]

    @property
    def record_bytes(self) -> int:
        """Bytes per record: the label bytes and the 3072 pixels."""
        return len(self.labels) + PIXEL_BYTES


FORMATS: dict[str, Format] = {
    "cifar10": Format(
        name="cifar10",
        title="CIFAR-10",
        archive="cifar-10-binary.tar.gz",
        train=tuple(f"cifar-10-batches-bin/data_batch_{i}.bin" for i in range(1, 6)),
        test=("cifar-10-batches-bin/test_batch.bin",),
        labels=(LabelByte("label", "cifar-10-batches-bin/batches.meta.txt", 10),),
    ),
    "cifar100": Format(
        name="cifar100",
        title="CIFAR-100",
        archive="cifar-100-binary.tar.gz",
        train=("cifar-100-binary/train.bin",),
        test=("cifar-100-binary/test.bin",),
        labels=(
            LabelByte("coarse", "cifar-100-binary/coarse_label_names.txt", 20),
            LabelByte("fine", "cifar-100-binary/fine_label_names.txt", 100),
        ),
    ),
}

REFERENCE = (
    "Krizhevsky (2009), Learning Multiple Layers of Features from Tiny Images, tech. report, "
    "University of Toronto"
)


@datasets.register(
    "cifar10",
    description="CIFAR-10: 32x32 colour photos, 10 classes (airplane ... truck), "
    "50000 train / 10000 test; `tricklab data fetch cifar10` downloads it",
    reference=REFERENCE,
    keras_name="cifar10",
)
def cifar10(
    validation: Validation = VALIDATION, scale: Scale = "unit",
    classes: list[int | str] | None = None, train_size: PositiveInt | None = None,
    data_seed: NonNegativeInt = 0,
) -> DatasetSplits:
    """Load CIFAR-10 from its binary archive, then split and scale it.

    Args:
        validation: A count (integer >= 0; 0 means no validation part) or a
            fraction in (0, 1) of the 50,000 training images, drawn stratified by
            class from `data_seed`. Defaults to `5000`.
        scale: `unit` (/255), `standardize` (training mean and deviation per pixel
            and channel) or `none`. Defaults to `"unit"`.
        classes: Classes to keep, by name (`cat`) or label (`3`), relabelled in
            this order. Defaults to `None` (all ten, in label order).
        train_size: Training images to keep, from the training part shuffled by
            `data_seed`. Defaults to `None` (all of them).
        data_seed: Seed of the validation draw and of the training order,
            independent of the run's seed. Defaults to `0`.

    Returns:
        Inputs float32 `[N, 32, 32, 3]`, labels int64, the class names of
        `batches.meta.txt`.

    Raises:
        UserInputError: One line: the archive is nowhere on this machine (with
            the command that fetches it), it is not a readable CIFAR-10 archive,
            or an option is out of its range.

    Reference:
        Krizhevsky (2009), "Learning Multiple Layers of Features from Tiny Images",
        tech. report, University of Toronto.
    """
    return _load("cifar10", "label", validation, scale, classes, train_size, data_seed)


@datasets.register(
    "cifar100",
    description="CIFAR-100: 32x32 colour photos, 100 classes (label_mode: fine) or 20 "
    "superclasses (coarse), 50000 train / 10000 test; `tricklab data fetch cifar100` "
    "downloads it",
    reference=REFERENCE,
    keras_name="cifar100",
)
def cifar100(
    label_mode: LabelMode = "fine", validation: Validation = VALIDATION,
    scale: Scale = "unit", classes: list[int | str] | None = None,
    train_size: PositiveInt | None = None, data_seed: NonNegativeInt = 0,
) -> DatasetSplits:
    """Load CIFAR-100 from its binary archive, then split and scale it.

    Args:
        label_mode: `fine` (100 classes) or `coarse` (20 superclasses), as Keras's
            `cifar100.load_data(label_mode=...)`. Defaults to `"fine"`.
        validation: A count (integer >= 0; 0 means no validation part) or a
            fraction in (0, 1) of the 50,000 training images, drawn stratified by
            class from `data_seed`. Defaults to `5000`.
        scale: `unit` (/255), `standardize` (training mean and deviation per pixel
            and channel) or `none`. Defaults to `"unit"`.
        classes: Classes of `label_mode` to keep, by name (`apple`) or label,
            relabelled in this order. Defaults to `None` (all, in label order).
        train_size: Training images to keep, from the training part shuffled by
            `data_seed`. Defaults to `None` (all of them).
        data_seed: Seed of the validation draw and of the training order,
            independent of the run's seed. Defaults to `0`.

    Returns:
        Inputs float32 `[N, 32, 32, 3]`, labels int64 of `label_mode`, the class
        names of `fine_label_names.txt` or `coarse_label_names.txt`.

    Raises:
        UserInputError: One line: the archive is nowhere on this machine (with
            the command that fetches it), it is not a readable CIFAR-100 archive,
            or an option is out of its range.

    Reference:
        Krizhevsky (2009), "Learning Multiple Layers of Features from Tiny Images",
        tech. report, University of Toronto.
    """
    if label_mode not in ("fine", "coarse"):
        raise UserInputError(f"data.label_mode: must be one of fine, coarse, got {label_mode!r}")
    return _load("cifar100", label_mode, validation, scale, classes, train_size, data_seed)


def _load(
    name: str, label_mode: str, validation: Any, scale: Any, classes: list[Any] | None,
    train_size: int | None, data_seed: int,
) -> DatasetSplits:
    """Read (or reuse) the decoded archive, then hand the chosen labels to `own_splits`."""
    if scale not in ("unit", "standardize", "none"):
        raise UserInputError(f"data.scale: must be one of unit, standardize, none, got {scale!r}")
    form = FORMATS[name]
    archive = require(name) / form.archive
    arrays = decoded_arrays(name, archive)
    column = [label.mode for label in form.labels].index(label_mode)
    names = [str(class_name) for class_name in arrays[f"names_{label_mode}"]]
    # own_splits numbers the classes it sees; `read_archive` saw every one in training,
    # so its numbers are the dataset's labels.
    y_train = arrays["labels_train"][:, column]
    where = {
        role: f"data file {archive}: {part} {what}"
        for role, part, what in (("x", "training", "images"), ("y", "training", "labels"),
                                 ("x_test", "test", "images"), ("y_test", "test", "labels"))
    }
    data = own_splits(
        name, arrays["x_train"], y_train, (arrays["x_test"], arrays["labels_test"][:, column]),
        where, task="classification", validation=validation, train_size=train_size,
        classes=None if classes is None else class_ids(classes, names, name), scale=scale,
        data_seed=data_seed,
    )
    # own_splits names a class by its label's digits; the dataset has real names.
    data.class_names = [names[int(label)] for label in data.class_names]
    data.raw_inputs = {"kind": "images", "image_size": IMAGE_SHAPE[:2], "color_mode": "rgb"}
    return data


def class_ids(classes: Any, names: list[str], name: str) -> list[int]:
    """The labels of `data.classes`, each given by its name or its label.

    Args:
        classes: The option's value: at least two names or labels.
        names: The dataset's class names, in label order.
        name: The dataset, for messages.

    Raises:
        UserInputError: Fewer than two classes, an unknown name or label, or one
            listed twice.
    """
    accepted = f"a name ({names[0]}, {names[1]}, ..., {names[-1]}) or a label 0..{len(names) - 1}"
    if not isinstance(classes, list | tuple) or len(classes) < 2:
        raise UserInputError(
            f"data.classes: must list at least 2 classes of {name}, each {accepted}; "
            f"got {classes!r}"
        )
    chosen: list[int] = []
    for item in classes:
        if isinstance(item, str) and item in names:
            label = names.index(item)
        elif isinstance(item, int) and not isinstance(item, bool) and 0 <= item < len(names):
            label = item
        else:
            raise UserInputError(
                f"data.classes: {item!r} is not a class of {name}; expected {accepted}"
            )
        if label in chosen:
            raise UserInputError(f"data.classes: {item!r} is listed twice")
        chosen.append(label)
    return chosen


def decoded_arrays(name: str, archive: Path) -> dict[str, np.ndarray]:
    """The archive's images, labels and class names, from the decoded cache or the archive.

    Args:
        name: `cifar10` or `cifar100`.
        archive: The official binary archive.

    Returns:
        `x_train` and `x_test`, uint8 `[N, 32, 32, 3]`; `labels_train` and
        `labels_test`, uint8 `[N, label bytes]` in the records' byte order; and
        `names_<mode>` per label byte, the class names as a string array.

    Raises:
        UserInputError: The archive is not a readable archive of this dataset.
    """
    form = FORMATS[name]
    cached = cache_dir() / name / f"decoded-{_cache_key(archive)}.npz"
    if cached.is_file():
        arrays = _read_cache(cached, form)
        if arrays is not None:
            return arrays
    arrays = read_archive(archive, form)
    # A cache that cannot be written (read-only, full) only costs the next load its time.
    with contextlib.suppress(OSError):
        write_with(cached, lambda handle: np.savez(handle, **arrays))
    return arrays


def _cache_key(archive: Path) -> str:
    """SHA-256 of the archive's resolved path, size and modification time."""
    stat = archive.stat()
    document = {
        "version": _CACHE_VERSION, "archive": str(archive.resolve()), "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
    }
    return hashlib.sha256(json.dumps(document).encode()).hexdigest()


def _read_cache(path: Path, form: Format) -> dict[str, np.ndarray] | None:
    """The arrays of a decoded file, or `None` when it is unreadable or not what it should be."""
    keys = ["x_train", "x_test", "labels_train", "labels_test",
            *(f"names_{label.mode}" for label in form.labels)]
    try:
        with np.load(path, allow_pickle=False) as stored:
            arrays = {key: stored[key] for key in keys}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None
    for part in ("train", "test"):
        x, labels = arrays[f"x_{part}"], arrays[f"labels_{part}"]
        if (x.dtype != np.uint8 or x.shape[1:] != IMAGE_SHAPE or labels.dtype != np.uint8
                or labels.shape != (len(x), len(form.labels))):
            return None
    for label in form.labels:
        names = arrays[f"names_{label.mode}"]
        if names.dtype.kind != "U" or names.shape != (label.classes,):
            return None
    return arrays


def read_archive(archive: Path, form: Format) -> dict[str, np.ndarray]:
    """Decode the official binary archive `archive` of layout `form`, checking every byte.

    Args:
        archive: A `.tar.gz` file.
        form: The dataset's layout, an entry of `FORMATS`.

    Returns:
        The arrays `decoded_arrays` returns.

    Raises:
        UserInputError: One line naming the file: not a gzipped tar, damaged
            (CRC-32 or length), cut short, a member missing, not a regular file or
            too large, a data member that is not whole records, a label out of
            range, a names file with another number of names, or a class without
            a training record.
    """
    members = _members(archive, form)
    arrays = {}
    for part, names in (("train", form.train), ("test", form.test)):
        arrays[f"x_{part}"], arrays[f"labels_{part}"] = _records(archive, form, names, members)
    for index, label in enumerate(form.labels):
        # CIFAR-100's two label bytes are told apart as `coarse` and `fine`.
        kind = f"{label.mode} " if len(form.labels) > 1 else ""
        for part in ("train", "test"):
            values = arrays[f"labels_{part}"][:, index]
            if len(values) and values.max() >= label.classes:
                record = int(np.flatnonzero(values >= label.classes)[0])
                raise UserInputError(
                    f"data file {archive}: {part} record {record} has {kind}label "
                    f"{values[record]}; {form.title}'s {kind}labels are 0..{label.classes - 1}"
                )
        class_names = _names(members.pop(label.names), archive, label)
        counts = np.bincount(arrays["labels_train"][:, index], minlength=label.classes)
        if (counts == 0).any():
            # Splits number the classes present: a missing one would shift every later label.
            absent = int(np.flatnonzero(counts == 0)[0])
            raise UserInputError(
                f"data file {archive}: {kind}class {absent} ({class_names[absent]}) has no "
                f"training record; expected all {label.classes} {form.title} {kind}classes"
            )
        arrays[f"names_{label.mode}"] = np.array(class_names)
    return arrays


def _members(archive: Path, form: Format) -> dict[str, bytes]:
    """The bytes of every expected member, read in one pass over the gzip stream."""
    limits = {member: _MAX_RECORDS * form.record_bytes for member in (*form.train, *form.test)}
    limits.update((label.names, _NAMES_LIMIT) for label in form.labels)
    found: dict[str, bytes] = {}
    try:
        with gzip.open(archive, "rb") as stream, tarfile.open(fileobj=stream, mode="r|") as tar:
            for member in tar:
                if member.name not in limits:
                    continue  # readme.html and anything else: never read, never written
                if not member.isfile() or member.size > limits[member.name]:
                    what = "larger than any official one" if member.isfile() else "not a file"
                    raise UserInputError(
                        f"data file {archive}: member {member.name} is {what}; expected "
                        f"the official {form.archive}"
                    )
                found[member.name] = tar.extractfile(member).read()
            # To the end of the stream, where gzip checks the CRC-32 and length of it all.
            while stream.read(1 << 20):
                pass
    except (tarfile.TarError, EOFError, gzip.BadGzipFile, zlib.error) as error:
        raise UserInputError(
            f"data file {archive}: not a readable {form.archive} ({error}); delete it and run "
            f"`tricklab data fetch {form.name}`"
        ) from None
    absent = [member for member in limits if member not in found]
    if absent:
        raise UserInputError(
            f"data file {archive}: has no member {absent[0]}; expected the official "
            f"{form.archive}"
        )
    return found


def _records(
    archive: Path, form: Format, names: tuple[str, ...], members: dict[str, bytes]
) -> tuple[np.ndarray, np.ndarray]:
    """The images (channels last) and label bytes of the records of `names`, in order."""
    size = form.record_bytes
    for member in names:
        if len(members[member]) % size:
            raise UserInputError(
                f"data file {archive}: member {member} holds {len(members[member])} bytes, not "
                f"a whole number of {size}-byte records"
            )
    total = sum(len(members[member]) // size for member in names)
    x = np.empty((total, *IMAGE_SHAPE), dtype=np.uint8)
    labels = np.empty((total, len(form.labels)), dtype=np.uint8)
    start = 0
    for member in names:
        records = np.frombuffer(members.pop(member), dtype=np.uint8).reshape(-1, size)
        end = start + len(records)
        labels[start:end] = records[:, : len(form.labels)]
        # Planes R, G, B of 32 rows of 32 pixels -> rows, columns, channels.
        x[start:end] = records[:, len(form.labels):].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
        start = end
    return x, labels


def _names(raw: bytes, archive: Path, label: LabelByte) -> list[str]:
    """The class names of a names file: its non-blank lines, stripped."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = ""
    names = [line.strip() for line in text.splitlines() if line.strip()]
    if len(names) != label.classes:
        raise UserInputError(
            f"data file {archive}: member {label.names} names {len(names)} classes; expected "
            f"{label.classes}, one per line"
        )
    return names


def _cifar_shape(options: dict[str, Any]) -> tuple[int, ...]:
    """Every CIFAR image is 32x32 RGB, known without the archive."""
    return IMAGE_SHAPE


INPUT_SHAPES["cifar10"] = _cifar_shape
INPUT_SHAPES["cifar100"] = _cifar_shape
