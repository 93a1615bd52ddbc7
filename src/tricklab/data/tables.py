"""Your own table as a dataset: `data: {dataset: csv, path: train.csv, target: label}`.

The file's extension chooses the reader, all pandas: `.csv` (comma) and `.tsv`
(tab) through `pandas.read_csv(engine="pyarrow")`, `.parquet` through
`pandas.read_parquet`. No parsing is written here. One column is the target; the
features are the other columns (or `features`), numeric ones kept as numbers and
categorical ones one-hot encoded in place, in the order of `features`.

Every statistic comes from the TRAINING part alone, so the validation and test
rows never leak into it: the order is split first (`own_splits` on row numbers:
the task, `classes`, stratified `test_fraction` and `validation`, `train_size`,
`data_seed`, exactly as for the other own data), then each categorical column's
vocabulary (its distinct training values as strings, sorted), the fill values of
`missing: mean`, and the mean and deviation of `scale: standardize` are taken
from the training rows. A category absent from the training rows (and a missing
category under `missing: mean`) is encoded as all zeros in its block, the
"unknown" row of a one-hot code. Standardizing touches the numeric columns only;
one-hot columns stay 0/1 (their recorded mean is 0 and deviation 1, so
`DatasetSplits.scale_inputs` applied to encoded rows does the same).

The whole table is encoded once, by `Preprocessing.encode` (the code a
prediction runs on new rows), and each part is a gather of its rows. A fill is
pandas' float64 mean of a column's training values, a mean and deviation are
`torch.std_mean` of the encoded float32 training features (accumulated in
double), both over the training rows in their shuffled order.

Rows are named as the file counts them: in a CSV or TSV file `line 1` is the
header and the first data row is `line 2`; in a Parquet file, which has no lines,
the first row is `row 1`.

Registered in `datasets` like `tricklab.data.arrays`; `INPUT_SHAPES["csv"]`, the
number of encoded features `[F]`, depends on the training vocabularies and so on
the split: it reads the file once with pandas and encodes it, cheap for tables
that fit in memory (a 570-row, 31-column file takes milliseconds). A relative
`path` is relative to the working directory.
"""

from __future__ import annotations

import inspect
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch

from tricklab.data.arrays import Fraction, Validation
from tricklab.data.datasets import INPUT_SHAPES, DatasetSplits, Split, datasets
from tricklab.data.own import TEST_FRACTION, VALIDATION, NonNegativeInt, Task, own_splits
from tricklab.data.preprocessing import Column, Preprocessing, category_codes
from tricklab.data.splits import PositiveInt
from tricklab.errors import UserInputError

if TYPE_CHECKING:
    import pandas as pd

TableScale = Literal["standardize", "none"]
Missing = Literal["error", "drop", "mean"]

MAX_CLASSES = 20
"""`task: auto`: an integer target with at most this many distinct values is classification."""
_SUFFIXES = {".csv": ",", ".tsv": "\t", ".parquet": None}
_SPLIT = 4096
"""Row numbers travel through `own_splits` as two float32 columns (row // 4096, row % 4096),
both exact, so any table length splits exactly."""


