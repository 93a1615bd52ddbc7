"""The `numpy` dataset on real data nobody here wrote: scikit-learn's digits, wine, diabetes.

Each test writes the arrays to an `.npz` under `tmp_path` with NumPy, as a user
would, and reads them back through the registry.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from sklearn.datasets import load_diabetes, load_digits, load_wine

from tricklab.data import INPUT_SHAPES, DatasetSplits, datasets, load_dataset
from tricklab.errors import UserInputError
from tricklab.recipe import recipe_from_dict
from tricklab.run import train_recipe


def digits_npz(folder: Path) -> Path:
    """Digits as uint8 8x8 images: the 0-16 intensities times 15 stay within 0-240."""
    bunch = load_digits()
    path = folder / "digits.npz"
    np.savez(path, x=(bunch.images * 15).astype(np.uint8), y=bunch.target)
    return path


def table_npz(folder: Path, loader: Any, name: str) -> Path:
    """A scikit-learn table `[N, F]` of floats with its targets as the file holds them."""
    bunch = loader()
    path = folder / f"{name}.npz"
    np.savez(path, x=bunch.data, y=bunch.target)
    return path


def counts(split: Any, classes: int) -> np.ndarray:
    return np.bincount(split.y.numpy(), minlength=classes)


def test_digits_shapes_names_and_unit_scale(tmp_path: Path) -> None:
    path = digits_npz(tmp_path)
    data = load_dataset("numpy", path=str(path))
    # 1797 samples: 20% test (359), 10% of the remaining 1438 for validation (144).
    assert (len(data.train), len(data.val), len(data.test)) == (1294, 144, 359)
    assert data.train.x.shape == (1294, 8, 8) and data.train.x.dtype == torch.float32
    assert data.train.y.dtype == torch.int64 and data.input_shape == (8, 8)
    assert data.class_names == [str(digit) for digit in range(10)]
    # uint8 inputs: auto resolves to unit, the file's 0-240 become 0-240/255.
    assert data.scale == "unit" and data.mean is None
    assert float(data.train.x.max()) == pytest.approx(240 / 255)
    assert INPUT_SHAPES["numpy"]({"path": str(path), "x_key": "x"}) == (8, 8)


def test_stratified_and_reproducible_split(tmp_path: Path) -> None:
    path = digits_npz(tmp_path)
    target = load_digits().target
    full = np.bincount(target, minlength=10)
    data = load_dataset("numpy", path=str(path), validation=300, data_seed=3)
    test = counts(data.test, 10)
    assert np.all(np.abs(test - len(data.test) * full / len(target)) <= 1)
    rest = full - test
    val = counts(data.val, 10)
    assert np.all(np.abs(val - 300 * rest / rest.sum()) <= 1)
    again = load_dataset("numpy", path=str(path), validation=300, data_seed=3)
    for part in ("train", "val", "test"):
        assert torch.equal(getattr(data, part).x, getattr(again, part).x)
        assert torch.equal(getattr(data, part).y, getattr(again, part).y)
    other = load_dataset("numpy", path=str(path), validation=300, data_seed=4)
    assert not torch.equal(data.test.x, other.test.x)
    assert not torch.equal(data.val.x, other.val.x)


def test_wine_table_is_standardized_with_training_statistics(tmp_path: Path) -> None:
    path = table_npz(tmp_path, load_wine, "wine")
    data = load_dataset("numpy", path=str(path), validation=0.2)
    assert data.scale == "standardize" and data.input_shape == (13,)
    assert data.class_names == ["0", "1", "2"] and data.val is not None
    std, mean = torch.std_mean(data.train.x, dim=0, correction=0)
    assert torch.allclose(mean, torch.zeros(13), atol=1e-5)
    assert torch.allclose(std, torch.ones(13), atol=1e-5)
    # The statistics are kept in the file's units, so new rows scale the same way.
    raw = torch.from_numpy(load_wine().data[:5].astype(np.float32))
    assert data.mean.shape == (13,) and data.scale_inputs(raw).abs().max() < 10


def test_diabetes_auto_task_is_regression(tmp_path: Path) -> None:
    path = table_npz(tmp_path, load_diabetes, "diabetes")
    data = load_dataset("numpy", path=str(path), train_size=100)
    assert data.class_names == [] and data.num_classes == 0
    assert data.train.y.dtype == torch.float32 and data.train.y.shape == (100,)
    assert len(data.test) == round(0.2 * 442)
    assert set(data.test.y.tolist()) <= set(load_diabetes().target.tolist())


def test_test_arrays_form_the_test_split(tmp_path: Path) -> None:
    bunch = load_digits()
    path = tmp_path / "pair.npz"
    images = (bunch.images * 15).astype(np.uint8)
    np.savez(path, x=images[:1500], y=bunch.target[:1500], x_test=images[1500:],
             y_test=bunch.target[1500:])
    data = load_dataset("numpy", path=str(path), validation=0)
    assert data.val is None and len(data.train) == 1500
    assert torch.equal(data.test.x, torch.from_numpy(images[1500:].astype(np.float32) / 255))
    assert torch.equal(data.test.y, torch.from_numpy(bunch.target[1500:]))


def test_classes_by_name_and_value_relabelled_in_order(tmp_path: Path) -> None:
    path = digits_npz(tmp_path)
    data = load_dataset("numpy", path=str(path), classes=[7, "3"])
    assert data.class_names == ["7", "3"]
    images, target = load_digits().images, load_digits().target
    sevens = torch.from_numpy((images[target == 7] * 15).astype(np.uint8).astype(np.float32))
    first = data.test.x[data.test.y == 0][0] * 255
    assert any(torch.allclose(first, seven) for seven in sevens)
    assert len(data.train) + len(data.val) + len(data.test) == int(np.isin(target, [3, 7]).sum())


def test_string_labels_and_a_chosen_key(tmp_path: Path) -> None:
    bunch = load_wine()
    path = tmp_path / "named.npz"
    names = np.asarray(bunch.target_names)[bunch.target]
    np.savez(path, features=bunch.data.astype(np.float32), cultivar=names)
    data = load_dataset("numpy", path=str(path), x_key="features", y_key="cultivar",
                        scale="none")
    assert data.class_names == ["class_0", "class_1", "class_2"] and data.scale == "none"
    assert float(data.train.x.max()) == pytest.approx(float(bunch.data.max()), rel=1e-6)


def bad(tmp_path: Path, **arrays: np.ndarray) -> str:
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    return str(path)


@pytest.mark.parametrize(
    ("arrays", "options", "message"),
    [
        ({"x": np.zeros((4, 2))}, {},
         "data file {path}: no array 'y'; arrays present: x (choose others with data.x_key "
         "and data.y_key)"),
        ({"x": np.zeros((4, 2)), "y": np.arange(3)}, {},
         "data file {path}: array 'x' holds 4 samples but array 'y' holds 3; expected one "
         "target per sample"),
        ({"x": np.array([["a", "b"], ["c", "d"]]), "y": np.arange(2)}, {},
         "data file {path}: array 'x' has dtype <U1; expected numbers (bool, integer or float)"),
        ({"x": np.zeros((0, 3)), "y": np.zeros(0)}, {},
         "data file {path}: array 'x' is empty (shape [0, 3]); expected samples"),
        ({"x": np.zeros((4, 2)), "y": np.ones(4, dtype=np.int64)}, {},
         "data file {path}: array 'y' holds a single class (1); a classification needs at "
         "least 2 (for numeric targets set task: regression)"),
        ({"x": np.zeros(4), "y": np.arange(4)}, {},
         "data file {path}: array 'x' has shape [4]; expected one sample per row, [N, ...] "
         "(for a single feature, reshape it to [N, 1])"),
        ({"x": np.zeros((4, 2)), "y": np.arange(4), "x_test": np.zeros((2, 2))}, {},
         "data file {path}: has 'x_test' but no 'y_test'; a test part needs both "
         "(arrays present: x, y, x_test)"),
        ({"x": np.zeros((4, 2)), "y": np.arange(4) % 2, "x_test": np.zeros((2, 2)),
          "y_test": np.array([0, 5])}, {},
         "data file {path}: array 'y_test': label 5 never occurs in array 'y'; known "
         "classes: 0, 1"),
        ({"x": np.zeros((10, 2)), "y": np.arange(10) % 2}, {"validation": 8},
         "data.validation: must be a count 0 <= N < 8 or a fraction 0 < f < 1 leaving at "
         "least 1 of the 8 samples for training, got 8"),
        ({"x": np.zeros((10, 2)), "y": np.arange(10) % 2}, {"classes": [0, 4]},
         "data.classes: 4 is not a class of the data; classes: 0, 1"),
        ({"x": np.zeros((10, 2)), "y": np.linspace(0, 1, 10)}, {"classes": [0, 1]},
         "data.classes: only a classification task has classes, but this one is a regression "
         "(data file {path}: array 'y' holds float64 values); drop classes or set task: "
         "classification"),
        ({"x": np.zeros((10, 2)), "y": np.array(list("ababababab"))}, {"task": "regression"},
         "data file {path}: array 'y' has dtype <U1; a regression needs numbers (for labels "
         "set task: classification)"),
        ({"x": np.zeros((10, 2)), "y": np.arange(10) % 2}, {"train_size": 50},
         "data.train_size: must be an integer with 1 <= train_size <= 7 (the training "
         "samples left after test and validation), got 50"),
    ],
)
def test_bad_arrays_and_options_are_one_line(
    tmp_path: Path, arrays: dict[str, np.ndarray], options: dict[str, Any], message: str
) -> None:
    path = bad(tmp_path, **arrays)
    with pytest.raises(UserInputError) as caught:
        load_dataset("numpy", path=path, **options)
    assert str(caught.value) == message.format(path=path)
    assert "\n" not in str(caught.value)


def test_missing_or_foreign_file_is_one_line_at_resolution_too(tmp_path: Path) -> None:
    absent = str(tmp_path / "absent.npz")
    message = (f"data.path: file not found: {absent}; expected an .npz file written by "
               "numpy.savez(path, x=..., y=...)")
    for load in (lambda: load_dataset("numpy", path=absent),
                 lambda: INPUT_SHAPES["numpy"]({"path": absent})):
        with pytest.raises(UserInputError, match=f"^{re.escape(message)}$"):
            load()
    text = tmp_path / "table.csv"
    text.write_text("a,b\n1,2\n")
    with pytest.raises(UserInputError, match=re.escape("is not an .npz archive; write one")):
        load_dataset("numpy", path=str(text))
    path = bad(tmp_path, features=np.zeros((3, 2)))
    with pytest.raises(UserInputError, match=re.escape("no array 'x'; arrays present: features")):
        INPUT_SHAPES["numpy"]({"path": path})


def test_object_arrays_are_never_unpickled(tmp_path: Path) -> None:
    ragged = np.empty(3, dtype=object)
    ragged[:] = [[1.0], [2.0, 3.0], [4.0]]
    path = bad(tmp_path, x=ragged, y=np.arange(3))
    message = (f"data file {path}: array 'x' holds Python objects (dtype object), which are "
               "never unpickled; save numbers or strings, e.g. x.astype(np.float32)")
    for load in (lambda: load_dataset("numpy", path=path),
                 lambda: INPUT_SHAPES["numpy"]({"path": path})):
        with pytest.raises(UserInputError) as caught:
            load()
        assert str(caught.value) == message


def test_registry_entry_and_recipe_defaults(tmp_path: Path) -> None:
    info = datasets.info("numpy")
    assert "npz" in info.description.lower() and "numpy.lib.format" in info.reference
    path = str(digits_npz(tmp_path))
    assert datasets.validate("numpy", {"path": path}, "data") == {
        "path": path, "x_key": "x", "y_key": "y", "x_test_key": "x_test",
        "y_test_key": "y_test", "task": "auto", "validation": 0.1, "test_fraction": 0.2,
        "train_size": None, "classes": None, "scale": "auto", "data_seed": 0,
    }
    with pytest.raises(UserInputError, match=re.escape(
        "data.validation: value error, must be a count (an integer >= 0) or a fraction "
        "0 < f < 1 (got 1.5)"
    )):
        datasets.validate("numpy", {"path": path, "validation": 1.5}, "data")


def recipe(path: Path, layers: list[Any], loss: str, epochs: int, **train: Any) -> dict[str, Any]:
    return {
        "name": path.stem, "seed": 1,
        "data": {"dataset": "numpy", "path": str(path)},
        "model": {"layers": layers},
        "train": {"loss": loss, "optimizer": {"name": "adam", "learning_rate": 1e-3},
                  "batch_size": 32, "epochs": epochs, **train},
    }


def test_digits_end_to_end_reaches_90_percent(tmp_path: Path) -> None:
    doc = recipe(digits_npz(tmp_path), [
        "flatten", {"dense": {"units": 64, "activation": "relu"}},
        {"dense": {"units": 10, "activation": "softmax"}},
    ], "sparse_categorical_crossentropy", 30, metrics=["accuracy"])
    outcome = train_recipe(recipe_from_dict(doc), out=tmp_path / "run", progress="none")
    accuracy = outcome.result["metrics"]["test_accuracy"]
    print(f"digits test accuracy {accuracy:.4f}")
    assert accuracy > 0.9
    assert outcome.result["dataset"] == {"name": "numpy", "train": 1294, "val": 144, "test": 359}
    assert json.loads((tmp_path / "run" / "result.json").read_text())["status"] == "completed"


def test_diabetes_end_to_end_beats_the_training_mean(tmp_path: Path) -> None:
    path = table_npz(tmp_path, load_diabetes, "diabetes")
    doc = recipe(path, [{"dense": {"units": 64, "activation": "relu"}}, {"dense": {"units": 1}}],
                 "mse", 150)
    doc["train"]["optimizer"]["learning_rate"] = 0.01  # targets near 150 need a faster start
    outcome = train_recipe(recipe_from_dict(doc), out=tmp_path / "run", progress="none")
    data: DatasetSplits = load_dataset("numpy", path=str(path))
    baseline = float(((data.test.y - data.train.y.mean()) ** 2).mean())
    mse = outcome.result["metrics"]["test_loss"]
    print(f"diabetes test mse {mse:.1f}, predicting the training mean {baseline:.1f}")
    assert mse < 0.8 * baseline
