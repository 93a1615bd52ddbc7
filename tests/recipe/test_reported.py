"""What a recipe's runs report, and monitors checked against it when the recipe is resolved."""

from __future__ import annotations

import copy
import time
from typing import Any

import pytest
import yaml

from tricklab.cli.main import main
from tricklab.errors import UserInputError
from tricklab.recipe import recipe_from_dict
from tricklab.recipe.reported import logged_keys, result_metric_names
from tricklab.recipe.study import load_study
from tricklab.train.metrics import metrics

from ..conftest import REPOSITORY, TINY_RECIPE

LOGGED = "loss, accuracy, val_loss, val_accuracy"


def recipe(**train: Any) -> dict[str, Any]:
    """The tests' tiny recipe (500 validation images, accuracy) with `train` changes."""
    document = copy.deepcopy(TINY_RECIPE)
    document["train"].update(train)
    return document


def without_validation(document: dict[str, Any]) -> dict[str, Any]:
    document["data"]["validation"] = 0
    return document


def refusal(document: dict[str, Any]) -> str:
    with pytest.raises(UserInputError) as raised:
        recipe_from_dict(document)
    message = str(raised.value)
    assert "\n" not in message
    return message


# --- the names a run reports ---------------------------------------------------------------


def test_logged_keys_follow_the_trainer():
    assert logged_keys(recipe_from_dict(recipe())) == ["loss", "accuracy", "val_loss",
                                                       "val_accuracy"]
    assert logged_keys(recipe_from_dict(without_validation(recipe()))) == ["loss", "accuracy"]
    assert logged_keys(recipe_from_dict(recipe(metrics=[]))) == ["loss", "val_loss"]
    # a metric listed twice is logged once, under its registry name
    twice = recipe(metrics=["accuracy", {"accuracy": {"threshold": 0.7}}])
    assert logged_keys(recipe_from_dict(twice)) == ["loss", "accuracy", "val_loss",
                                                    "val_accuracy"]


def test_regularizers_add_their_penalty_to_the_training_logs_only():
    document = recipe()
    document["model"]["layers"][1]["dense"]["kernel_regularizer"] = {"l2": {"l2": 0.01}}
    assert logged_keys(recipe_from_dict(document)) == [
        "loss", "regularization_loss", "accuracy", "val_loss", "val_accuracy"]
    assert "train_regularization_loss" not in result_metric_names(recipe_from_dict(document))


def test_result_metric_names_follow_the_final_evaluation():
    assert result_metric_names(recipe_from_dict(recipe())) == [
        "train_loss", "train_accuracy", "val_loss", "val_accuracy", "test_loss", "test_accuracy"]
    assert result_metric_names(recipe_from_dict(without_validation(recipe(metrics=[])))) == [
        "train_loss", "test_loss"]


def test_an_autoencoder_reports_the_same_names():
    path = REPOSITORY / "recipes" / "autoencoders" / "dense.yaml"
    autoencoder = recipe_from_dict(yaml.safe_load(path.read_text()))
    assert autoencoder.train.target == "inputs"
    assert logged_keys(autoencoder) == ["loss", "val_loss"]
    assert result_metric_names(autoencoder) == ["train_loss", "val_loss", "test_loss"]


# --- monitors --------------------------------------------------------------------------------


@pytest.mark.parametrize(("document", "message"), [
    (recipe(callbacks=[{"early_stopping": {"monitor": "val_acuracy"}}]),
     "train.callbacks.0.early_stopping.monitor: 'val_acuracy' is not logged by this run; did "
     f"you mean 'val_accuracy'? Logged: {LOGGED}"),
    (recipe(callbacks=["early_stopping", {"early_stopping": {"monitor": "f1"}}]),
     f"train.callbacks.1.early_stopping.monitor: 'f1' is not logged by this run; logged: {LOGGED}"),
    (recipe(metrics=[], callbacks=[{"early_stopping": {"monitor": "val_accuracy"}}]),
     "train.callbacks.0.early_stopping.monitor: 'val_accuracy' is not logged by this run, as "
     "train.metrics does not list accuracy; logged: loss, val_loss"),
    (recipe(callbacks=[{"early_stopping": {"monitor": "regularization_loss"}}]),
     "train.callbacks.0.early_stopping.monitor: 'regularization_loss' is not logged by this "
     f"run; logged: {LOGGED}"),
    (recipe(schedule={"performance": {"monitor": "val_los"}}),
     "train.schedule.performance.monitor: 'val_los' is not logged by this run; did you mean "
     f"'val_loss'? Logged: {LOGGED}"),
    (recipe(epochs=None, phases=[{"epochs": 1}, {"epochs": 1, "schedule": {
        "performance": {"monitor": "acuracy"}}}]),
     "train.phases.1.schedule.performance.monitor: 'acuracy' is not logged by this run; did you "
     f"mean 'accuracy'? Logged: {LOGGED}"),
    (without_validation(recipe(callbacks=[{"early_stopping": {"monitor": "val_acuracy"}}])),
     "train.callbacks.0.early_stopping.monitor: 'val_acuracy' is not logged by this run; "
     "logged: loss, accuracy"),
    (without_validation(recipe(metrics=[], callbacks=[
        {"early_stopping": {"monitor": "val_accuracy"}}])),
     "train.callbacks.0.early_stopping.monitor: 'val_accuracy' is not logged by this run; "
     "logged: loss"),
    (recipe(metrics=[], callbacks=[{"early_stopping": {"monitor": "accuracy"}}]),
     "train.callbacks.0.early_stopping.monitor: 'accuracy' is not logged by this run, as "
     "train.metrics does not list accuracy; logged: loss, val_loss"),
], ids=["typo", "unknown", "metric-not-listed", "no-regularizer", "schedule", "phase-schedule",
        "no-validation-typo",
        "no-validation-nor-metric", "train-metric-not-listed"])
