"""Your own NumPy arrays as a dataset: `data: {dataset: numpy, path: data.npz}`.

The file is an `.npz` archive as `numpy.savez(path, x=inputs, y=targets)`
writes it, optionally with `x_test` and `y_test`; the array names are options.
Inputs may have any sample shape: a table `[N, F]`, grey images `[N, H, W]`,
colour images `[N, H, W, C]`, sequences `[N, T, F]`. The archive is read with
`numpy.load(path, allow_pickle=False)` and nothing else, so an archive holding
Python objects is refused rather than unpickled. Everything after reading (task,
splits, classes, scaling) is `tricklab.data.own.own_splits`, shared with the
other sources of own data.

Registered in `datasets` like `tricklab.data.generated`; `INPUT_SHAPES["numpy"]`
reads only the `.npy` header of `x` inside the archive, so resolving a recipe or
`tricklab summary` never loads the arrays. A relative `path` is relative to the
working directory.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import pydantic

from tricklab.checks import count_or_fraction
from tricklab.data.datasets import AUTO_OPTIONS, INPUT_SHAPES, DatasetSplits, datasets
from tricklab.data.own import TEST_FRACTION, VALIDATION, NonNegativeInt, OwnScale, Task, own_splits
from tricklab.data.splits import PositiveInt
from tricklab.errors import UserInputError

Validation = Annotated[
    pydantic.StrictInt | pydantic.StrictFloat, pydantic.AfterValidator(count_or_fraction)
]
"""`data.validation`: a count of samples (integer >= 0) or a fraction in (0, 1)."""

Fraction = Annotated[float, pydantic.Field(strict=True, gt=0, lt=1)]
"""A share of the samples, strictly between 0 and 1."""


@datasets.register(
    "numpy",
    description="Your own arrays from a NumPy .npz file: x and y, optionally x_test and "
    "y_test; classification or regression, any sample shape",
    reference="NumPy .npz format (numpy.savez; numpy.lib.format), "
    "https://numpy.org/doc/stable/reference/generated/numpy.lib.format.html",
)
def numpy_arrays(
    path: str,
    x_key: str = "x",
    y_key: str = "y",
    x_test_key: str = "x_test",
    y_test_key: str = "y_test",
    task: Task = "auto",
    validation: Validation = VALIDATION,
    test_fraction: Fraction = TEST_FRACTION,
    train_size: PositiveInt | None = None,
    classes: list[int | float | str] | None = None,
    scale: OwnScale = "auto",
    data_seed: NonNegativeInt = 0,
) -> DatasetSplits:
    """Load inputs and targets from an `.npz` archive, then split and scale them.

    Classification or regression follows `task`; with `auto`, integer, boolean and
    string targets are classification (labels 0..k-1 in sorted order of the
    distinct values, whose strings are the class names) and float targets are
    regression (float32 `[N]`, or `[N, k]` for k outputs). The test part is the
    archive's `x_test`/`y_test` when it has both, else `test_fraction` of `x`/`y`.

    Args:
        path: The `.npz` file, relative to the working directory.
        x_key: Name of the inputs array. Defaults to `"x"`.
        y_key: Name of the targets array. Defaults to `"y"`.
        x_test_key: Name of the test inputs, used when the archive has it. Defaults
            to `"x_test"`.
        y_test_key: Name of the test targets, needed with the test inputs. Defaults
            to `"y_test"`.
        task: `auto`, `classification` or `regression`. Defaults to `"auto"`.
        validation: A count (integer >= 0; 0 means no validation part) or a fraction
            in (0, 1) of the training samples, stratified for classification.
            Defaults to `0.1`.
        test_fraction: Fraction in (0, 1) of the samples held out for testing when
            the archive has no test arrays, stratified for classification.
            Defaults to `0.2`.
        train_size: Training samples to keep, from the training part shuffled by
            `data_seed`. Defaults to `None` (all of them).
        classes: Classes to keep, by name or value, relabelled in this order.
            Defaults to `None` (all).
        scale: `auto`, `unit` (/255), `standardize` (training mean and deviation
            per value of a sample) or `none`; `auto` is `unit` for uint8 inputs and
            `standardize` otherwise, and the dataset's `scale` says which was used.
            Defaults to `"auto"`.
        data_seed: Seed of the test and validation draws and of the training order,
            independent of the run's seed. Defaults to `0`.

    Returns:
        The train, validation and test parts (see `tricklab.data.own.own_splits`).

    Raises:
        UserInputError: One line naming the file and the array, or `data.<option>`:
            a missing or unreadable file, a missing array (listing those present),
            an array of Python objects, an empty or non-numeric array, `x` and `y`
            of different lengths, and every problem `own_splits` finds.
    """
    file = Path(path)
    where = {
        role: f"data file {path}: array '{key}'"
        for role, key in (("x", x_key), ("y", y_key), ("x_test", x_test_key),
                          ("y_test", y_test_key))
    }
    with open_npz(file) as archive:
        present = list(archive.files)
        x, y = (read_array(archive, key, file, present) for key in (x_key, y_key))
        found = [key for key in (x_test_key, y_test_key) if key in present]
        if len(found) == 1:
            missing = y_test_key if found[0] == x_test_key else x_test_key
            raise UserInputError(
                f"data file {path}: has '{found[0]}' but no '{missing}'; a test part needs "
                f"both (arrays present: {', '.join(present)})"
            )
        test = tuple(read_array(archive, key, file, present) for key in found) or None
    data = own_splits(
        "numpy", x, y, test, where, task=task, validation=validation,
        test_fraction=test_fraction, train_size=train_size, classes=classes, scale=scale,
        data_seed=data_seed,
    )
    data.raw_inputs = {"kind": "arrays", "x_key": x_key, "y_key": y_key}
    return data


def open_npz(file: Path) -> Any:
    """The archive opened by `numpy.load(file, allow_pickle=False)`, or a one-line error."""
    _check_archive(file)
    try:
        archive = np.load(file, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise UserInputError(f"data file {file}: cannot be read as .npz ({error})") from None
    return archive


def _check_archive(file: Path) -> None:
    """Refuse a missing file, a folder, or a file that is not a zip archive (an `.npz`)."""
    if not file.is_file():
        raise UserInputError(
            f"data.path: file not found: {file}; expected an .npz file written by "
            "numpy.savez(path, x=..., y=...)"
        )
    if not zipfile.is_zipfile(file):
        raise UserInputError(
            f"data file {file}: is not an .npz archive; write one with "
            "numpy.savez(path, x=..., y=...)"
        )


def read_array(archive: Any, key: str, file: Path, present: list[str]) -> np.ndarray:
    """One array of the archive, read without unpickling."""
    if key not in present:
        raise UserInputError(_missing(file, key, present))
    try:
        return archive[key]
    except ValueError as error:
        if "allow_pickle" in str(error):
            raise UserInputError(_objects(file, key)) from None
        raise UserInputError(f"data file {file}: array '{key}' cannot be read ({error})") from None


def _missing(file: Path, key: str, present: list[str]) -> str:
    return (
        f"data file {file}: no array '{key}'; arrays present: {', '.join(present) or 'none'} "
        "(choose others with data.x_key and data.y_key)"
    )


def _objects(file: Path, key: str) -> str:
    return (
        f"data file {file}: array '{key}' holds Python objects (dtype object), which are "
        "never unpickled; save numbers or strings, e.g. x.astype(np.float32)"
    )


def sample_shape(path: str, key: str = "x") -> tuple[int, ...]:
    """Shape of one sample of array `key`, read from its `.npy` header without loading it.

    Args:
        path: The `.npz` file.
        key: Name of the inputs array. Defaults to `"x"`.

    Returns:
        The array's shape without its first (sample) dimension.

    Raises:
        UserInputError: The same one-line messages as loading gives for a missing or
            non-zip file, a missing array, an object array, or an array with fewer
            than two dimensions.
    """
    shape, _ = _header(Path(path), key)
    return shape[1:]


def _header(file: Path, key: str) -> tuple[tuple[int, ...], np.dtype]:
    """The shape and dtype of array `key`, from its `.npy` header (see `sample_shape`)."""
    _check_archive(file)
    with zipfile.ZipFile(file) as archive:
        present = [name[: -len(".npy")] for name in archive.namelist() if name.endswith(".npy")]
        if key not in present:
            raise UserInputError(_missing(file, key, present))
        with archive.open(f"{key}.npy") as member:
            version = np.lib.format.read_magic(member)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(member)
            elif version == (2, 0):
                shape, _, dtype = np.lib.format.read_array_header_2_0(member)
            else:  # format 3.0 (utf-8 field names) has no public header reader: load it
                shape, dtype = None, None
    if shape is None:
        with open_npz(file) as loaded:
            array = read_array(loaded, key, file, present)
            shape, dtype = array.shape, array.dtype
    if dtype.hasobject:
        raise UserInputError(_objects(file, key))
    if len(shape) < 2:
        raise UserInputError(
            f"data file {file}: array '{key}' has shape {list(shape)}; expected one sample "
            "per row, [N, ...] (for a single feature, reshape it to [N, 1])"
        )
    return tuple(int(size) for size in shape), dtype


def _numpy_shape(options: dict[str, Any]) -> tuple[int, ...]:
    """The per-sample shape of `x`, from the resolved `data:` options."""
    return sample_shape(options["path"], options.get("x_key", "x"))


def _numpy_auto(options: dict[str, Any]) -> dict[str, Any]:
    """`scale: auto` decided from the header of `x`: `unit` for uint8, else `standardize`."""
    if options.get("scale", "auto") != "auto":
        return {}
    _, dtype = _header(Path(options["path"]), options.get("x_key", "x"))
    return {"scale": "unit" if dtype == np.uint8 else "standardize"}


INPUT_SHAPES["numpy"] = _numpy_shape
AUTO_OPTIONS["numpy"] = _numpy_auto
