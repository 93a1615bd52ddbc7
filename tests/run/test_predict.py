"""`predict_run`: a finished run's MC dropout predictions, its JSON and plot, and its errors."""

from __future__ import annotations

import copy
import itertools
import json
import shutil
from pathlib import Path

import pytest
import yaml

from tricklab.data import sources
from tricklab.errors import UserInputError
from tricklab.recipe import recipe_from_dict
from tricklab.run import train_recipe
from tricklab.run.predict import predict_run

from ..conftest import FIXTURES, TINY_RECIPE

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def tiny_with_dropout(binary: bool = False) -> dict:
    """TINY_RECIPE with dropout, trained a little longer: ~70% test accuracy, a second to train."""
    document = copy.deepcopy(TINY_RECIPE)
    document["train"].update(epochs=3, optimizer={"name": "sgd", "learning_rate": 0.05})
    layers = document["model"]["layers"]
    layers.insert(2, {"dropout": {"rate": 0.3}})
    if binary:
        # T-shirt against shirt: similar enough that the model is not always sure.
        document["data"]["classes"] = [0, 6]
        layers[-1] = {"dense": {"units": 1, "activation": "sigmoid"}}
        document["train"]["loss"] = "binary_crossentropy"
    return document


def train(folder: Path, **options) -> Path:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TRICKLAB_DATA", str(FIXTURES))
        patch.setenv("TRICKLAB_CACHE", str(folder / "cache"))
        patch.setattr(sources, "SYSTEM_DATA_DIR", folder / "system")
        outcome = train_recipe(recipe_from_dict(tiny_with_dropout(**options)),
                               out=folder / "run", progress="none")
    assert outcome.exit_code == 0
    return outcome.run_dir


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    return train(tmp_path_factory.mktemp("softmax"))


@pytest.fixture
def run(trained, tmp_path) -> Path:
    """A private copy of the trained run, so each test sees only its own outputs."""
    return Path(shutil.copytree(trained, tmp_path / "run"))


def test_mc_dropout_predictions_are_written_and_confidence_means_something(fixture_data, run):
    summary = predict_run(run, mc_samples=20)
    assert json.loads((run / "predictions.json").read_text()) == summary
    assert (run / "plots" / "accuracy_vs_confidence.png").read_bytes().startswith(PNG_SIGNATURE)
    assert summary["split"] == "test" and summary["mc_samples"] == 20 and summary["count"] == 500
    assert summary["mean_std"] > 0 and summary["mean_entropy"] > 0
    bins = summary["confidence_bins"]
    assert len(bins) == 10 and sum(row["count"] for row in bins) == 500
    assert all(a["confidence_max"] <= b["confidence_min"] for a, b in itertools.pairwise(bins))
    # The mean prediction is scored: the bins' accuracies average to the overall one.
    assert sum(r["accuracy"] * r["count"] for r in bins) / 500 == pytest.approx(summary["accuracy"])
    assert summary["accuracy"] > 0.5  # ten classes: chance is 0.1
    # A trained classifier is surer where it is right: 50 samples per decile, a wide margin.
    assert summary["least_confident_accuracy"] < summary["most_confident_accuracy"] - 0.3


def test_one_pass_reproduces_the_runs_own_test_accuracy(fixture_data, run):
    summary = predict_run(run, split="val")
    assert summary["mc_samples"] == 1 and summary["mean_std"] == 0 and summary["count"] == 500
    result = json.loads((run / "result.json").read_text())
    assert summary["accuracy"] == pytest.approx(result["metrics"]["val_accuracy"], abs=1e-9)


def test_same_seed_same_predictions(fixture_data, run):
    first = predict_run(run, mc_samples=5, seed=4)
    assert predict_run(run, mc_samples=5, seed=4) == first
    assert predict_run(run, mc_samples=5, seed=5) != first


def test_binary_sigmoid_run(fixture_data, tmp_path):
    run = train(tmp_path / "binary", binary=True)
    summary = predict_run(run, mc_samples=10, split="train")
    result = json.loads((run / "result.json").read_text())
    assert summary["count"] == result["dataset"]["train"]
    assert 0 < summary["mean_entropy"] <= 0.6932  # at most log 2 for two classes
    assert min(row["confidence_min"] for row in summary["confidence_bins"]) >= 0.5
    single = predict_run(run, split="test")
    assert single["accuracy"] == pytest.approx(result["metrics"]["test_accuracy"], abs=1e-9)
    assert (run / "plots" / "accuracy_vs_confidence.png").is_file()


def test_errors_name_the_path_and_what_is_expected(fixture_data, run, tmp_path):
    with pytest.raises(UserInputError, match=r"nowhere: no such run directory \(expected one"):
        predict_run(tmp_path / "nowhere")
    with pytest.raises(UserInputError, match=r"empty/recipe.yaml: not found; .* is not a run dir"):
        (tmp_path / "empty").mkdir()
        predict_run(tmp_path / "empty")
    shutil.rmtree(run / "model")
    with pytest.raises(UserInputError, match=r"run/model: not found; the run has not finished"):
        predict_run(run)
    assert not (run / "predictions.json").exists()


def test_bad_arguments_change_nothing(fixture_data, run):
    for arguments, message in [
        ({"split": "valid"}, "--split: unknown split 'valid'; expected test, val, train"),
        ({"mc_samples": 0}, "--mc-samples: expected an integer >= 1, got 0"),
        ({"batch_size": -1}, "--batch-size: expected an integer >= 1, got -1"),
    ]:
        with pytest.raises(UserInputError, match=message):
            predict_run(run, **arguments)
    assert not (run / "predictions.json").exists()


def test_absent_split_names_split(fixture_data, run):
    # As if trained without a validation part; the model does not depend on it.
    recipe = yaml.safe_load((run / "recipe.yaml").read_text())
    recipe["data"]["validation"] = 0
    (run / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    with pytest.raises(UserInputError, match=r"--split val: the run's data has no validation"):
        predict_run(run, split="val")