def test_a_monitor_must_be_logged_by_the_run(document, message):
    if document["train"].get("epochs") is None:
        del document["train"]["epochs"]
    assert refusal(document) == message


def test_every_logged_key_may_be_monitored_and_nothing_else():
    for key in LOGGED.split(", "):
        recipe_from_dict(recipe(callbacks=[{"early_stopping": {"monitor": key}}],
                                schedule={"performance": {"monitor": key}}))
    recipe_from_dict(recipe(schedule="performance", metrics=[]))  # its default: val_loss
    # The trainer's `lr` and `time_s` describe the run, not the model: no measure to watch.
    for key in ("lr", "time_s"):
        assert refusal(recipe(callbacks=[{"early_stopping": {"monitor": key}}])) == (
            f"train.callbacks.0.early_stopping.monitor: '{key}' is not logged by this run; "
            f"logged: {LOGGED}")


def test_the_cli_refuses_a_monitor_typo_before_training(fixture_data, tmp_path, capsys):
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe(epochs=50, callbacks=[
        {"early_stopping": {"monitor": "val_acuracy"}}])))
    started = time.perf_counter()
    code = main(["train", str(path), "--out", str(tmp_path / "run")])
    assert code == 2
    assert capsys.readouterr().err == (
        "error: train.callbacks.0.early_stopping.monitor: 'val_acuracy' is not logged by this "
        f"run; did you mean 'val_accuracy'? Logged: {LOGGED}\n")
    assert not (tmp_path / "run").exists()
    assert time.perf_counter() - started < 5.0  # 50 epochs were asked for: none ran


# --- every registered metric is reported, and studies compare it in its direction -------------


def test_every_registered_metric_is_logged_and_reported_under_its_name():
    names = metrics.names()
    document = recipe(metrics=names)
    assert logged_keys(recipe_from_dict(document)) == [
        "loss", *names, "val_loss", *(f"val_{name}" for name in names)]
    assert result_metric_names(recipe_from_dict(document)) == [
        f"{split}_{key}" for split in ("train", "val", "test") for key in ["loss", *names]]


def _regression_study(tmp_path, metric: str, listed: list[str]):
    base = recipe(loss="mse", metrics=listed)
    base["model"]["layers"][-1] = {"dense": {"units": 1}}
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump({
        "name": "errors", "base": base, "seeds": 2, "variants": {"plain": {}},
        "metric": metric, "target": {"metric": "val_rmse", "value": 0.5},
    }))
    return load_study(path)


def test_a_study_compares_an_error_metric_lower_is_better(isolated, tmp_path):
    study = _regression_study(tmp_path, "test_mae", ["mae", "rmse"])
    assert study.spec["metric"] == "test_mae"
    assert study.spec["higher_is_better"] is False
    assert study.spec["target"] == {"metric": "val_rmse", "value": 0.5}
    for metric, higher in (("test_auc", True), ("val_precision", True), ("test_rmse", False)):
        listed = ["rmse", metric.split("_", 1)[1]]
        assert _regression_study(tmp_path, metric, listed).spec["higher_is_better"] is higher


def test_a_study_metric_the_recipe_does_not_list_is_refused(isolated, tmp_path):
    with pytest.raises(UserInputError) as raised:
        _regression_study(tmp_path, "test_mae", ["rmse"])
    message = str(raised.value)
    assert "'test_mae'" in message and "train.metrics does not list mae" in message
    assert "\n" not in message
