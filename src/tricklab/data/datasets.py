"""Datasets by name: load the IDX files, split off validation, select a task, scale.

The recipe's `data:` section is `dataset` plus exactly the signature of that
dataset's registered loader (for the image datasets `validation`, `scale`,
`classes`, `split`, `train_size`; for the generated ones see
`tricklab.data.generated`), so the recipe layer validates it with
`datasets.validate`, which also resolves the nested `split` (see
`tricklab.data.splits`). Where the files live is a
property of the machine, not of the experiment, so it stays out of recipes:
`$TRICKLAB_DATA`, `$TRICKLAB_CACHE` and `$TRICKLAB_DATA_URL` choose it (see
`tricklab.data.sources`).

The split follows the book (Géron, Hands-On Machine Learning, ch. 10-11):
`X_valid, X_train = X_train_full[:5000], X_train_full[5000:]`, and the
standardization uses the training part's per-pixel mean and standard deviation.

Every dataset, registered here, generated or registered by a user, passes
`check_finite` on its way out of `load_dataset`: a NaN or infinity in a split's
inputs or float targets is a one-line `UserInputError` naming the split and the
sample, not a run that trains on it and reports `diverged` or a `null` score.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from tricklab.config import signature_model
from tricklab.data.idx import read_idx
from tricklab.data.preprocessing import Preprocessing, scale_values
from tricklab.data.sources import dataset_files, fetch
from tricklab.data.splits import PositiveInt, first_images, make_task, resolve_split
from tricklab.errors import UserInputError
from tricklab.registry import Registry

Scale = Literal["unit", "standardize", "none"]

CLASS_NAMES: dict[str, list[str]] = {
    "fashion_mnist": [
        "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
        "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
    ],
    "mnist": [str(digit) for digit in range(10)],
}


@dataclass
class Split:
    """Inputs and targets of one part of a dataset.

    Args:
        x: Inputs, float32 of shape `[N, *input_shape]`, e.g. images `[N, 28, 28]`.
        y: Targets of shape `[N]`: int64 class indices, or float32 values for a
            regression task such as the adding problem.
    """

    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return len(self.y)


@dataclass
class DatasetSplits:
    """A loaded dataset: train, validation and test parts plus what is needed to reuse them.

    Args:
        name: Registry name of the dataset.
        train: Training part.
        val: Validation part, the first `validation` images of the training file;
            `None` when `validation` is 0.
        test: Test part.
        class_names: Name of each class index, in label order; empty for a
            regression task.
        input_shape: Shape of one sample, e.g. `(28, 28)` for an image.
        scale: How pixels were scaled: `"unit"`, `"standardize"` or `"none"` (also
            for generated inputs, which are used as drawn).
        mean: Per-pixel mean of the training part in raw 0-255 units, shape
            `input_shape`; set only when `scale` is `"standardize"`. Defaults to `None`.
        std: Per-pixel standard deviation matching `mean`, with 1 where a pixel is
            constant. Defaults to `None`.
        raw_inputs: How the source reads new raw inputs, the fields of
            `tricklab.data.preprocessing.Preprocessing` it alone knows: `kind`
            (`table`, `images` or `arrays`) and that kind's fields (a table's
            `target`, `columns` and `missing`; images' `image_size` and
            `color_mode`; arrays' `x_key` and `y_key`). Defaults to `{}`
            (arrays, read from an `.npz` file's `x`).
    """

    name: str
    train: Split
    val: Split | None
    test: Split
    class_names: list[str]
    input_shape: tuple[int, ...]
    scale: Scale
    mean: torch.Tensor | None = None
    std: torch.Tensor | None = None
    raw_inputs: dict[str, Any] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        """Number of classes, `len(class_names)`."""
        return len(self.class_names)

    def as_reconstruction(self) -> DatasetSplits:
        """The same inputs as targets too, an autoencoder's `fit(X, X)`; no copy is made."""

        def inputs(split: Split | None) -> Split | None:
            return None if split is None else Split(split.x, split.x)

        return dataclasses.replace(
            self, train=inputs(self.train), val=inputs(self.val), test=inputs(self.test)
        )

    def scale_inputs(self, x: torch.Tensor) -> torch.Tensor:
        """Scale new raw inputs (0-255 pixels) exactly as this dataset's inputs were scaled.

        Args:
            x: Inputs of shape `[..., *input_shape]`, any real dtype.

        Returns:
            A new float32 tensor.
        """
        return scale_values(x, self.scale, self.mean, self.std)

    def preprocessing(self) -> Preprocessing:
        """What a prediction needs to prepare raw inputs as these were, and to name outputs."""
        return Preprocessing(
            dataset=self.name, **{"kind": "arrays", **self.raw_inputs},
            input_shape=tuple(self.input_shape), scale=self.scale,
            class_names=list(self.class_names), mean=self.mean, std=self.std,
        )


def scale_parts(data: DatasetSplits) -> DatasetSplits:
    """Scale every part's inputs in place as `data.scale` says, with the training statistics.

    `standardize` takes the training part's mean and population deviation per
    value of a sample (pixel, feature, step), a constant one getting deviation 1,
    and keeps them as `data.mean` and `data.std`.
    """
    if data.scale == "standardize":
        data.std, data.mean = torch.std_mean(data.train.x, dim=0, correction=0)
        data.std[data.std == 0] = 1.0  # a constant value: centred, not divided by zero
    for part in (data.train, data.val, data.test):
        if part is None:
            continue
        if data.scale == "unit":
            part.x.div_(255.0)
        elif data.scale == "standardize":
            part.x.sub_(data.mean).div_(data.std)
    return data


class DatasetRegistry(Registry[DatasetSplits]):
    """The dataset family, whose `validate` also resolves the nested `split` mapping."""

    def validate(
        self, name: str, config: dict[str, Any] | None, path: str, name_path: str = ""
    ) -> dict[str, Any]:
        full = super().validate(name, config, path, name_path)
        # Only the image datasets have a split; the generated ones lack the key.
        if full.get("split") is not None:
            full["split"] = resolve_split(full["split"], name, full["classes"], path)
        return full

    def create(
        self, name: str, config: dict[str, Any] | None = None, path: str = "", **runtime: Any
    ) -> DatasetSplits:
        """Build the dataset as `Registry.create` does, then `check_finite` it."""
        return check_finite(super().create(name, config, path, **runtime))


datasets = DatasetRegistry("dataset")


def load_dataset(dataset: str = "fashion_mnist", **options: Any) -> DatasetSplits:
    """Load a registered dataset; the arguments are the keys of a recipe's `data:` section.

    The image datasets' files are found with `tricklab.data.locate` and downloaded
    with `tricklab.data.fetch` when they are nowhere. Each image is converted from
    uint8 to float32 once and scaled in place. Generated datasets
    (`tricklab.data.generated`) are drawn from their `data_seed`.

    Args:
        dataset: Registry name: `fashion_mnist`, `mnist`, `cifar10`, `cifar100`,
            `adding_problem`, or a source of your own data, `csv`, `numpy` or
            `image_folder` (`tricklab list datasets` lists them all). Defaults to
            `"fashion_mnist"`.
        **options: The dataset's own options, the parameters of its registered
            loader. For `adding_problem`: `length`, `train_size`, `validation`,
            `test_size` and `data_seed` (see `tricklab.data.generated.adding_problem`);
            for CIFAR see `tricklab.data.cifar`, for your own data
            `tricklab.data.tables.csv_table`, `tricklab.data.arrays.numpy_arrays`
            and `tricklab.data.images.image_folder`.
            For `fashion_mnist` and `mnist`:

            - `validation`: How many images, from the start of the training file,
              form the validation part; 0 means none. Counted before `classes`
              filters them. Defaults to `5000`.
            - `scale`: `unit` divides pixels by 255; `standardize` subtracts the
              training part's per-pixel mean and divides by its per-pixel standard
              deviation (population, as NumPy's `std`), where a pixel constant over
              the training part gets a deviation of 1 instead of 0, as
              scikit-learn's `StandardScaler` does; `none` keeps 0-255.
              Defaults to `"unit"`.
            - `classes`: Class indices to keep in every part, relabelled 0..k-1 in
              the given order. Defaults to `None` (all classes).
            - `split`: `{kind: name, **parameters}`, a kind of
              `tricklab.data.splits` applied to every part instead of `classes`,
              e.g. `{kind: fashion_mnist_task_a_b, task: b}`. Defaults to `None`
              (no split).
            - `train_size`: Keep only the first `train_size` images of the training
              part, after `classes` or `split` selected them; `standardize` uses
              only these. Defaults to `None` (all of them).

    Returns:
        The train, validation and test parts with class names and scaling statistics.

    Raises:
        UserInputError: On an unknown dataset name (with a "did you mean"), an
            option the dataset does not have, or a bad value of one; for the image
            datasets a `validation` outside `0 <= validation < training images`,
            invalid class ids, a bad `split`, a `train_size` that is not an integer
            between 1 and the training images left, a `scale` not listed above, or
            unreadable files; for every dataset a NaN or infinity in any split's
            inputs or float targets (see `check_finite`).

    Reference:
        Géron, Hands-On Machine Learning (3rd ed.), ch. 10-11:
        `X_valid, X_train = X_train_full[:5000], X_train_full[5000:]`.
    """
    info = datasets.info(dataset, "data.dataset")
    accepted = sorted(signature_model(info.factory).model_fields)
    unknown = [key for key in options if key not in accepted]
    if unknown:
        # The loaders check their values themselves, with messages naming data.<key>.
        raise UserInputError(
            f"data: unknown key '{unknown[0]}' of dataset {dataset}; "
            f"accepted keys: {', '.join(accepted)}"
        )
    return check_finite(info.factory(**options))


def check_finite(data: DatasetSplits) -> DatasetSplits:
    """Refuse a dataset whose inputs or float targets hold a NaN or an infinity.

    One vectorised pass per tensor with no allocation (a sum is finite exactly
    when every element is, unless it overflows, which the exact search below then
    clears); integer tensors such as uint8 images or int64 labels are skipped,
    being finite by construction.

    Args:
        data: The loaded dataset.

    Returns:
        `data` itself, unchanged.

    Raises:
        UserInputError: Naming the dataset, the split (`train`, `val`, `test`), the
            first bad sample's index within it, the value and its position, e.g.
            `data: fashion_mnist test split: sample 17 holds NaN (inputs, position
            [3, 4]); clean or drop it`.
    """
    for part, split in (("train", data.train), ("val", data.val), ("test", data.test)):
        if split is not None:
            _check_split(data.name, part, split)
    return data


def _check_split(name: str, part: str, split: Split) -> None:
    """Raise on the first non-finite value of `split`'s inputs, then of its targets."""
    roles = [("inputs", split.x)]
    if split.y is not split.x:  # a reconstruction's targets are its inputs
        roles.append(("targets", split.y))
    for role, values in roles:
        found = _first_non_finite(values)
        if found is not None:
            sample, position, value = found
            where = f", position {list(position)}" if position else ""
            raise UserInputError(
                f"data: {name} {part} split: sample {sample} holds {value} ({role}{where}); "
                "clean or drop it"
            )


def _first_non_finite(values: torch.Tensor) -> tuple[int, tuple[int, ...], str] | None:
    """The first non-finite element as (sample, position within it, `NaN`/`inf`/`-inf`)."""
    if not values.is_floating_point() or values.numel() == 0:
        return None
    if bool(torch.isfinite(values.sum())):
        return None
    # Only reached on bad data (or a sum that overflowed): locate the culprit exactly.
    rows = values.reshape(len(values), -1) if values.ndim else values.reshape(1, 1)
    bad = ~torch.isfinite(rows)
    samples = bad.any(dim=1).nonzero()
    if len(samples) == 0:
        return None
    sample = int(samples[0])
    flat = int(bad[sample].nonzero()[0])
    position = tuple(int(i) for i in np.unravel_index(flat, tuple(values.shape[1:])))
    value = rows[sample, flat].item()
    return sample, position, "NaN" if math.isnan(value) else ("-inf" if value < 0 else "inf")


INPUT_SHAPES: dict[str, Callable[[dict[str, Any]], tuple[int, ...]]] = {
    "fashion_mnist": lambda options: (28, 28),
    "mnist": lambda options: (28, 28),
}
"""Per-sample shape of each registered dataset given its resolved `data:` options
(a generated sequence's shape depends on its `length`), known without reading or
drawing the data. `tricklab.data.generated` adds its datasets' entries."""

AUTO_OPTIONS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {}
"""Per dataset, the options left `auto` that it decides from its files' headers at
resolve time, given the resolved `data:` options: e.g. `{"scale": "unit"}` for
uint8 images. The resolved recipe then records the choice, not `auto`."""


@datasets.register(
    "fashion_mnist",
    description="Zalando's 28x28 grey images of clothing, 10 classes, 60000 train / 10000 test",
    reference="Xiao, Rasul & Vollgraf (2017), Fashion-MNIST, arXiv:1708.07747",
    keras_name="fashion_mnist",
)
def fashion_mnist(
    validation: int = 5000, scale: Scale = "unit", classes: list[int] | None = None,
    split: dict[str, Any] | None = None, train_size: PositiveInt | None = None,
) -> DatasetSplits:
    """Load Fashion-MNIST; see `load_dataset` for the arguments.

    Args:
        validation: Validation images taken from the training file's start. Defaults to `5000`.
        scale: `unit`, `standardize` or `none`. Defaults to `"unit"`.
        classes: Class indices to keep, relabelled in order. Defaults to `None`.
        split: A split kind and its parameters, instead of `classes`. Defaults to `None`.
        train_size: Training images to keep, from the start. Defaults to `None` (all).

    Reference:
        Xiao, Rasul & Vollgraf (2017), arXiv:1708.07747.
    """
    return _load("fashion_mnist", validation, scale, classes, split, train_size)


@datasets.register(
    "mnist",
    description="Handwritten digits, 28x28 grey images, 10 classes, 60000 train / 10000 test",
    reference="LeCun, Bottou, Bengio & Haffner (1998), Proc. IEEE 86(11):2278-2324",
    keras_name="mnist",
)
def mnist(
    validation: int = 5000, scale: Scale = "unit", classes: list[int] | None = None,
    split: dict[str, Any] | None = None, train_size: PositiveInt | None = None,
) -> DatasetSplits:
    """Load MNIST; see `load_dataset` for the arguments.

    Args:
        validation: Validation images taken from the training file's start. Defaults to `5000`.
        scale: `unit`, `standardize` or `none`. Defaults to `"unit"`.
        classes: Class indices to keep, relabelled in order. Defaults to `None`.
        split: A split kind and its parameters, instead of `classes`. Defaults to `None`.
        train_size: Training images to keep, from the start. Defaults to `None` (all).

    Reference:
        LeCun, Bottou, Bengio & Haffner (1998), "Gradient-based learning applied to
        document recognition", Proc. IEEE 86(11).
    """
    return _load("mnist", validation, scale, classes, split, train_size)


def _load(
    name: str, validation: int, scale: Scale, classes: list[int] | None,
    split: dict[str, Any] | None, train_size: int | None,
) -> DatasetSplits:
    """Validate the options, read the files once, split, select the task, cut and scale."""
    if scale not in ("unit", "standardize", "none"):
        raise UserInputError(f"data.scale: must be one of unit, standardize, none, got {scale!r}")
    names = CLASS_NAMES[name]
    task = make_task(name, names, classes, split)
    files = dataset_files(fetch(name))
    train_x, train_y = _read_pair(files["train_images"], files["train_labels"], len(names))
    test_x, test_y = _read_pair(files["test_images"], files["test_labels"], len(names))
    if isinstance(validation, bool) or not isinstance(validation, int) or not (
        0 <= validation < len(train_y)
    ):
        raise UserInputError(
            f"data.validation: must be an integer with 0 <= validation < {len(train_y)} "
            f"(the training images of {name}), got {validation!r}"
        )
    raw = {
        "train": (train_x[validation:], train_y[validation:]),
        "val": (train_x[:validation], train_y[:validation]) if validation else None,
        "test": (test_x, test_y),
    }
    if task is not None:
        raw = {part: pair and task.apply(*pair, part) for part, pair in raw.items()}
    if len(raw["train"][1]) == 0:
        raise UserInputError(
            f"data.{'split' if split is not None else 'classes'}: no training image of "
            f"the chosen classes is left after the first {validation} went to validation"
        )
    raw["train"] = first_images(*raw["train"], train_size, name)
    parts = {part: pair and _tensors(*pair) for part, pair in raw.items()}
    if not (np.issubdtype(train_x.dtype, np.integer) and np.issubdtype(test_x.dtype, np.integer)):
        # Float IDX files: check before scaling, where `standardize` would spread one
        # bad training pixel into every sample through the mean; `load_dataset`'s
        # check after scaling then covers what scaling itself produced.
        check_finite(DatasetSplits(
            name=name, train=parts["train"], val=parts["val"], test=parts["test"],
            class_names=[], input_shape=tuple(train_x.shape[1:]), scale=scale,
        ))
    shape = tuple(train_x.shape[1:])
    return scale_parts(DatasetSplits(
        name=name, train=parts["train"], val=parts["val"], test=parts["test"],
        class_names=task.class_names(names) if task is not None else list(names),
        input_shape=shape, scale=scale,
        raw_inputs={"kind": "images", "image_size": shape[:2], "color_mode": "grayscale"},
    ))


def _read_pair(
    images_path: Path, labels_path: Path, num_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """Read images and labels, checking that they match each other and the class count."""
    images, labels = read_idx(images_path), read_idx(labels_path)
    if labels.ndim != 1 or len(images) != len(labels):
        raise UserInputError(
            f"data file {labels_path}: labels of shape {labels.shape} do not match "
            f"the images of shape {images.shape} in {images_path}"
        )
    if len(labels) and not 0 <= labels.min() <= labels.max() < num_classes:
        raise UserInputError(
            f"data file {labels_path}: labels must lie in 0..{num_classes - 1}, "
            f"found {labels.min()}..{labels.max()}"
        )
    return images, labels


def _tensors(images: np.ndarray, labels: np.ndarray) -> Split:
    """Convert one part to float32 images and int64 labels."""
    # np.asarray makes the one float32 copy (the uint8 view of the file is read-only).
    x, y = np.asarray(images, dtype=np.float32), np.asarray(labels, dtype=np.int64)
    return Split(torch.from_numpy(x), torch.from_numpy(y))