@datasets.register(
    "csv",
    description="Your own table from a CSV, TSV or Parquet file: one target column, "
    "numeric and one-hot categorical features; classification or regression",
    reference="pandas.read_csv (pyarrow engine) and pandas.read_parquet, "
    "https://pandas.pydata.org/docs/reference/io.html",
)
def csv_table(
    path: str,
    target: str,
    test_path: str | None = None,
    features: list[str] | None = None,
    categorical: list[str] | None = None,
    task: Task = "auto",
    missing: Missing = "error",
    validation: Validation = VALIDATION,
    test_fraction: Fraction = TEST_FRACTION,
    train_size: PositiveInt | None = None,
    classes: list[int | float | str] | None = None,
    scale: TableScale = "standardize",
    data_seed: NonNegativeInt = 0,
) -> DatasetSplits:
    """Load a table, split it, one-hot encode its categories and scale its numbers.

    Args:
        path: The `.csv`, `.tsv` or `.parquet` file (by extension), relative to the
            working directory, with a header naming the columns.
        target: Name of the target column.
        test_path: A separate test file with the same columns (any of the three
            formats). Defaults to `None`: the test part is `test_fraction` of `path`.
        features: Feature columns, in the order they are encoded. Defaults to `None`:
            every column but the target, in the file's order.
        categorical: Feature columns to one-hot encode. Defaults to `None`: the
            non-numeric feature columns (text; booleans count as numbers 0/1). When
            given, auto-detection is off and a non-numeric feature not listed is an
            error; a numeric column may be listed (its values become categories).
        task: `auto`, `classification` or `regression`. `auto`: a text or boolean
            target is classification, an integer target is classification when it
            has at most 20 distinct values and regression otherwise, a float target
            (a column with a decimal point or missing values) is regression.
            Defaults to `"auto"`.
        missing: What an empty cell of a used column means. `error`: one line naming
            the column and the first such row; `drop`: rows with a missing feature or
            target are dropped (from `test_path` too); `mean`: numeric features are
            filled with the training part's mean and missing categories are encoded
            as all zeros (a missing target is still an error). Defaults to `"error"`.
        validation: A count (integer >= 0; 0 means no validation part) or a fraction
            in (0, 1) of the training rows, stratified for classification.
            Defaults to `0.1`.
        test_fraction: Fraction in (0, 1) of the rows held out for testing when there
            is no `test_path`, stratified for classification. Defaults to `0.2`.
        train_size: Training rows to keep, from the training part shuffled by
            `data_seed`. Defaults to `None` (all of them).
        classes: Classes to keep, by value, relabelled in this order. Defaults to
            `None` (all, in sorted order; the class names are the target's values).
        scale: `standardize` (numeric columns: training mean and population
            deviation, a constant column getting deviation 1) or `none`. Defaults to
            `"standardize"`.
        data_seed: Seed of the test and validation draws and of the training order,
            independent of the run's seed. Defaults to `0`.

    Returns:
        The train, validation and test parts, inputs float32 `[N, F]` with F the
        encoded feature count, targets int64 class indices or float32 values.

    Raises:
        UserInputError: One line naming the file, column or row, or `data.<option>`:
            a missing, unreadable or empty file, an unknown extension, a missing
            target or feature column (listing the columns), a non-numeric column
            not declared categorical, a missing value under `missing: error`, a
            single-class target, and every problem `own_splits` finds.
    """
    if scale not in ("standardize", "none"):
        raise UserInputError(f"data.scale: must be one of standardize, none, got {scale!r}")
    if missing not in ("error", "drop", "mean"):
        raise UserInputError(f"data.missing: must be one of error, drop, mean, got {missing!r}")
    frame = read_table(path)
    features, categorical = _columns(frame, path, target, features, categorical)
    used = [*features, target]
    test_frame = None
    if test_path is not None:
        test_frame = read_table(test_path, "data.test_path")
        absent = [column for column in used if column not in test_frame.columns]
        if absent:
            raise UserInputError(
                f"data file {test_path}: no column {', '.join(map(repr, absent))} of {path}; "
                f"columns: {', '.join(map(str, test_frame.columns))}"
            )
        _check_kinds(test_frame, test_path, features, categorical)
    frames = [(frame, path), *([(test_frame, test_path)] if test_frame is not None else [])]
    kept = []
    for table, file in frames:
        table = table[used]
        if missing == "drop":
            table = table.dropna()
            if table.empty:
                raise UserInputError(
                    f"data file {file}: every row has a missing value (data.missing: drop); "
                    "expected rows to keep"
                )
        else:
            _check_missing(table[[target] if missing == "mean" else used], file, missing)
        kept.append(table.reset_index(drop=True))
    frame, test_frame = kept[0], kept[1] if len(kept) > 1 else None
    y = _target(frame[target])
    resolved = _task(task, y)
    rows = len(frame)
    where = {"x": f"data file {path}: rows", "y": f"data file {path}: column '{target}'",
             "x_test": f"data file {test_path}: rows",
             "y_test": f"data file {test_path}: column '{target}'"}
    test = None
    if test_frame is not None:
        test = (_row_numbers(rows, rows + len(test_frame)), _target(test_frame[target]))
    parts = own_splits(
        "csv", _row_numbers(0, rows), y, test, where, task=resolved, validation=validation,
        test_fraction=test_fraction, train_size=train_size, classes=classes, scale="none",
        data_seed=data_seed,
    )
    import pandas as pd  # here, not at the top: a command that reads no table spares its import

    both = frame if test_frame is None else pd.concat([frame, test_frame], ignore_index=True)
    return _encoded(parts, both[features], categorical, scale, target, missing)


