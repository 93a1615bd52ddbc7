"""The user's own data, whatever file it came from: checks, task, splits and scaling.

A source of the user's own data (NumPy arrays in `tricklab.data.arrays`; CSV
tables and image folders reuse the same path) reads its file into NumPy arrays,
the full training inputs and targets plus, when the file has them, test ones,
and hands them to `own_splits` with the options every such source shares:

- `task`: `auto` (the default) decides from the targets' dtype: integer, boolean
  and string targets are classification, floating-point targets regression. No
  guess from the values: float labels such as `0.0, 1.0` are classes only with
  `task: classification`.
- `validation`, `test_fraction`: the parts drawn from the training arrays,
  stratified by class for classification, from `data_seed` alone (never the
  run's `seed`), so every run of a study sees the same split.
- `classes`, `train_size`: a subset of classes, and how many training samples to keep.
- `scale`: `auto` (the default) is `unit` for uint8 inputs (images) and
  `standardize` for every other dtype; the choice made is `DatasetSplits.scale`.

Inputs end as float32 tensors in memory, converted once from the file's dtype;
classification targets as int64 class indices, regression targets as float32.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import numpy as np
import pydantic
import torch

from tricklab.data.datasets import DatasetSplits, Scale, Split, check_finite, scale_parts
from tricklab.errors import UserInputError

Task = Literal["auto", "classification", "regression"]
OwnScale = Literal["auto", "unit", "standardize", "none"]
NonNegativeInt = Annotated[int, pydantic.Field(strict=True, ge=0)]
"""A seed: an integer of at least 0, never a bool or a float."""

VALIDATION = 0.1
"""Default share of the training samples that forms the validation part."""
TEST_FRACTION = 0.2
"""Default share of the samples that forms the test part when the file has no test arrays."""

_NUMERIC = "biuf"
"""dtype kinds an input may have: bool, signed and unsigned integer, float."""
_LABELS = "biufUS"
"""dtype kinds a target may have: the numeric ones and strings."""


def check_array(array: np.ndarray, where: str, kinds: str = _NUMERIC) -> None:
    """Refuse an empty array or one of a dtype other than `kinds`, naming it by `where`.

    Args:
        array: The array as read from the file.
        where: How a message names the array, e.g. `data file d.npz: array 'x'`.
        kinds: Accepted `numpy.dtype.kind` letters. Defaults to bool, integer and float.

    Raises:
        UserInputError: E.g. `data file d.npz: array 'x' has dtype <U3; expected numbers
            (bool, integer or float)`.
    """
    if array.dtype.kind not in kinds:
        accepted = "numbers (bool, integer or float)" + (" or strings" if "U" in kinds else "")
        raise UserInputError(f"{where} has dtype {array.dtype}; expected {accepted}")
    if array.ndim == 0 or array.size == 0:
        raise UserInputError(f"{where} is empty (shape {list(array.shape)}); expected samples")


def own_splits(
    name: str,
    x: np.ndarray,
    y: np.ndarray,
    test: tuple[np.ndarray, np.ndarray] | None,
    where: dict[str, str],
    *,
    task: Task = "auto",
    validation: int | float = VALIDATION,
    test_fraction: float = TEST_FRACTION,
    train_size: int | None = None,
    classes: list[Any] | None = None,
    scale: OwnScale = "auto",
    data_seed: int = 0,
) -> DatasetSplits:
    """Check the arrays, label them, split them, keep the chosen classes, scale the inputs.

    The order: targets become class indices (classification) or float32;
    `classes` keeps the chosen classes in every array; the test part is the
    `test` arrays, else `test_fraction` of the samples; `validation` comes from
    what is left; the training part is the rest, in an order shuffled by
    `data_seed`, of which `train_size` keeps the first samples (so a smaller
    `train_size` keeps a random subset of a larger one's). The validation and
    test parts keep the file's order. Held-out parts of a classification task
    are stratified: each class gets its share of the part, rounded to one of the
    two nearest whole numbers.

    Args:
        name: Registry name of the source, e.g. `numpy`.
        x: Full training inputs `[N, *sample_shape]` with at least two dimensions.
        y: Full training targets `[N]`, or `[N, k]` for a regression with k outputs
            (`[N, 1]` is read as `[N]`).
        test: Test inputs and targets, or `None` to draw them from `x` and `y`.
        where: How messages name each array, by role `x`, `y`, `x_test`, `y_test`,
            e.g. `{"x": "data file d.npz: array 'x'", ...}`.
        task: `auto`, `classification` or `regression`; `auto` means classification
            for integer, boolean and string targets, regression for float ones.
            Defaults to `"auto"`.
        validation: An integer `0 <= N < training samples` is a count (0: no
            validation part); a float in (0, 1) a share of the training samples
            left after the test part, rounded, at least 1. Defaults to `0.1`.
        test_fraction: Share in (0, 1) of the samples that forms the test part, at
            least 1 sample; used only when `test` is `None`. Defaults to `0.2`.
        train_size: Training samples to keep, from the start of the shuffled
            training part. Defaults to `None` (all of them).
        classes: Classes to keep, by name (the value as a string) or value,
            relabelled 0..k-1 in the given order; classification only. Defaults
            to `None` (every class, labelled in sorted order of the values).
        scale: `unit` divides the inputs by 255; `standardize` subtracts the
            training part's mean and divides by its standard deviation (population),
            per value of a sample (feature of a table, pixel of an image, step and
            feature of a sequence), a constant one getting a deviation of 1; `none`
            keeps the values; `auto` is `unit` for uint8 inputs and `standardize`
            for any other dtype. The choice made, never `auto`, is the result's
            `scale`, with `mean` and `std` in the file's units. Defaults to `"auto"`.
        data_seed: Seed of the split, independent of the run's seed. Defaults to `0`.

    Returns:
        The three parts, with `class_names` (the class values as strings; empty
        for regression), the input shape and the scaling statistics.

    Raises:
        UserInputError: One line naming the array or `data.<option>`: arrays of
            unequal lengths, bad dtypes or shapes, a single class, a test label
            absent from training, an option out of its range, a NaN or infinity.
    """
    _check_options(task, scale, test_fraction, data_seed)
    x, y = _checked_pair(x, y, where["x"], where["y"])
    if test is not None:
        test = _checked_pair(*test, where["x_test"], where["y_test"])
        if test[0].shape[1:] != x.shape[1:]:
            raise UserInputError(
                f"{where['x_test']}: samples of shape {list(test[0].shape[1:])} differ from "
                f"{where['x'].rsplit(': ', 1)[-1]}'s {list(x.shape[1:])}; expected the same"
            )
    if task == "auto":
        task = "regression" if y.dtype.kind == "f" else "classification"
    if task == "classification":
        y, test, class_names = _labels(y, test, where, classes)
        if classes is not None:
            x, y = x[y >= 0], y[y >= 0]
    else:
        if classes is not None:
            raise UserInputError(
                f"data.classes: only a classification task has classes, but this one is a "
                f"regression ({where['y']} holds {y.dtype} values); drop classes or set "
                "task: classification"
            )
        y, test, class_names = _regression(y, test, where)
    rng = np.random.default_rng(data_seed)
    labels = y if class_names else None
    if test is None:
        count = _count(test_fraction, len(y), "test_fraction", fraction_only=True)
        held, rest = _holdout(len(y), labels, count, rng)
        test = (x[held], y[held])
        x, y = x[rest], y[rest]
        labels = y if class_names else None
    count = _count(validation, len(y), "validation")
    held, rest = _holdout(len(y), labels, count, rng)
    val = (x[held], y[held]) if count else None
    order = rng.permutation(rest)  # a shuffled training part: train_size keeps a random subset
    if train_size is not None:
        if isinstance(train_size, bool) or not isinstance(train_size, int) or not (
            1 <= train_size <= len(order)
        ):
            raise UserInputError(
                f"data.train_size: must be an integer with 1 <= train_size <= {len(order)} "
                f"(the training samples left after test and validation), got {train_size!r}"
            )
        order = order[:train_size]
    train = (x[order], y[order])
    parts = {"train": _split(*train), "val": val and _split(*val), "test": _split(*test)}
    resolved: Scale = scale if scale != "auto" else (
        "unit" if x.dtype == np.uint8 else "standardize"
    )
    data = DatasetSplits(
        name=name, train=parts["train"], val=parts["val"], test=parts["test"],
        class_names=class_names, input_shape=tuple(x.shape[1:]), scale=resolved,
    )
    # Before scaling: `standardize` would spread one bad training value into every sample.
    check_finite(data)
    return scale_parts(data)


def _check_options(task: Any, scale: Any, test_fraction: Any, data_seed: Any) -> None:
    """Refuse an option outside its set or range (the loader's callers skip pydantic)."""
    if task not in ("auto", "classification", "regression"):
        raise UserInputError(
            f"data.task: must be one of auto, classification, regression, got {task!r}"
        )
    if scale not in ("auto", "unit", "standardize", "none"):
        raise UserInputError(
            f"data.scale: must be one of auto, unit, standardize, none, got {scale!r}"
        )
    if isinstance(data_seed, bool) or not isinstance(data_seed, int) or data_seed < 0:
        raise UserInputError(f"data.data_seed: must be an integer >= 0, got {data_seed!r}")
    if isinstance(test_fraction, bool) or not isinstance(test_fraction, float) or not (
        0 < test_fraction < 1
    ):
        raise UserInputError(
            f"data.test_fraction: must be a fraction 0 < f < 1, got {test_fraction!r}"
        )


def _checked_pair(
    x: np.ndarray, y: np.ndarray, x_where: str, y_where: str
) -> tuple[np.ndarray, np.ndarray]:
    """Inputs and targets checked for dtype, emptiness, rank and equal length; `[N, 1]` -> `[N]`."""
    check_array(x, x_where)
    check_array(y, y_where, _LABELS)
    if x.ndim < 2:
        raise UserInputError(
            f"{x_where} has shape {list(x.shape)}; expected one sample per row, [N, ...] "
            "(for a single feature, reshape it to [N, 1])"
        )
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim > 2:
        raise UserInputError(f"{y_where} has shape {list(y.shape)}; expected [N] or [N, outputs]")
    if len(x) != len(y):
        raise UserInputError(
            f"{x_where} holds {len(x)} samples but {y_where.rsplit(': ', 1)[-1]} holds "
            f"{len(y)}; expected one target per sample"
        )
    if y.dtype.kind == "S":
        y = y.astype(str)  # bytes labels read as text, so class names print as written
    return x, y


def _labels(
    y: np.ndarray, test: tuple[np.ndarray, np.ndarray] | None, where: dict[str, str],
    classes: list[Any] | None,
) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray] | None, list[str]]:
    """Targets as int64 class indices in sorted order of the values, `classes` applied."""
    if y.ndim != 1:
        raise UserInputError(
            f"{where['y']} has shape {list(y.shape)}; a classification needs one label per "
            "sample, [N]"
        )
    if y.dtype.kind == "f" and not np.isfinite(y).all():
        raise UserInputError(
            f"{where['y']}: label {y[~np.isfinite(y)][0]} at sample "
            f"{int(np.flatnonzero(~np.isfinite(y))[0])} is not a class; clean or drop it"
        )
    values = np.unique(y)
    if len(values) < 2:
        raise UserInputError(
            f"{where['y']} holds a single class ({values[0].item()!r}); a classification "
            "needs at least 2 (for numeric targets set task: regression)"
        )
    names = [str(value.item()) for value in values]
    y = np.searchsorted(values, y).astype(np.int64)
    if test is not None:
        x_test, y_test = test
        if y_test.ndim != 1:
            raise UserInputError(
                f"{where['y_test']} has shape {list(y_test.shape)}; expected [N] labels"
            )
        index = np.minimum(np.searchsorted(values, y_test), len(values) - 1)
        unknown = values[index] != y_test
        if unknown.any():
            raise UserInputError(
                f"{where['y_test']}: label {y_test[unknown][0].item()!r} never occurs in "
                f"{where['y'].rsplit(': ', 1)[-1]}; known classes: {', '.join(names)}"
            )
        test = (x_test, index.astype(np.int64))
    if classes is None:
        return y, test, names
    chosen = _chosen(classes, values, names)
    relabel = np.full(len(values), -1, dtype=np.int64)
    relabel[chosen] = np.arange(len(chosen))
    # Relabelled in the given order; -1 marks the samples of other classes, dropped later.
    y = relabel[y]
    if test is not None:
        kept = relabel[test[1]]
        test = (test[0][kept >= 0], kept[kept >= 0])
    return y, test, [names[index] for index in chosen]


