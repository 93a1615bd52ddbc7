"""New raw inputs read and prepared exactly as a run's training data was.

`read_inputs(preprocessing, source)` takes what a user hands a trained model:

- a table, a `.csv`, `.tsv` or `.parquet` file or a pandas `DataFrame`, for a
  run trained on a table: the training feature columns are required, the target
  column is optional (its values become the labels), any other column is an error;
- an `.npz` file for a run trained on arrays or images: the run's `x_key`, and
  its `y_key` when present as labels;
- a folder for a run trained on images: image files directly in it (no labels),
  or one subfolder per class named as the training classes (labels);
  a list of image files; or a NumPy array of raw inputs.

Each is prepared by the run's `Preprocessing` (one-hot vocabularies, image size
and colour mode, scaling), with the same code that prepared the training data.
Anything that does not match the training data is a one-line `UserInputError`
naming the file, the column or the image.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from tricklab.data.arrays import open_npz, read_array
from tricklab.data.images import EXTENSIONS, decode_images, list_images
from tricklab.data.preprocessing import Preprocessing
from tricklab.data.tables import read_table
from tricklab.errors import UserInputError

TABLE_SUFFIXES = (".csv", ".tsv", ".parquet")


@dataclass
class RawInputs:
    """Inputs ready for the model, with what names each sample and its label if known.

    Args:
        ids: One name per sample: a table's row index (0 for the first data row)
            or an array's index, as int64 `[N]`; an image's path relative to the
            folder, as text.
        x: The prepared inputs, float32 `[N, *input_shape]`.
        labels: Class indices (int64) or target values (float32), or `None`
            when the inputs carry no labels.
    """

    ids: np.ndarray | list[str]
    x: torch.Tensor
    labels: np.ndarray | None


def read_inputs(
    preprocessing: Preprocessing, source: Any, where: str = "--input"
) -> RawInputs:
    """Read `source` and prepare it as the run's training data was prepared.

    Args:
        preprocessing: The run's `model/preprocessing.json`, loaded.
        source: A file or folder path, a pandas `DataFrame`, a list of image
            paths, or a NumPy array of raw inputs `[N, *input_shape]`.
        where: How messages name the source. Defaults to `"--input"`.

    Raises:
        UserInputError: A missing or unreadable file or image, a kind of input the
            run cannot take, columns or shapes that differ from training, an unseen
            category, an unknown class folder or label.
    """
    if isinstance(source, pd.DataFrame):
        return _table(preprocessing, source, f"{where} (DataFrame)", parquet=True)
    if isinstance(source, np.ndarray):
        return _arrays(preprocessing, source, None, f"{where} (array)")
    if isinstance(source, list | tuple):
        files = [Path(file) for file in source]
        return _images(preprocessing, files, [str(file) for file in files], None, where)
    path = Path(source)
    named = f"{where} {path}"
    if path.is_dir():
        return _folder(preprocessing, path, named)
    if not path.is_file():
        raise UserInputError(f"{where}: no such file or folder: {path}")
    suffix = path.suffix.lower()
    if suffix in TABLE_SUFFIXES:
        return _table(preprocessing, read_table(str(path), where), named,
                      parquet=suffix == ".parquet")
    if suffix == ".npz":
        with open_npz(path) as archive:
            present = list(archive.files)
            x = read_array(archive, preprocessing.x_key, path, present)
            y = (read_array(archive, preprocessing.y_key, path, present)
                 if preprocessing.y_key in present else None)
        return _arrays(preprocessing, x, y, named)
    if suffix in EXTENSIONS:
        return _images(preprocessing, [path], [path.name], None, where)
    raise UserInputError(
        f"{where}: {path} has extension '{suffix}'; expected {_accepted(preprocessing)}"
    )


def _accepted(preprocessing: Preprocessing) -> str:
    """What inputs a run takes, for messages."""
    if preprocessing.kind == "table":
        return "a .csv, .tsv or .parquet table with the training columns"
    if preprocessing.kind == "images":
        return ("a folder of images (or of class subfolders), an image file, or an .npz with "
                f"array '{preprocessing.x_key}'")
    return f"an .npz file with array '{preprocessing.x_key}'"


def _refuse(preprocessing: Preprocessing, where: str, what: str) -> UserInputError:
    return UserInputError(
        f"{where}: is {what}, but the run was trained on {preprocessing.kind} "
        f"({preprocessing.dataset}); expected {_accepted(preprocessing)}"
    )


def _table(
    preprocessing: Preprocessing, frame: pd.DataFrame, where: str, parquet: bool
) -> RawInputs:
    if preprocessing.kind != "table":
        raise _refuse(preprocessing, where, "a table")
    frame.columns = [str(column) for column in frame.columns]
    preprocessing.check_columns(list(frame.columns), where)
    x = torch.from_numpy(preprocessing.encode(frame, where, parquet=parquet))
    labels = None
    if preprocessing.target in frame.columns:
        labels = _labels(preprocessing, frame[preprocessing.target].to_numpy(), where,
                         f"column '{preprocessing.target}'")
    return RawInputs(np.arange(len(frame)), preprocessing.scale_inputs(x, copy=False), labels)


def _arrays(
    preprocessing: Preprocessing, x: np.ndarray, y: np.ndarray | None, where: str
) -> RawInputs:
    if preprocessing.kind == "table":
        raise _refuse(preprocessing, where, "an array")
    shape = tuple(preprocessing.input_shape)
    if x.dtype.kind not in "biuf" or x.ndim < 1 or tuple(x.shape[1:]) != shape:
        raise UserInputError(
            f"{where}: inputs of dtype {x.dtype} and shape {list(x.shape)}; expected numbers "
            f"of shape [N, {', '.join(map(str, shape))}] as in training"
        )
    if y is not None and len(y) != len(x):
        raise UserInputError(
            f"{where}: {len(x)} inputs but {len(y)} labels in '{preprocessing.y_key}'; "
            "expected one label per input"
        )
    labels = None if y is None else _labels(
        preprocessing, y, where, f"array '{preprocessing.y_key}'")
    x = preprocessing.scale_inputs(torch.from_numpy(np.asarray(x)))
    return RawInputs(np.arange(len(x)), x, labels)


def _folder(preprocessing: Preprocessing, path: Path, where: str) -> RawInputs:
    if preprocessing.kind != "images":
        raise _refuse(preprocessing, where, "a folder")
    direct = sorted(entry.name for entry in path.iterdir()
                    if entry.is_file() and entry.name.lower().endswith(EXTENSIONS))
    if direct:
        return _images(preprocessing, [path / name for name in direct], direct, None, where)
    names, files = list_images(str(path), "input")
    unknown = [name for name in names if name not in preprocessing.class_names]
    if unknown:
        raise UserInputError(
            f"{where}: class folder '{unknown[0]}' is not a class of the run; its classes: "
            f"{', '.join(preprocessing.class_names)}"
        )
    index = {name: preprocessing.class_names.index(name) for name in names}
    labels = np.array([index[names[label]] for label, _ in files], dtype=np.int64)
    return _images(preprocessing, [path / file for _, file in files],
                   [file for _, file in files], labels, where)


def _images(
    preprocessing: Preprocessing, files: list[Path], ids: list[str], labels: np.ndarray | None,
    where: str,
) -> RawInputs:
    if preprocessing.kind != "images":
        raise _refuse(preprocessing, where, "images")
    if not files:
        raise UserInputError(f"{where}: no image files ({' '.join(EXTENSIONS)})")
    for file in files:
        if not os.path.isfile(file):
            raise UserInputError(f"{where}: image not found: {file}")
    pixels = decode_images(files, preprocessing.image_size, preprocessing.color_mode or "rgb",
                           key=where)
    return RawInputs(ids, preprocessing.scale_inputs(torch.from_numpy(pixels)), labels)


def _labels(preprocessing: Preprocessing, values: np.ndarray, where: str, what: str
            ) -> np.ndarray:
    """Targets as the run's class indices (by name) or float values; unknown classes refused."""
    if preprocessing.task == "regression":
        try:
            return np.asarray(values, dtype=np.float32)
        except (TypeError, ValueError):
            raise UserInputError(f"{where}: {what} holds non-numbers; the run is a "
                                 "regression") from None
    index = {name: label for label, name in enumerate(preprocessing.class_names)}
    codes, distinct = _distinct(values)
    # A value is named `str(value)`, as the class names were; each distinct one only once.
    labels = np.array([index.get(str(value), -1) for value in distinct], dtype=np.int64)[codes]
    unknown = np.flatnonzero(labels < 0)
    if len(unknown):
        row = int(unknown[0])
        raise UserInputError(
            f"{where}: {what} has the label {str(values[row])!r} (sample {row}), not a class "
            f"of the run; its classes: {', '.join(preprocessing.class_names)}"
        )
    return labels


def _distinct(values: np.ndarray) -> tuple[np.ndarray, Any]:
    """Each value's index among the distinct ones, and those, told apart as `str` tells them.

    Numbers, booleans and NumPy text are factorized by value, floats by their bits
    (`0.0` and `-0.0` print differently), an object array of text as text. Any other
    object array, where `1`, `1.0` and `True` are equal but print differently, is
    taken value by value.
    """
    kind = values.dtype.kind if values.ndim == 1 else "V"  # rows of a 2-D array: one by one
    if kind == "f" and values.dtype.itemsize in (2, 4, 8):
        codes, bits = pd.factorize(values.view(f"i{values.dtype.itemsize}"))
        return codes, bits.view(values.dtype)
    if kind in "biuUS" or (kind == "O" and pd.api.types.infer_dtype(values, skipna=False)
                           == "string"):
        return pd.factorize(values)
    return np.arange(len(values)), values  # also a long double, with no integer of its size
