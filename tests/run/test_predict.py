"""`predict_run`: a finished run's MC dropout predictions, its JSON and plot, and its errors."""

from __future__ import annotations

import copy
import itertools
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.datasets import load_breast_cancer, load_diabetes
from sklearn.metrics import (
    confusion_matrix,
    mean_absolute_error,
    mean_squared_error,
    precision_recall_fscore_support,
)

from tricklab.data import sources
from tricklab.errors import UserInputError
from tricklab.recipe import recipe_from_dict
from tricklab.run import train_recipe
from tricklab.run.predict import predict_run
from tricklab.transfer import load_model, predict_raw

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
        with pytest.raises(UserInputError, match=re.escape(message)):
            predict_run(run, **arguments)
    assert not (run / "predictions.json").exists()


def test_absent_split_names_split(fixture_data, run):
    # As if trained without a validation part; the model does not depend on it.
    recipe = yaml.safe_load((run / "recipe.yaml").read_text())
    recipe["data"]["validation"] = 0
    (run / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    with pytest.raises(UserInputError, match=r"--split val: the run's data has no validation"):
        predict_run(run, split="val")


# --- new raw inputs (issue 14): tables, images, arrays prepared as in training ---


def cancer_run(folder: Path) -> Path:
    """Breast cancer: trained on its first 450 rows (CSV), the other 119 kept as new inputs."""
    frame = load_breast_cancer(as_frame=True).frame
    frame.iloc[:450].to_csv(folder / "train.csv", index=False)
    frame.iloc[450:].to_csv(folder / "new.csv", index=False)
    recipe = {"name": "cancer", "seed": 0,
              "data": {"dataset": "csv", "path": str(folder / "train.csv"), "target": "target"},
              "model": {"layers": [{"dense": {"units": 16, "activation": "relu"}},
                                   {"dropout": {"rate": 0.2}},
                                   {"dense": {"units": 2, "activation": "softmax"}}]},
              "train": {"optimizer": {"name": "adam"}, "epochs": 8, "batch_size": 32}}
    return train_recipe(recipe_from_dict(recipe), out=folder / "run", progress="none").run_dir


@pytest.fixture(scope="module")
def cancer(tmp_path_factory) -> Path:
    return cancer_run(tmp_path_factory.mktemp("cancer"))


def test_a_labelled_csv_gets_rows_a_confusion_matrix_and_per_class_scores(cancer, tmp_path):
    run = Path(shutil.copytree(cancer, tmp_path / "run"))
    summary = predict_run(run, inputs=cancer.parent / "new.csv")
    rows = pd.read_csv(run / "predictions.csv", dtype={"label": str, "predicted": str})
    assert list(rows.columns) == ["id", "label", "predicted", "probability_0", "probability_1"]
    assert list(rows["id"]) == list(range(119)) and summary["count"] == 119
    truth = load_breast_cancer().target[450:]
    assert list(rows["label"]) == [str(label) for label in truth]
    assert summary["accuracy"] == pytest.approx((rows["label"] == rows["predicted"]).mean())
    assert summary["accuracy"] > 0.9
    # Scored independently by scikit-learn from the written rows.
    assert summary["confusion_matrix"] == confusion_matrix(rows["label"], rows["predicted"],
                                                           labels=["0", "1"]).tolist()
    precision, recall, _, support = precision_recall_fscore_support(
        rows["label"], rows["predicted"], labels=["0", "1"], zero_division=np.nan)
    for index, name in enumerate(["0", "1"]):
        scores = summary["per_class"][name]
        assert scores["precision"] == pytest.approx(precision[index])
        assert scores["recall"] == pytest.approx(recall[index])
        assert scores["support"] == support[index]
    assert (run / "predictions_confusion_matrix.png").read_bytes().startswith(PNG_SIGNATURE)
    assert json.loads((run / "predictions.json").read_text()) == summary
    # The same model through the Python API, handed the raw rows as a DataFrame.
    model = load_model(run / "model")
    table = predict_raw(model, pd.read_csv(cancer.parent / "new.csv").drop(columns="target"))
    assert np.allclose(table["probability_1"], rows["probability_1"], atol=1e-6)
    assert "label" not in table.columns


def test_mc_dropout_adds_the_spread_and_entropy_of_each_sample(cancer):
    model = load_model(cancer / "model")
    table = predict_raw(model, cancer.parent / "new.csv", mc_samples=8, seed=3)
    assert list(table.columns)[-2:] == ["std", "entropy"]
    assert (table["std"] > 0).any() and (table["entropy"] > 0).all()
    probabilities = table[["probability_0", "probability_1"]].to_numpy()
    entropy = -(probabilities * np.log(probabilities)).sum(axis=1)
    assert np.allclose(table["entropy"], entropy, atol=1e-9)


def test_outputs_never_replace_what_tricklab_did_not_write(cancer, tmp_path):
    run = Path(shutil.copytree(cancer, tmp_path / "run"))
    new = cancer.parent / "new.csv"
    mine = tmp_path / "mine.csv"
    mine.write_text("a,b\n1,2\n")
    (tmp_path / "report.json").write_text("{}")
    for output, message in [
        (mine, "mine.csv exists and is not a predictions file tricklab wrote"),
        (new, "would replace the input"),
        (tmp_path / "report.csv", "report.json (the summary beside report.csv) exists"),
        (tmp_path / "scores.txt", "must end in .csv"),
        (tmp_path / "absent" / "scores.csv", "folder not found"),
    ]:
        with pytest.raises(UserInputError, match=re.escape(message)):
            predict_run(run, inputs=new, output=output)
    assert mine.read_text() == "a,b\n1,2\n" and (tmp_path / "report.json").read_text() == "{}"
    # A file tricklab wrote is replaced by the next prediction.
    predict_run(run, inputs=new, output=tmp_path / "scores.csv")
    predict_run(run, inputs=new, output=tmp_path / "scores.csv", mc_samples=2)
    assert json.loads((tmp_path / "scores.json").read_text())["mc_samples"] == 2


def test_inputs_that_do_not_match_change_nothing(cancer, tmp_path):
    run = Path(shutil.copytree(cancer, tmp_path / "run"))
    frame = pd.read_csv(cancer.parent / "new.csv")
    frame.drop(columns="mean radius").to_csv(tmp_path / "short.csv", index=False)
    with pytest.raises(UserInputError, match="no column 'mean radius'; expected the training"):
        predict_run(run, inputs=tmp_path / "short.csv")
    assert not (run / "predictions.csv").exists() and not (run / "predictions.json").exists()
    (run / "model" / "preprocessing.json").unlink()
    with pytest.raises(UserInputError, match=r"has no preprocessing\.json"):
        predict_run(run, inputs=cancer.parent / "new.csv")


def test_a_regression_gets_values_and_its_errors(tmp_path):
    frame = load_diabetes(as_frame=True).frame
    frame.iloc[:400].to_csv(tmp_path / "train.csv", index=False)
    frame.iloc[400:].to_csv(tmp_path / "new.csv", index=False)
    recipe = {"name": "diabetes", "seed": 0,
              "data": {"dataset": "csv", "path": str(tmp_path / "train.csv"), "target": "target",
                       "task": "regression"},
              "model": {"layers": [{"dense": {"units": 32, "activation": "relu"}},
                                   {"dense": {"units": 1}}]},
              "train": {"loss": "mse", "metrics": [], "epochs": 3, "batch_size": 32,
                        "optimizer": {"name": "adam", "learning_rate": 0.01}}}
    run = train_recipe(recipe_from_dict(recipe), out=tmp_path / "run", progress="none").run_dir
    summary = predict_run(run, inputs=tmp_path / "new.csv")
    rows = pd.read_csv(run / "predictions.csv")
    assert list(rows.columns) == ["id", "label", "predicted"]
    assert summary["mae"] == pytest.approx(mean_absolute_error(rows["label"], rows["predicted"]))
    assert summary["rmse"] == pytest.approx(
        np.sqrt(mean_squared_error(rows["label"], rows["predicted"])))
    assert "per_class" not in summary and not (run / "predictions_confusion_matrix.png").exists()


def test_split_predictions_are_rows_too(fixture_data, run):
    summary = predict_run(run, split="test")
    rows = pd.read_csv(run / "predictions.csv")
    assert len(rows) == summary["count"] == 500
    assert summary["accuracy"] == pytest.approx((rows["label"] == rows["predicted"]).mean())
    assert sum(sum(row) for row in summary["confusion_matrix"]) == 500
    assert set(summary["per_class"]) == set(rows.columns[3:].str.removeprefix("probability_"))