def read_table(path: str, key: str = "data.path") -> pd.DataFrame:
    """The whole file as a DataFrame, by its extension, or a one-line error.

    Args:
        path: A `.csv`, `.tsv` or `.parquet` file.
        key: What messages name the file by. Defaults to `"data.path"`.
    """
    file = Path(path)
    suffix = file.suffix.lower()
    if suffix not in _SUFFIXES:
        raise UserInputError(
            f"{key}: {path} has extension '{suffix}'; expected .csv, .tsv or .parquet"
        )
    if not file.is_file():
        raise UserInputError(
            f"{key}: file not found: {path}; expected a .csv, .tsv or .parquet table "
            "with a header row"
        )
    if file.stat().st_size == 0:
        raise UserInputError(f"data file {path}: is empty; expected a header and data rows")
    import pandas as pd

    try:
        if suffix == ".parquet":
            frame = pd.read_parquet(file)
        else:
            frame = pd.read_csv(file, sep=_SUFFIXES[suffix], engine="pyarrow")
    except (OSError, ValueError, pd.errors.ParserError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UserInputError(f"data file {path}: cannot be read ({first})") from None
    if frame.empty:
        raise UserInputError(
            f"data file {path}: is empty (columns: {', '.join(map(str, frame.columns)) or 'none'}"
            "); expected data rows"
        )
    frame.columns = [str(column) for column in frame.columns]
    return frame


def _numeric(series: pd.Series) -> bool:
    import pandas as pd

    return pd.api.types.is_bool_dtype(series) or pd.api.types.is_numeric_dtype(series)


def _columns(
    frame: pd.DataFrame, path: str, target: str, features: list[str] | None,
    categorical: list[str] | None,
) -> tuple[list[str], list[str]]:
    """The feature and categorical columns, checked against the file."""
    columns = list(frame.columns)
    if target not in columns:
        raise UserInputError(
            f"data file {path}: no target column '{target}' (data.target); columns: "
            f"{', '.join(columns)}"
        )
    if features is None:
        features = [column for column in columns if column != target]
    for column in features:
        if column not in columns:
            raise UserInputError(
                f"data.features: no column '{column}' in {path}; columns: {', '.join(columns)}"
            )
    if target in features:
        raise UserInputError(f"data.features: '{target}' is the target; list only inputs")
    if not features:
        raise UserInputError(f"data file {path}: no feature columns besides '{target}'")
    if categorical is None:
        categorical = [column for column in features if not _numeric(frame[column])]
    else:
        for column in categorical:
            if column not in features:
                raise UserInputError(
                    f"data.categorical: '{column}' is not a feature column; features: "
                    f"{', '.join(features)}"
                )
    _check_kinds(frame, path, features, categorical)
    return features, list(categorical)


def _check_kinds(
    frame: pd.DataFrame, path: str, features: list[str], categorical: list[str]
) -> None:
    """Refuse a non-numeric feature column that is not categorical."""
    for column in features:
        if column not in categorical and not _numeric(frame[column]):
            value = frame[column].dropna().iloc[0] if frame[column].notna().any() else None
            raise UserInputError(
                f"data file {path}: column '{column}' holds text ({value!r}) but is not in "
                "data.categorical, which was given explicitly so auto-detection is off; add "
                "it to data.categorical or leave it out of data.features"
            )


def _check_missing(table: pd.DataFrame, path: str, missing: str) -> None:
    """Refuse a missing value, naming the first row holding one and its first such column."""
    empty = table.isna()
    if not empty.any(axis=None):  # reduced block by block, without a row-major copy
        return
    empty = empty.to_numpy()
    row = int(np.flatnonzero(empty.any(axis=1))[0])
    column = table.columns[int(np.flatnonzero(empty[row])[0])]
    place = f"row {row + 1}" if path.lower().endswith(".parquet") else (
        f"line {row + 2} (line 1 is the header)"
    )
    fix = "set data.missing: drop" if missing == "mean" else (
        "set data.missing: drop or mean"
    )
    raise UserInputError(
        f"data file {path}: column '{column}' has a missing value at {place}; {fix}, or "
        "fill it in the file"
    )


def _target(series: pd.Series) -> np.ndarray:
    """The target column as a NumPy array: numbers and booleans as they are, text as str."""
    if _numeric(series):
        return series.to_numpy()
    return series.astype(str).to_numpy(dtype=str)


def _task(task: Task, y: np.ndarray) -> Task:
    """`auto` resolved: text and booleans classify, integers with <= 20 values classify."""
    if task != "auto":
        return task
    if y.dtype.kind in "bUS" or (y.dtype.kind in "iu" and len(np.unique(y)) <= MAX_CLASSES):
        return "classification"
    return "regression"


def _row_numbers(start: int, stop: int) -> np.ndarray:
    rows = np.arange(start, stop)
    return np.stack([rows // _SPLIT, rows % _SPLIT], axis=1).astype(np.float32)


def _rows(split: Split) -> np.ndarray:
    x = split.x.numpy().astype(np.int64)
    return x[:, 0] * _SPLIT + x[:, 1]


def _encoded(
    parts: DatasetSplits, table: pd.DataFrame, categorical: list[str], scale: TableScale,
    target: str, missing: Missing,
) -> DatasetSplits:
    """Each part's row numbers replaced by its encoded, scaled features.

    The whole table is encoded once, with the training part's vocabularies and
    fills, and each part is a gather of its rows from it. The statistics of
    `standardize` are the mean and population deviation of the training part's
    numeric features (float32 values, two passes), one-hot features keeping mean 0
    and deviation 1.
    """
    train_rows = _rows(parts.train)
    numeric = [name for name in table.columns if name not in categorical]
    # Column by column, pandas' mean of the training values as float64, as the file holds them;
    # only `missing: mean` fills a cell (the other rules refused or dropped empty ones).
    fills = table[numeric].take(train_rows).astype(float).mean() if missing == "mean" else None
    columns = []
    codes = {name: category_codes(table[name]) for name in categorical}
    for name in table.columns:
        if name in categorical:
            column_codes, names = codes[name]
            seen = np.bincount(column_codes[train_rows] + 1, minlength=len(names) + 1)[1:] > 0
            columns.append(Column(name, sorted({names[code] for code in np.flatnonzero(seen)})))
        else:
            mean = None if fills is None else float(fills[name])
            columns.append(Column(name, fill=0.0 if mean is not None and np.isnan(mean) else mean))
    preparing = Preprocessing(
        dataset="csv", kind="table", input_shape=(sum(c.width for c in columns),),
        scale=scale, class_names=parts.class_names, target=target, columns=columns,
        missing=missing,
    )
    encoded = preparing.encode(table, "", strict=False, codes=codes)
    # `take` gathers rows faster than fancy indexing does.
    train_x = torch.from_numpy(encoded.take(train_rows, axis=0))
    if scale == "standardize":
        # One-hot features keep mean 0 and deviation 1; the numeric ones are measured run by
        # run of adjacent features, views of the training rows (a feature's statistics do
        # not depend on its neighbours).
        preparing.mean = torch.zeros(preparing.input_shape[0])
        preparing.std = torch.ones(preparing.input_shape[0])
        for start, stop in _numeric_runs(columns):
            # Two passes over the float32 values (PyTorch sums them pairwise): ~3x faster
            # than `torch.std_mean`'s single pass and as accurate (relative 2e-7 here).
            values = train_x[:, start:stop]
            preparing.mean[start:stop] = values.mean(dim=0)
            preparing.std[start:stop] = (values - preparing.mean[start:stop]).square_().mean(
                dim=0).sqrt_()
        preparing.std[preparing.std == 0] = 1.0  # a constant feature: centred, not divided

    def part(split: Split | None, x: torch.Tensor | None = None) -> Split | None:
        if split is None:
            return None
        x = torch.from_numpy(encoded.take(_rows(split), axis=0)) if x is None else x
        return Split(preparing.scale_inputs(x, copy=False), split.y)

    return DatasetSplits(
        name="csv", train=part(parts.train, train_x), val=part(parts.val),
        test=part(parts.test), class_names=parts.class_names,
        input_shape=preparing.input_shape, scale=scale, mean=preparing.mean,
        std=preparing.std, raw_inputs={"kind": "table", "target": target, "columns": columns,
                                       "missing": missing},
    )


def _numeric_runs(columns: list[Column]) -> list[tuple[int, int]]:
    """`(start, stop)` of each run of adjacent numeric features among the encoded ones."""
    runs: list[tuple[int, int]] = []
    start = 0
    for column in columns:
        if column.categories is None:
            if runs and runs[-1][1] == start:
                runs[-1] = (runs[-1][0], start + 1)
            else:
                runs.append((start, start + 1))
        start += column.width
    return runs


_PARAMETERS = set(inspect.signature(csv_table).parameters)


_SHAPES: dict[str, tuple[int, ...]] = {}
"""Encoded feature counts already found, by options and the files' identity: a study
validates one recipe per variant and seed, each asking for the same shape."""


def _csv_shape(options: dict[str, Any]) -> tuple[int, ...]:
    """`[F]`, the encoded feature count: the file read and encoded once per version of it."""
    arguments = {key: value for key, value in options.items() if key in _PARAMETERS}
    files = []
    for key in ("path", "test_path"):
        try:
            stat = os.stat(arguments[key]) if arguments.get(key) is not None else None
        except OSError:
            stat = None  # csv_table names the missing file
        files.append(None if stat is None else (os.path.realpath(arguments[key]),
                                                stat.st_size, stat.st_mtime_ns))
    key = json.dumps([arguments, files], sort_keys=True, default=repr)
    if key not in _SHAPES:
        _SHAPES[key] = csv_table(**arguments).input_shape
    return _SHAPES[key]


INPUT_SHAPES["csv"] = _csv_shape
