"""How raw inputs become a model's inputs, kept as plain JSON beside the saved model.

A run that saves its model writes `model/preprocessing.json` from its data
(`DatasetSplits.preprocessing`): what a prediction needs to prepare new rows,
images or arrays exactly as the training ones were, and to name the outputs.

- `kind`: `table` (a CSV, TSV or Parquet file), `images` (image files) or
  `arrays` (an `.npz` file).
- `input_shape`, `scale` (`unit`: /255, `standardize`: minus `mean`, over
  `std`, `none`), `mean` and `std` (nested lists of `input_shape`, in the
  file's units), `class_names` (empty for a regression) and `task`.
- A table's `target` and `columns`, in the order they are encoded, each with
  its one-hot `categories` (the training part's values as strings, sorted) or
  none for a number, and its `fill`, the training mean that `missing: mean`
  puts in an empty numeric cell; `missing`, the rule the run read its file with.
- Images' `image_size` (`[height, width]`) and `color_mode`.
- Arrays' `x_key` and `y_key`, the names of the arrays in an `.npz` file.

The encoding of a table lives here, so training (`tricklab.data.tables`) and
prediction call the same code. Nothing is ever pickled.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch

from tricklab import atomic
from tricklab.errors import UserInputError

if TYPE_CHECKING:
    import pandas as pd

PREPROCESSING_FILE = "preprocessing.json"
"""Written into the saved model's folder."""

FORMAT = "tricklab-preprocessing"
VERSION = 1

Kind = Literal["table", "images", "arrays"]
Scale = Literal["unit", "standardize", "none"]


def scale_values(
    x: torch.Tensor, scale: str, mean: torch.Tensor | None, std: torch.Tensor | None,
    copy: bool = True,
) -> torch.Tensor:
    """Raw inputs scaled as a dataset's were, as a float32 tensor.

    Args:
        x: Inputs `[..., *input_shape]` in the file's units (0–255 for images).
        scale: `unit` (x / 255), `standardize` ((x − mean) / std) or `none`.
        mean: The training part's mean, `input_shape`; needed for `standardize`.
        std: Its population deviation, 1 where a value is constant.
        copy: Return a new tensor; else a float32 `x` is scaled in place and
            returned. Defaults to `True`.
    """
    x = x.to(torch.float32, copy=copy)
    if scale == "unit":
        return x.div_(255.0)
    if scale == "standardize":
        assert mean is not None and std is not None
        return x.sub_(mean).div_(std)
    return x


@dataclass
class Column:
    """One feature column of a table as the model sees it.

    Args:
        name: The column's header.
        categories: Its one-hot vocabulary, or `None` for a numeric column.
            Defaults to `None`.
        fill: What an empty numeric cell becomes under `missing: mean` (the
            training mean); `None` when the run fills nothing (an empty cell then
            stays NaN, which every other `missing` rule has refused or dropped
            before encoding). Defaults to `None`.
    """

    name: str
    categories: list[str] | None = None
    fill: float | None = None

    @property
    def width(self) -> int:
        """How many encoded features the column gives."""
        return 1 if self.categories is None else len(self.categories)