def _chosen(classes: Any, values: np.ndarray, names: list[str]) -> list[int]:
    """Indices of `data.classes` among the sorted class values, matched by name or value."""
    numeric = values.dtype.kind in "iuf"
    if not isinstance(classes, list | tuple) or len(classes) < 2:
        raise UserInputError(
            f"data.classes: must list at least 2 classes, got {classes!r}; "
            f"classes: {', '.join(names)}"
        )
    chosen = []
    for item in classes:
        matches = [
            index for index, value in enumerate(values)
            if names[index] == str(item) or (
                numeric and isinstance(item, int | float) and not isinstance(item, bool)
                and value == item
            )
        ]
        if not matches:
            raise UserInputError(
                f"data.classes: {item!r} is not a class of the data; classes: {', '.join(names)}"
            )
        if matches[0] in chosen:
            raise UserInputError(f"data.classes: {item!r} is listed twice")
        chosen.append(matches[0])
    return chosen


def _regression(
    y: np.ndarray, test: tuple[np.ndarray, np.ndarray] | None, where: dict[str, str]
) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray] | None, list[str]]:
    """Training and test targets as float32, refusing text; no class names."""
    for role, targets in (("y", y), ("y_test", None if test is None else test[1])):
        if targets is not None and targets.dtype.kind not in _NUMERIC:
            raise UserInputError(
                f"{where[role]} has dtype {targets.dtype}; a regression needs numbers "
                "(for labels set task: classification)"
            )
    if test is not None:
        test = (test[0], test[1].astype(np.float32))
    return y.astype(np.float32), test, []


