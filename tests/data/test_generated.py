"""The adding problem: exact properties of the drawn data, its options and a run on it."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml

from tricklab.data import INPUT_SHAPES, DatasetSplits, datasets, load_dataset
from tricklab.errors import UserInputError
from tricklab.recipe import recipe_from_dict
from tricklab.run import train_recipe

SMALL = {"length": 10, "train_size": 300, "validation": 100, "test_size": 200}


def small(**changes: Any) -> DatasetSplits:
    return load_dataset("adding_problem", **{**SMALL, **changes})


def parts(data: DatasetSplits) -> dict[str, Any]:
    return {"train": data.train, "val": data.val, "test": data.test}


def test_shapes_dtypes_and_metadata() -> None:
    data = small()
    for part, size in zip(parts(data).values(), (300, 100, 200), strict=True):
        assert part.x.shape == (size, 10, 2) and part.x.dtype == torch.float32
        assert part.y.shape == (size,) and part.y.dtype == torch.float32
    assert data.name == "adding_problem" and data.input_shape == (10, 2)
    assert data.class_names == [] and data.num_classes == 0 and data.scale == "none"
    assert small(validation=0).val is None


@pytest.mark.parametrize("length", [2, 7, 10])
def test_two_markers_one_per_half_and_the_target_is_their_sum(length: int) -> None:
    data = load_dataset("adding_problem", length=length, train_size=2000, validation=0)
    x, y = data.train.x.numpy(), data.train.y.numpy()
    values, markers = x[..., 0], x[..., 1]
    assert ((values >= 0) & (values < 1)).all()
    assert set(np.unique(markers)) <= {0.0, 1.0}
    assert (markers.sum(axis=1) == 2).all()
    half = length // 2
    assert (markers[:, :half].sum(axis=1) == 1).all()
    assert (markers[:, half:].sum(axis=1) == 1).all()
    first = markers[:, :half].argmax(axis=1)
    second = half + markers[:, half:].argmax(axis=1)
    rows = np.arange(len(x))
    np.testing.assert_array_equal(y, values[rows, first] + values[rows, second])
    # Every step of each half holds a marker somewhere: the positions are not fixed.
    assert set(first) == set(range(half)) and set(second) == set(range(half, length))


def test_the_data_seed_fixes_the_data() -> None:
    first, again, other = small(), small(), small(data_seed=1)
    for part, same, different in zip(
        parts(first).values(), parts(again).values(), parts(other).values(), strict=True
    ):
        assert torch.equal(part.x, same.x) and torch.equal(part.y, same.y)
        assert not torch.equal(part.x, different.x)


def test_parts_are_distinct_streams_independent_of_the_other_sizes() -> None:
    data = small()
    rows = {name: {tuple(row) for row in part.x[..., 0].tolist()}
            for name, part in parts(data).items()}
    assert not rows["train"] & rows["val"]
    assert not rows["train"] & rows["test"]
    assert not rows["val"] & rows["test"]
    bigger = small(train_size=500)
    assert torch.equal(bigger.val.x, data.val.x) and torch.equal(bigger.test.x, data.test.x)


def test_predicting_one_scores_a_sixth() -> None:
    y = load_dataset("adding_problem", train_size=10000, validation=0).train.y.double()
    mse = float(((y - 1) ** 2).mean())
    # (y - 1) is triangular on [-1, 1]: E[(y - 1)^2] = 1/6 and E[(y - 1)^4] = 1/15.
    sd_of_mean = math.sqrt((1 / 15 - 1 / 36) / len(y))
    assert abs(mse - 1 / 6) < 5 * sd_of_mean


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"length": 1}, "data.length: must be an integer >= 2, got 1"),
        ({"length": 10.0}, "data.length: must be an integer >= 2, got 10.0"),
        ({"train_size": 0}, "data.train_size: must be an integer >= 1, got 0"),
        ({"validation": -1}, "data.validation: must be an integer >= 0, got -1"),
        ({"test_size": True}, "data.test_size: must be an integer >= 1, got True"),
        ({"data_seed": "1"}, "data.data_seed: must be an integer >= 0, got '1'"),
        ({"scale": "unit"}, "data: unknown key 'scale' of dataset adding_problem; accepted "
                            "keys: data_seed, length, test_size, train_size, validation"),
    ],
)
def test_bad_options_name_their_key(options: dict[str, Any], message: str) -> None:
    with pytest.raises(UserInputError) as caught:
        load_dataset("adding_problem", **options)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("options", "start"),
    [
        ({"length": 1}, "data.length: input should be greater than or equal to 2"),
        ({"validation": True}, "data.validation: input should be a valid integer"),
        ({"classes": [0, 1]}, "data: unknown key 'classes'; accepted keys: data_seed, length"),
    ],
)
def test_recipe_validation_names_the_key(options: dict[str, Any], start: str) -> None:
    document = {"name": "adding", "data": {"dataset": "adding_problem", **options},
                "model": {"layers": ["flatten", {"dense": {"units": 1}}]},
                "train": {"optimizer": "sgd", "loss": "mse"}}
    with pytest.raises(UserInputError) as caught:
        recipe_from_dict(document)
    assert str(caught.value).startswith(start)


def test_recipe_resolves_the_options_and_the_input_shape() -> None:
    recipe = recipe_from_dict({
        "name": "adding", "data": {"dataset": "adding_problem", "length": 30},
        "model": {"layers": ["flatten", {"dense": {"units": 1}}]},
        "train": {"optimizer": "sgd", "loss": "mse"},
    })
    assert recipe.data == {"dataset": "adding_problem", "length": 30, "train_size": 10000,
                           "validation": 1000, "test_size": 1000, "data_seed": 0, "augment": []}
    assert list(recipe.model.input_shape) == [30, 2]
    assert INPUT_SHAPES["adding_problem"](recipe.data) == (30, 2)
    assert "adding_problem" in datasets


def test_a_run_on_the_adding_problem_reports_its_losses(tmp_path: Path) -> None:
    recipe = recipe_from_dict({
        "name": "adding",
        "seed": 5,
        "data": {"dataset": "adding_problem", **SMALL},
        "model": {"layers": ["flatten", {"dense": {"units": 16, "activation": "relu"}},
                             {"dense": {"units": 1}}]},
        "train": {"optimizer": {"name": "adam", "learning_rate": 0.01}, "loss": "mse",
                  "epochs": 1, "batch_size": 32},
    })
    outcome = train_recipe(recipe, out=tmp_path / "run", progress="none")
    assert outcome.exit_code == 0
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    assert result["status"] == "completed"
    assert set(result["metrics"]) == {"train_loss", "val_loss", "test_loss"}
    assert all(math.isfinite(value) for value in result["metrics"].values())
    assert result["dataset"] == {"name": "adding_problem", "train": 300, "val": 100, "test": 200}
    stored = yaml.safe_load((tmp_path / "run" / "recipe.yaml").read_text())
    assert stored["model"]["input_shape"] == [10, 2] and stored["data"]["data_seed"] == 0