@dataclass
class Preprocessing:
    """Everything a prediction needs to prepare raw inputs and to name the outputs.

    Args:
        dataset: The registry name of the run's dataset, e.g. `csv`.
        kind: `table`, `images` or `arrays`: what raw inputs it reads.
        input_shape: The shape of one prepared sample.
        scale: `unit`, `standardize` or `none`.
        class_names: Each class's name, in label order; empty for a regression.
        mean: The training mean of `standardize`, shape `input_shape`. Defaults to `None`.
        std: The matching deviation. Defaults to `None`.
        target: A table's target column. Defaults to `None`.
        columns: A table's feature columns, in encoding order. Defaults to `[]`.
        missing: A table's `missing` rule (`error`, `drop` or `mean`). Defaults to `"error"`.
        image_size: Images' `(height, width)`. Defaults to `None`.
        color_mode: Images' `grayscale` or `rgb`. Defaults to `None`.
        x_key: The inputs' array name in an `.npz` file. Defaults to `"x"`.
        y_key: The targets' array name in an `.npz` file. Defaults to `"y"`.
    """

    dataset: str
    kind: Kind
    input_shape: tuple[int, ...]
    scale: Scale
    class_names: list[str]
    mean: torch.Tensor | None = None
    std: torch.Tensor | None = None
    target: str | None = None
    columns: list[Column] = field(default_factory=list)
    missing: str = "error"
    image_size: tuple[int, int] | None = None
    color_mode: str | None = None
    x_key: str = "x"
    y_key: str = "y"

    @property
    def task(self) -> Literal["classification", "regression"]:
        """`classification` when there are class names, else `regression`."""
        return "classification" if self.class_names else "regression"

    def scale_inputs(self, x: torch.Tensor, copy: bool = True) -> torch.Tensor:
        """Raw inputs (a table's encoded rows, pixels, arrays) scaled as in training.

        Args:
            x: Inputs `[N, *input_shape]` in the file's units.
            copy: Return a new tensor; else a float32 `x` is scaled in place.
                Defaults to `True`.
        """
        return scale_values(x, self.scale, self.mean, self.std, copy)

    def encode(
        self, frame: pd.DataFrame, where: str, parquet: bool = False, strict: bool = True,
        codes: dict[str, tuple[np.ndarray, list[str]]] | None = None,
    ) -> np.ndarray:
        """A table's rows as float32 features `[N, F]`, before scaling.

        Numbers stay numbers; a category becomes its one-hot block. With `strict`
        (new inputs to predict) a category the training part never had, and an
        empty cell where the run's `missing` was not `mean`, are errors naming the
        column, the value and the row. Without it (the run's own validation and
        test rows) an unseen or missing category is all zeros, the one-hot code's
        "unknown", and an empty numeric cell takes its column's `fill`.

        The features are written into one preallocated array: the numeric columns
        (of a NumPy number or boolean dtype) converted together, each categorical
        column factorized once (`category_codes`) and its ones set by index, so the
        cost grows with the cells, not with rows times categories. A number goes
        through float64 to float32, as it would one column at a time.

        Args:
            frame: Rows holding at least every column of `columns`.
            where: How messages name the file, e.g. `--input new.csv`.
            parquet: Whether the rows came from a Parquet file (rows are named
                `row N` then, else by their CSV line). Defaults to `False`.
            strict: Refuse what training never saw. Defaults to `True`.
            codes: The `category_codes` of categorical columns of `frame`, by name,
                where the caller has them already (training does, from building the
                vocabularies). Defaults to `None`: each is computed here.

        Raises:
            UserInputError: See above.
        """
        codes = codes or {}
        encoded = np.zeros((len(frame), sum(column.width for column in self.columns)),
                           dtype=np.float32)
        numbers: list[tuple[int, Column]] = []  # (position, column), converted together below
        start = 0
        for column in self.columns:
            values = frame[column.name]
            if strict and self.missing != "mean":
                empty = values.isna().to_numpy()
                if empty.any():
                    raise UserInputError(
                        f"{where}: column '{column.name}' has a missing value at "
                        f"{row_name(int(np.flatnonzero(empty)[0]), parquet)}; the run was "
                        f"trained with data.missing: {self.missing}, so fill it in"
                    )
            if column.categories is not None:
                self._one_hot(encoded[:, start:start + column.width],
                              codes.get(column.name) or category_codes(values), column, where,
                              parquet, strict)
            elif isinstance(values.dtype, np.dtype) and values.dtype.kind in "biuf":
                numbers.append((start, column))
            else:  # text, objects or an extension dtype: only this column's conversion can fail
                try:
                    number = values.to_numpy(dtype=np.float64, na_value=np.nan)
                except (TypeError, ValueError):
                    raise UserInputError(
                        f"{where}: column '{column.name}' holds text "
                        f"({values.dropna().iloc[0]!r}); the run read it as numbers"
                    ) from None
                encoded[:, start] = np.where(np.isnan(number), _fill(column), number)
            start += column.width
        if numbers:
            block = frame[[column.name for _, column in numbers]].to_numpy(dtype=np.float64)
            empty = np.isnan(block)
            if empty.any():
                block = np.where(empty, np.array([_fill(column) for _, column in numbers]), block)
            positions = [position for position, _ in numbers]
            if positions[-1] - positions[0] == len(positions) - 1:  # one run: a plain slice
                encoded[:, positions[0]:positions[-1] + 1] = block
            else:
                encoded[:, positions] = block
        return encoded

    @staticmethod
    def _one_hot(
        block: np.ndarray, factorized: tuple[np.ndarray, list[str]], column: Column,
        where: str, parquet: bool, strict: bool,
    ) -> None:
        """Set the ones of a categorical column's block (`[N, width]`, zeros) in place."""
        assert column.categories is not None
        codes, names = factorized
        index = {name: code for code, name in enumerate(column.categories)}
        # The last entry is what the code -1 (an empty cell) reads: unknown, all zeros.
        lookup = np.array([index.get(name, -1) for name in names] + [-1], dtype=np.int64)
        known = lookup[codes]
        if strict:
            unseen = np.flatnonzero((known < 0) & (codes >= 0))
            if len(unseen):
                row = int(unseen[0])
                raise UserInputError(
                    f"{where}: column '{column.name}' has the category {names[codes[row]]!r} "
                    f"at {row_name(row, parquet)}, which the training data never had; known: "
                    f"{', '.join(column.categories)}"
                )
        rows = np.flatnonzero(known >= 0)
        block[rows, known[rows]] = 1.0

    def check_columns(self, columns: list[str], where: str) -> None:
        """Refuse a table whose columns are not the training features (the target may be there).

        Raises:
            UserInputError: Naming the missing or the extra columns and the expected ones.
        """
        expected = [column.name for column in self.columns]
        missing = [name for name in expected if name not in columns]
        extra = [name for name in columns if name not in expected and name != self.target]
        if missing or extra:
            problem = (f"no column {', '.join(map(repr, missing))}" if missing
                       else f"unknown column {', '.join(map(repr, extra))}")
            raise UserInputError(
                f"{where}: {problem}; expected the training features {', '.join(expected)}"
                + (f" (and optionally the target '{self.target}')" if self.target else "")
            )

    def to_json(self) -> dict[str, Any]:
        """The JSON document `save` writes."""
        document: dict[str, Any] = {
            "format": FORMAT, "version": VERSION, "dataset": self.dataset, "kind": self.kind,
            "task": self.task, "input_shape": list(self.input_shape), "scale": self.scale,
            "class_names": list(self.class_names),
            "mean": None if self.mean is None else self.mean.tolist(),
            "std": None if self.std is None else self.std.tolist(),
        }
        if self.kind == "table":
            document.update(target=self.target, missing=self.missing, columns=[
                {"name": column.name, "categories": column.categories, "fill": column.fill}
                for column in self.columns
            ])
        elif self.kind == "images":
            document.update(image_size=list(self.image_size or ()), color_mode=self.color_mode)
        else:
            document.update(x_key=self.x_key, y_key=self.y_key)
        return document

    @classmethod
    def from_json(cls, document: Any, where: str) -> Preprocessing:
        """Rebuild from `to_json`'s document, checked.

        Raises:
            UserInputError: Naming `where` and the first field that is wrong.
        """
        if not isinstance(document, dict) or document.get("format") != FORMAT:
            raise UserInputError(f"{where}: not a tricklab preprocessing file")
        if document.get("version") != VERSION:
            raise UserInputError(
                f"{where}: preprocessing version {document.get('version')!r}; this tricklab "
                f"reads version {VERSION}"
            )
        try:
            statistics = {
                key: None if document[key] is None
                else torch.tensor(document[key], dtype=torch.float32)
                for key in ("mean", "std")
            }
            shape = tuple(int(size) for size in document["input_shape"])
            for key, value in statistics.items():
                if value is not None and tuple(value.shape) != shape:
                    raise ValueError(f"'{key}' has shape {list(value.shape)}, not {list(shape)}")
            if document["kind"] not in ("table", "images", "arrays"):
                raise ValueError(f"unknown kind {document['kind']!r}")
            if document["scale"] not in ("unit", "standardize", "none"):
                raise ValueError(f"unknown scale {document['scale']!r}")
            if document["scale"] == "standardize" and statistics["mean"] is None:
                raise ValueError("'standardize' without 'mean' and 'std'")
            size = document.get("image_size")
            return cls(
                dataset=str(document["dataset"]), kind=document["kind"], input_shape=shape,
                scale=document["scale"], class_names=[str(n) for n in document["class_names"]],
                mean=statistics["mean"], std=statistics["std"], target=document.get("target"),
                columns=[Column(str(c["name"]), c["categories"],
                                None if c["fill"] is None else float(c["fill"]))
                         for c in document.get("columns", [])],
                missing=document.get("missing", "error"),
                image_size=(int(size[0]), int(size[1])) if size else None,
                color_mode=document.get("color_mode"), x_key=document.get("x_key", "x"),
                y_key=document.get("y_key", "y"),
            )
        except (KeyError, TypeError, ValueError, IndexError, RuntimeError) as error:
            raise UserInputError(f"{where}: damaged preprocessing file ({error})") from None

    def save(self, directory: str | os.PathLike[str]) -> Path:
        """Write `preprocessing.json` into `directory`, atomically; return its path."""
        path = Path(directory) / PREPROCESSING_FILE
        atomic.write_json(path, self.to_json())
        return path

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> Preprocessing | None:
        """Read `directory/preprocessing.json`; `None` when there is none.

        Raises:
            UserInputError: The file is not JSON or not a preprocessing document.
        """
        path = Path(directory) / PREPROCESSING_FILE
        if not path.is_file():
            return None
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise UserInputError(f"{path}: cannot be read as JSON ({error})") from None
        return cls.from_json(document, str(path))


def category_codes(values: pd.Series) -> tuple[np.ndarray, list[str]]:
    """A column's cells as indices into its distinct values written as text; -1 for an empty one.

    The values become text as `Series.astype(str)` writes them (so the number 1
    is the category `1`, the text `1.0` another), then are factorized: one hash
    pass over the rows (a dictionary encoding for Arrow-backed text), with only
    the distinct values turned into Python strings. Two values written alike
    (the number 1 and the text `1` of an object column) are the same category.

    Args:
        values: One column of a table.

    Returns:
        The codes, int64 `[N]`, and the text of each code.
    """
    empty = values.isna().to_numpy()
    codes, distinct = values.astype(str).factorize()
    return np.where(empty, -1, codes), [str(value) for value in distinct]


def _fill(column: Column) -> float:
    return np.nan if column.fill is None else column.fill


def row_name(row: int, parquet: bool) -> str:
    """How a message names the 0-based data row `row` of a table file.

    A CSV or TSV file's `line 1` is its header, so data row 0 is `line 2`; a
    Parquet file has no lines and its first row is `row 1`.
    """
    return f"row {row + 1}" if parquet else f"line {row + 2} (line 1 is the header)"
