"""Choosing what a run learns from: a subset of classes or a registered split kind, then a size.

A recipe's `data:` section chooses at most one task: `classes: [6, 5]` keeps
those classes, relabelled in order; `split: {kind: name, **parameters}` applies
a split kind from the `splits` registry, such as the book's transfer-learning
tasks A and B. Both act on each part (train, validation, test) after the
validation images were taken from the training file's start, so the loader
stays ignorant of what a task is. `train_size` then keeps the first images of
the training part.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal, Protocol

import numpy as np
import pydantic

from tricklab.config import signature_model
from tricklab.errors import UserInputError
from tricklab.registry import Registry

Part = Literal["train", "val", "test"]
PositiveInt = Annotated[int, pydantic.Field(strict=True, gt=0)]
"""A count of images: an integer above 0, never a bool or a float."""


class TaskSplit(Protocol):
    """What the loader needs from a way of turning a dataset into a task."""

    def class_names(self, names: list[str]) -> list[str]:
        """The task's class names, in label order, given the dataset's."""
        ...

    def apply(
        self, images: np.ndarray, labels: np.ndarray, part: Part
    ) -> tuple[np.ndarray, np.ndarray]:
        """The images of `part` that belong to the task, and their int64 task labels."""
        ...


class ClassSubset:
    """Keep some classes of a dataset, relabelled 0..k-1 in the given order (`data.classes`).

    Args:
        classes: Distinct class indices of the dataset.
        names: The dataset's class names, in label order.
        dataset: The dataset's registry name, for messages.

    Raises:
        UserInputError: Naming `data.classes` and every valid id, if `classes` is not
            a non-empty list of distinct valid class indices.
    """

    def __init__(self, classes: list[int], names: list[str], dataset: str) -> None:
        valid = isinstance(classes, list | tuple) and all(
            isinstance(index, int) and not isinstance(index, bool) and 0 <= index < len(names)
            for index in classes
        )
        if not valid or not classes or len(set(classes)) != len(classes):
            known = ", ".join(f"{index} {label}" for index, label in enumerate(names))
            raise UserInputError(
                f"data.classes: expected a non-empty list of distinct class ids of {dataset} "
                f"({known}), got {classes!r}"
            )
        self.keep = list(classes)
        self.relabel = np.zeros(len(names), dtype=np.int64)
        self.relabel[self.keep] = np.arange(len(self.keep))

    def class_names(self, names: list[str]) -> list[str]:
        return [names[index] for index in self.keep]

    def apply(
        self, images: np.ndarray, labels: np.ndarray, part: Part
    ) -> tuple[np.ndarray, np.ndarray]:
        mask = np.isin(labels, self.keep)
        return images[mask], self.relabel[labels[mask]]


splits: Registry[TaskSplit] = Registry("split kind")

SANDAL, SHIRT = 5, 6


@splits.register(
    "fashion_mnist_task_a_b",
    description="Transfer-learning tasks: A = 8 classes without sandal and shirt, "
    "B = shirt vs sandal with few training images",
    reference="Géron, Hands-On Machine Learning, 2nd ed., ch. 11 "
    "(the 3rd ed. pairs T-shirt/top and pullover instead)",
)
class FashionMnistTaskAB:
    """The book's split of Fashion-MNIST into a big task A and a small, related task B.

    The book's `split_dataset(X, y)` marks the images whose label is 5 (sandal) or
    6 (shirt). Task A is every other image, its labels 7, 8 and 9 lowered by 2
    so that the eight classes are numbered 0..7. Task B is the marked images, each
    labelled 1 if it is a shirt and 0 if it is a sandal. The book applies this to
    the training, validation and test parts alike, then keeps only the first 200
    images of B's training part (`X_train_B = X_train_B[:200]`), so that reusing
    layers trained on A pays off. The book's labels of B are float32; here they
    are int64 like every label, and `binary_crossentropy` casts them.

    Args:
        task: `"a"` or `"b"`. Defaults to `"a"`.
        b_train_images: How many images, from its start, B's training part keeps
            (all of them if it has fewer); task A ignores it. Defaults to `200`.

    Reference:
        Géron, Hands-On Machine Learning (2nd ed.), ch. 11, "Reusing Pretrained
        Layers". The 3rd edition's notebook uses the same procedure with task B =
        pullover (1) vs T-shirt/top (0).
    """

    datasets: ClassVar[tuple[str, ...]] = ("fashion_mnist",)

    def __init__(self, task: Literal["a", "b"] = "a", b_train_images: PositiveInt = 200) -> None:
        self.task = task
        self.b_train_images = b_train_images

    def class_names(self, names: list[str]) -> list[str]:
        if self.task == "b":
            return [names[SANDAL], names[SHIRT]]
        return [label for index, label in enumerate(names) if index not in (SANDAL, SHIRT)]

    def apply(
        self, images: np.ndarray, labels: np.ndarray, part: Part
    ) -> tuple[np.ndarray, np.ndarray]:
        in_b = (labels == SANDAL) | (labels == SHIRT)
        if self.task == "a":
            kept = labels[~in_b].astype(np.int64)
            kept[kept > SHIRT] -= 2
            return images[~in_b], kept
        images, labels = images[in_b], (labels[in_b] == SHIRT).astype(np.int64)
        if part == "train":
            return images[: self.b_train_images], labels[: self.b_train_images]
        return images, labels


def resolve_split(
    split: Any, dataset: str, classes: Any = None, path: str = "data"
) -> dict[str, Any]:
    """Check a `data.split` mapping and return it with every parameter of its kind.

    Args:
        split: `{kind: name, **parameters}` as the user wrote it.
        dataset: The dataset the split will cut.
        classes: The section's `classes`, which must be absent with a split.
            Defaults to `None`.
        path: Dotted location of the data section. Defaults to `"data"`.

    Returns:
        `{"kind": name, **all_parameters}`.

    Raises:
        UserInputError: Naming `data.split...`: not a mapping, combined with
            `classes`, an unknown kind or key, a bad parameter, or a kind that does
            not fit `dataset`.
    """
    where = f"{path}.split"
    if not isinstance(split, dict) or "kind" not in split:
        raise UserInputError(
            f"{where}: expected a mapping with 'kind' and its parameters, got {split!r}; "
            f"known kinds: {', '.join(splits.names())}"
        )
    if classes is not None:
        raise UserInputError(
            f"{where}: cannot be combined with {path}.classes (got classes {classes!r}); "
            "a split chooses its own classes, so keep one of the two"
        )
    kind = split["kind"]
    factory = splits.info(kind, f"{where}.kind").factory
    accepted = ["kind", *signature_model(factory).model_fields]
    unknown = [key for key in split if key not in accepted]
    if unknown:
        raise UserInputError(
            f"{where}: unknown key '{unknown[0]}'; accepted keys: {', '.join(accepted)}"
        )
    if dataset not in factory.datasets:
        raise UserInputError(
            f"{where}.kind: '{kind}' splits only {', '.join(factory.datasets)}, "
            f"not {dataset!r}"
        )
    parameters = {key: value for key, value in split.items() if key != "kind"}
    return {"kind": kind, **splits.validate(kind, parameters, where)}


def first_images(
    images: np.ndarray, labels: np.ndarray, train_size: int | None, dataset: str
) -> tuple[np.ndarray, np.ndarray]:
    """The first `train_size` images of the training part (`data.train_size`); all for `None`.

    Raises:
        UserInputError: Naming `data.train_size`, unless it is `None` or an integer from
            1 to the number of images.
    """
    if train_size is None:
        return images, labels
    if isinstance(train_size, bool) or not isinstance(train_size, int) or not (
        1 <= train_size <= len(labels)
    ):
        raise UserInputError(
            f"data.train_size: must be an integer with 1 <= train_size <= {len(labels)} "
            f"(the training images of {dataset} left after validation, classes and split), "
            f"got {train_size!r}"
        )
    return images[:train_size], labels[:train_size]


def make_task(
    dataset: str, names: list[str], classes: Any, split: Any
) -> TaskSplit | None:
    """The task that `classes` or `split` of a data section asks for; `None` for neither.

    Args:
        dataset: Registry name of the dataset.
        names: The dataset's class names, in label order.
        classes: `data.classes` as given, or `None`.
        split: `data.split` as given, or `None`.

    Raises:
        UserInputError: As `resolve_split` and `ClassSubset` do.
    """
    if split is not None:
        parameters = resolve_split(split, dataset, classes)
        return splits.info(parameters.pop("kind")).factory(**parameters)
    if classes is not None:
        return ClassSubset(classes, names, dataset)
    return None
