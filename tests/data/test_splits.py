"""The book's transfer-learning split of Fashion-MNIST into tasks A and B, from data to recipe."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from tricklab.data import load_dataset, read_idx, splits
from tricklab.data.sources import dataset_files
from tricklab.errors import UserInputError
from tricklab.recipe.load import recipe_from_dict
from tricklab.run.runner import load_data

from ..conftest import TINY_RECIPE

DEBIAN = Path("/usr/share/datasets/fashion-mnist")
KIND = "fashion_mnist_task_a_b"
FASHION_NAMES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]


def book_split_dataset(x: np.ndarray, y: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The book's `split_dataset`, written out again; B's labels are int64, not float32."""
    y_5_or_6 = (y == 5) | (y == 6)
    y_a = y[~y_5_or_6].astype(np.int64)
    y_a[y_a > 6] -= 2
    y_b = (y[y_5_or_6] == 6).astype(np.int64)
    return {"a": (x[~y_5_or_6], y_a), "b": (x[y_5_or_6], y_b)}


@pytest.fixture
def raw(fixture_dir: Path) -> dict[str, np.ndarray]:
    return {role: read_idx(path) for role, path in dataset_files(fixture_dir).items()}


def book_parts(raw: dict[str, np.ndarray], validation: int, task: str, b_train: int) -> dict:
    """Train, validation and test parts of `task` as the book's code makes them."""
    x, y = raw["train_images"], raw["train_labels"]
    parts = {
        "train": book_split_dataset(x[validation:], y[validation:])[task],
        "val": book_split_dataset(x[:validation], y[:validation])[task],
        "test": book_split_dataset(raw["test_images"], raw["test_labels"])[task],
    }
    if task == "b":
        parts["train"] = (parts["train"][0][:b_train], parts["train"][1][:b_train])
    return parts


@pytest.mark.parametrize(
    ("task", "b_train_images"), [("a", 200), ("b", 200), ("b", 37), ("b", 100_000)]
)
def test_split_matches_the_books_code(
    fixture_data: Path, raw: dict[str, np.ndarray], task: str, b_train_images: int
) -> None:
    split = {"kind": KIND, "task": task, "b_train_images": b_train_images}
    data = load_dataset(validation=500, scale="none", split=split)
    expected = book_parts(raw, 500, task, b_train_images)
    for name, (images, labels) in expected.items():
        part = getattr(data, name)
        np.testing.assert_array_equal(part.x.numpy(), images, err_msg=name)
        np.testing.assert_array_equal(part.y.numpy(), labels, err_msg=name)
        assert part.y.dtype == torch.int64 and len(part) > 0
    if task == "b":
        available = np.isin(raw["train_labels"][500:], [5, 6]).sum()
        assert available > 200, "the fixture should have more B images than the book keeps"
        assert len(data.train) == min(b_train_images, available)
        assert set(data.train.y.tolist()) == {0, 1}
    else:
        assert set(data.train.y.tolist()) == set(range(8))


def test_class_names_and_defaults(fixture_data: Path) -> None:
    data_a = load_dataset(validation=500, split={"kind": KIND})
    assert data_a.class_names == [n for n in FASHION_NAMES if n not in ("Sandal", "Shirt")]
    assert data_a.num_classes == 8 and data_a.class_names[5:] == ["Sneaker", "Bag", "Ankle boot"]
    data_b = load_dataset(validation=500, split={"kind": KIND, "task": "b"})
    assert data_b.class_names == ["Sandal", "Shirt"] and len(data_b.train) == 200


def test_train_size_applies_after_the_split(fixture_data: Path) -> None:
    split = {"kind": KIND, "task": "b"}
    full = load_dataset(validation=500, scale="none", split=split)
    cut = load_dataset(validation=500, scale="standardize", split=split, train_size=50)
    assert len(cut.train) == 50 and len(cut.val) == len(full.val)
    np.testing.assert_allclose(cut.mean.numpy(), full.train.x[:50].mean(0).numpy(), rtol=1e-5)
    with pytest.raises(UserInputError, match=r"^data\.train_size: .*<= 200 .*got 201$"):
        load_dataset(validation=500, split=split, train_size=201)


