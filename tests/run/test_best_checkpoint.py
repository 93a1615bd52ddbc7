"""`model_best/`, `result.json`'s `best` and `predict --best` (Keras's `save_best_only`)."""

from __future__ import annotations

import copy
import csv
import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tricklab.errors import UserInputError
from tricklab.recipe import recipe_from_dict
from tricklab.run import train_recipe, train_seed_group
from tricklab.run.predict import predict_run
from tricklab.transfer import load_model

from ..conftest import TINY_RECIPE


def worsening(epochs: int = 3, **train) -> dict:
    """TINY_RECIPE learning for two epochs, then ruined by a learning rate of 2, then frozen.

    Its validation loss is lowest at epoch 2 and never improves after: epoch 3's
    rate wrecks the weights (about 10% validation accuracy) and a rate of 0 keeps them so.
    """
    document = copy.deepcopy(TINY_RECIPE)
    document["train"].update(
        epochs=epochs, optimizer={"name": "sgd", "learning_rate": 0.05},
        schedule={"piecewise_constant": {"boundaries": [1, 2], "values": [0.05, 2.0, 0.0],
                                         "per": "epoch"}},
        **train,
    )
    return document


def train(document: dict, run: Path, **options):
    return train_recipe(recipe_from_dict(document), out=run, progress="none", **options)


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(folder / "weights.safetensors")


def checkpoint(run: Path, epoch: int) -> dict[str, torch.Tensor]:
    return torch.load(run / "checkpoints" / f"epoch_{epoch:04d}.pt", weights_only=True)["model"]


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[key], b[key]) for key in a)


def history_rows(run: Path) -> list[dict[str, float]]:
    with (run / "history.csv").open() as file:
        return [{key: float(value) for key, value in row.items()} for row in csv.DictReader(file)]


def test_model_best_holds_the_best_epoch_named_by_result_json(fixture_data, tmp_path):
    run = tmp_path / "run"
    result = train(worsening(), run).result
    rows = history_rows(run)
    lowest = min(rows, key=lambda row: row["val_loss"])
    assert lowest["epoch"] == 2 < result["epochs_run"] == 3
    metrics = {key: value for key, value in lowest.items() if key not in ("epoch", "lr", "time_s")}
    assert result["best"] == {"epoch": 2, "monitor": "val_loss", "value": lowest["val_loss"],
                              "metrics": metrics, "saved": True}
    assert result["best"]["metrics"]["val_loss"] == pytest.approx(lowest["val_loss"])
    assert same(weights(run / "model_best"), checkpoint(run, 2))
    assert same(weights(run / "model"), checkpoint(run, 3))
    assert not same(weights(run / "model_best"), weights(run / "model"))
    model = load_model(run / "model_best")
    assert model.preprocessing is not None
    assert not (run / "model_best" / "optimizer.json").exists()

    best = predict_run(run, split="val", best=True)
    assert best["model"] == "model_best"
    assert best["accuracy"] == pytest.approx(lowest["val_accuracy"], abs=1e-9)
    final = predict_run(run, split="val")
    assert final["model"] == "model"
    assert final["accuracy"] == pytest.approx(result["metrics"]["val_accuracy"], abs=1e-9)
    assert final["accuracy"] < best["accuracy"] - 0.3


@pytest.mark.parametrize(("change", "monitor"), [
    ({"train": {"best_monitor": "val_accuracy"}}, "val_accuracy"),
    ({"data": {"validation": 0}}, "loss"),  # the default val_loss, without validation data
])
def test_another_monitor_is_watched_in_its_own_direction(fixture_data, tmp_path, change, monitor):
    document = worsening()
    for section, fields in change.items():
        document[section].update(fields)
    run = tmp_path / "run"
    result = train(document, run).result
    values = result["history"][monitor]
    pick = max if monitor == "val_accuracy" else min
    epoch = values.index(pick(values)) + 1
    assert result["best"]["monitor"] == monitor and result["best"]["epoch"] == epoch == 2
    assert result["best"]["value"] == values[epoch - 1]
    assert same(weights(run / "model_best"), checkpoint(run, epoch))