def _count(value: Any, total: int, key: str, fraction_only: bool = False) -> int:
    """Samples that `data.<key>` asks for out of `total`: a count, or a rounded fraction."""
    if isinstance(value, float) and 0 < value < 1:
        count = max(1, round(value * total))
        if count < total:
            return count
    elif not fraction_only and isinstance(value, int) and not isinstance(value, bool) and (
        0 <= value < total
    ):
        return value
    accepted = "a fraction 0 < f < 1" if fraction_only else (
        f"a count 0 <= N < {total} or a fraction 0 < f < 1"
    )
    raise UserInputError(
        f"data.{key}: must be {accepted} leaving at least 1 of the {total} samples for "
        f"training, got {value!r}"
    )


def _holdout(
    total: int, labels: np.ndarray | None, count: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Indices, ascending, of `count` of `total` samples drawn by `rng`, and of the rest.

    With `labels` the draw is stratified: each class gives `count * its size /
    total` samples rounded down, and the samples still missing go one each to the
    classes with the largest remainders, so every class's share is within one
    sample of its exact one.
    """
    if labels is None:
        held = rng.permutation(total)[:count]
    else:
        values, sizes = np.unique(labels, return_counts=True)
        quota = count * sizes / total
        take = np.floor(quota).astype(np.int64)
        # Stable sort: equal remainders go to the lower class index, the same every time.
        take[np.argsort(take - quota, kind="stable")[: count - int(take.sum())]] += 1
        held = np.concatenate([
            rng.permutation(np.flatnonzero(labels == value))[:size]
            for value, size in zip(values, take, strict=True)
        ])
    mask = np.zeros(total, dtype=bool)
    mask[held] = True
    return np.flatnonzero(mask), np.flatnonzero(~mask)


def _split(x: np.ndarray, y: np.ndarray) -> Split:
    """One part as tensors: inputs converted to float32 once (a copy), targets as they are."""
    return Split(torch.from_numpy(np.asarray(x, dtype=np.float32)), torch.from_numpy(y))