@pytest.mark.parametrize(
    ("split", "classes", "message"),
    [
        ({"kind": KIND, "task": "c"}, None, "data.split.task: input should be 'a' or 'b' (got 'c')"),
        ({"kind": "task_a_b"}, None, f"data.split.kind: unknown split kind 'task_a_b'; known: {KIND}"),
        ({"kind": KIND, "tsk": "b"}, None,
         "data.split: unknown key 'tsk'; accepted keys: kind, task, b_train_images"),
        ({"kind": KIND, "b_train_images": 0}, None,
         "data.split.b_train_images: input should be greater than 0 (got 0)"),
        ({"kind": KIND, "b_train_images": True}, None,
         "data.split.b_train_images: input should be a valid integer (got True)"),
        ({"task": "b"}, None, "data.split: expected a mapping with 'kind' and its parameters"),
        (KIND, None, "data.split: expected a mapping with 'kind'"),
        ({"kind": KIND}, [0, 1], "data.split: cannot be combined with data.classes"),
    ],
)
def test_bad_split_is_a_one_line_error(
    fixture_data: Path, split: Any, classes: Any, message: str
) -> None:
    with pytest.raises(UserInputError) as caught:
        load_dataset(validation=500, split=split, classes=classes)
    assert str(caught.value).startswith(message) and "\n" not in str(caught.value)


def test_split_kind_fits_only_fashion_mnist(fixture_data: Path) -> None:
    with pytest.raises(UserInputError, match=rf"^data\.split\.kind: '{KIND}' splits only "
                                             r"fashion_mnist, not 'mnist'$"):
        load_dataset("mnist", split={"kind": KIND})


def test_registry_entry() -> None:
    assert splits.names() == [KIND]
    info = splits.info(KIND)
    assert "Géron" in info.reference and "ch. 11" in info.reference
    assert info.description and "\n" not in info.description


def recipe_data(**data: Any) -> dict[str, Any]:
    return {**TINY_RECIPE, "data": {**TINY_RECIPE["data"], **data}}


def test_recipe_resolves_every_split_default(fixture_data: Path) -> None:
    recipe = recipe_from_dict(recipe_data(split={"kind": KIND, "task": "b"}))
    assert recipe.data == {
        "dataset": "fashion_mnist", "validation": 500, "scale": "unit", "classes": None,
        "split": {"kind": KIND, "task": "b", "b_train_images": 200}, "train_size": None,
        "augment": [],
    }
    assert recipe_from_dict(recipe.to_dict()).data == recipe.data
    data = load_data(recipe)
    assert data.class_names == ["Sandal", "Shirt"] and len(data.train) == 200


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"split": {"kind": KIND, "task": "c"}}, "data.split.task: input should be 'a' or 'b' (got 'c')"),
        ({"split": {"kind": "shirts"}}, f"data.split.kind: unknown split kind 'shirts'; known: {KIND}"),
        ({"split": {"kind": KIND, "size": 3}},
         "data.split: unknown key 'size'; accepted keys: kind, task, b_train_images"),
        ({"split": {"kind": KIND}, "classes": [5, 6]}, "data.split: cannot be combined with data.classes"),
        ({"split": {"kind": KIND}, "dataset": "mnist"}, f"data.split.kind: '{KIND}' splits only fashion_mnist"),
        ({"split": "book"}, "data.split: input should be a valid dictionary"),
        ({"train_size": 0}, "data.train_size: input should be greater than 0 (got 0)"),
        ({"train_size": -5}, "data.train_size: input should be greater than 0 (got -5)"),
        ({"train_size": True}, "data.train_size: input should be a valid integer (got True)"),
    ],
)
def test_recipe_errors_name_the_dotted_path(data: dict[str, Any], message: str) -> None:
    with pytest.raises(UserInputError) as caught:
        recipe_from_dict(recipe_data(**data))
    assert str(caught.value).startswith(message) and "\n" not in str(caught.value)


@pytest.mark.skipif(not DEBIAN.is_dir(), reason="Debian's dataset-fashion-mnist is not installed")
def test_real_data_has_the_books_shapes(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("tricklab.data.sources.SYSTEM_DATA_DIR", DEBIAN.parent)
    task_a = load_dataset(scale="none", split={"kind": KIND, "task": "a"})
    task_b = load_dataset(scale="none", split={"kind": KIND, "task": "b"})
    assert tuple(task_a.train.x.shape) == (43986, 28, 28)
    assert tuple(task_b.train.x.shape) == (200, 28, 28)
    assert (len(task_a.val), len(task_b.val)) == (4014, 986)
    assert (len(task_a.test), len(task_b.test)) == (8000, 2000)
    labels = read_idx(DEBIAN / "train-labels-idx1-ubyte.gz")[5000:]
    assert np.isin(labels, [5, 6]).sum() == 11014  # task B's training images before the cut