def test_resume_keeps_the_best_from_before(fixture_data, tmp_path):
    run = tmp_path / "run"
    train(worsening(2), run)
    second = weights(run / "model")
    # The best epoch is the checkpoint resumed from, then one two epochs back, whose own
    # checkpoint is pruned while the run goes on.
    for epochs in (3, 5):
        result = train(worsening(epochs), run, resume=True).result
        assert (result["best"]["epoch"], result["best"]["saved"]) == (2, True)
        assert same(weights(run / "model_best"), second)
    assert result["resumed_from_epoch"] == 3
    assert not (run / "checkpoints" / "epoch_0002.pt").exists()
    assert same(torch.load(run / "checkpoints" / "best.pt", weights_only=True)["model"], second)


@pytest.mark.parametrize(("min_delta", "epoch"), [(0.0, 2), (0.5, 1)])
def test_early_stopping_restores_the_epoch_model_best_holds(
    fixture_data, tmp_path, min_delta, epoch
):
    stopping = {"early_stopping": {"patience": 1, "min_delta": min_delta,
                                   "restore_best_weights": True}}
    run = tmp_path / "run"
    result = train(worsening(6, callbacks=[stopping]), run).result
    assert result["status"] == "stopped_early" and result["epochs_run"] == epoch + 1
    assert result["best"]["epoch"] == epoch
    assert same(weights(run / "model_best"), weights(run / "model"))


def test_a_run_that_never_improves_has_no_best_model(fixture_data, tmp_path):
    document = copy.deepcopy(TINY_RECIPE)
    document["data"]["scale"] = "none"
    document["train"]["optimizer"]["learning_rate"] = 1e20
    run = tmp_path / "run"
    assert train(document, run).result["best"] == {
        "epoch": None, "monitor": "val_loss", "value": None, "metrics": {}, "saved": False,
        "note": "no epoch had a finite val_loss"}
    assert not (run / "model_best").exists()
    with pytest.raises(UserInputError, match=r"^--best: .*model_best not found \(no epoch had "
                                             r"a finite val_loss\); without --best"):
        predict_run(run, best=True)


def test_batched_seeds_name_their_best_epoch_and_say_why_no_model_is_kept(fixture_data, tmp_path):
    document = worsening()
    recipes = [recipe_from_dict({**document, "name": f"s{seed}", "seed": seed})
               for seed in (1, 2)]
    outcomes = train_seed_group(recipes, [tmp_path / "s1", tmp_path / "s2"])
    for outcome in outcomes:
        best, history = outcome.result["best"], outcome.result["history"]
        assert best["epoch"] == history["val_loss"].index(min(history["val_loss"])) + 1
        assert best["saved"] is False and "no model_best/ was written" in best["note"]
        assert not (outcome.run_dir / "model_best").exists()


@pytest.mark.parametrize(("monitor", "message"), [
    ("val_acuracy", "train.best_monitor: 'val_acuracy' is not logged by this run; did you mean "
                    "'val_accuracy'?"),
    ("val_auc", "train.best_monitor: 'val_auc' is not logged by this run, as train.metrics does "
                "not list auc"),
])
def test_a_monitor_the_run_does_not_log_is_refused_before_training(
    fixture_data, tmp_path, monitor, message
):
    document = worsening(best_monitor=monitor)
    with pytest.raises(UserInputError, match="^" + message.replace("?", r"\?")):
        recipe_from_dict(document)
    no_validation = worsening(best_monitor="val_accuracy")
    no_validation["data"]["validation"] = 0
    with pytest.raises(UserInputError, match=r"^train\.best_monitor: 'val_accuracy' needs a "
                                             r"validation set, but data\.validation is 0"):
        recipe_from_dict(no_validation)


def test_predict_best_from_the_command_line(fixture_data, tmp_path, capsys):
    from tricklab.cli.main import main

    run = tmp_path / "run"
    train(worsening(), run)
    assert main(["predict", str(run), "--best", "--split", "val", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["model"] == "model_best" and summary["accuracy"] > 0.5
    shutil.rmtree(run / "model_best")
    (run / "predictions.json").unlink()
    assert main(["predict", str(run), "--best"]) == 2
    shown = capsys.readouterr()
    assert not shown.out and shown.err.splitlines() == [
        f"error: --best: {run / 'model_best'} not found (it was removed after the run saved "
        "epoch 2's model there); without --best, predict uses the final model in model/"]
    assert not (run / "predictions.json").exists()
