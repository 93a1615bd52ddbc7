"""`tricklab tricks`: the variants of a recipe, what is skipped and why, and the recommendation."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
import yaml
from sklearn.datasets import load_wine

from tricklab.errors import UserInputError
from tricklab.recipe import load_recipe, recipe_from_dict
from tricklab.recipe.load import read_yaml
from tricklab.recipe.study import load_study
from tricklab.run import build
from tricklab.run.study_folder import STORE_NAME
from tricklab.run.trick_variants import FAMILIES, TRICKS, Subject
from tricklab.run.tricks import (
    RECOMMENDED_FILE,
    STUDY_FILE,
    parse_families,
    plan_tricks,
    recommend,
    run_tricks,
)
from tricklab.study.results import load_results
from tricklab.study.store import LearningRateChoice, RunRecord, StudyStore

from ..conftest import REPOSITORY

RECIPES = REPOSITORY / "recipes"
NO_RNN = "the model has no recurrent layers (the chapter clips gradients for those)"
ALREADY = "the recipe already uses it"
NO_HIDDEN = ("the model has no hidden dense or convolutional layers (recurrent layers keep "
             "their own tanh and sigmoid)")


def write_recipe(folder: Path, document: dict, name: str = "recipe.yaml") -> Path:
    path = folder / name
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def rnn_without_clipping(folder: Path) -> Path:
    document = read_yaml(RECIPES / "architectures" / "rnn_fashion_mnist.yaml")
    document["train"]["optimizer"].pop("global_clipnorm")
    return write_recipe(folder, document, "rnn.yaml")


def wine_recipe(folder: Path) -> Path:
    load_wine(as_frame=True).frame.to_csv(folder / "wine.csv", index=False)
    return write_recipe(folder, {
        "name": "wine", "data": {"dataset": "csv", "path": str(folder / "wine.csv"),
                                 "target": "target"},
        "model": {"layers": [{"dense": {"units": 32, "activation": "relu"}},
                             {"dense": {"units": 3, "activation": "softmax"}}]},
        "train": {"optimizer": "adam", "epochs": 20, "metrics": ["accuracy"]},
    }, "wine.yaml")


KINDS = {
    "dense": lambda folder: RECIPES / "chapter11" / "leaky_relu_he.yaml",
    "convolutional": lambda folder: RECIPES / "architectures" / "lenet5.yaml",
    "recurrent": rnn_without_clipping,
    "own-data": wine_recipe,
}
EXPECTED = {
    "dense": {"he_leaky_relu": ALREADY, "clip_norm": NO_RNN},
    "convolutional": {
        "he_relu": ALREADY, "self_normalizing": "the model has convolutions (it needs a plain "
        "dense stack)", "clip_norm": NO_RNN, "momentum": ALREADY, "one_cycle": ALREADY},
    "recurrent": {
        "he_relu": NO_HIDDEN, "he_elu": NO_HIDDEN, "he_leaky_relu": NO_HIDDEN,
        "self_normalizing": "the model has recurrent layers (it needs a plain dense stack)",
        "batch_norm": f"{NO_HIDDEN}; the chapter gives recurrent nets layer normalization",
        "adam": ALREADY, "max_norm": "the model has no hidden dense layers"},
    "own-data": {"clip_norm": NO_RNN, "adam": ALREADY},
}


@pytest.mark.parametrize("kind", KINDS)
def test_each_model_kind_gets_the_tricks_that_apply_and_a_reason_for_the_rest(
    fixture_data, tmp_path, kind
):
    plan = plan_tricks(KINDS[kind](tmp_path))
    assert plan.skipped == EXPECTED[kind]
    assert [v.name for v in plan.variants] == [
        trick.name for trick in TRICKS if trick.name not in EXPECTED[kind]]
    assert plan.subject.kind == {"own-data": "dense"}.get(kind, kind)
    assert all(v.description for v in plan.variants)


@pytest.mark.parametrize("kind", KINDS)
def test_every_variant_loads_as_a_study_and_builds_a_model_that_runs(
    fixture_data, tmp_path, kind
):
    plan = plan_tricks(KINDS[kind](tmp_path))
    folder = tmp_path / "study"
    folder.mkdir()
    (folder / STUDY_FILE).write_text(plan.study_text(folder))
    study = load_study(folder / STUDY_FILE)
    assert list(study.spec["variants"]) == ["baseline", *(v.name for v in plan.variants)]
    baseline = study.spec["variants"]["baseline"]["recipe"]
    unchanged = {"name": None, "seed": None}
    assert {**baseline, **unchanged} == {**load_recipe(plan.recipe_path).to_dict(), **unchanged}
    for name, variant in study.spec["variants"].items():
        recipe = recipe_from_dict(variant["recipe"])
        model, _ = build(recipe)
        shape = [2, *recipe.model.input_shape]
        outputs = model(torch.zeros(shape))
        assert torch.isfinite(outputs).all(), name
        assert name == "baseline" or variant["recipe"] != baseline, name


def test_the_changes_are_those_the_chapter_writes(fixture_data):
    plan = plan_tricks(RECIPES / "chapter11" / "leaky_relu_he.yaml")
    sets = {v.name: v.change.set for v in plan.variants}
    # Batch norm between each hidden dense layer (now without bias) and its activation.
    assert sets["batch_norm"]["model.layers"][1:5] == [
        {"dense": {"units": 300, "kernel_initializer": "he_normal", "use_bias": False}},
        {"batch_norm": {}}, {"leaky_relu": {}},
        {"dense": {"units": 100, "kernel_initializer": "he_normal", "use_bias": False}}]
    # The activation layers stay where they were, changed.
    assert sets["he_elu"]["model.layers"][2] == {"elu": {}}
    selu = sets["self_normalizing"]
    assert selu["data.scale"] == "standardize"
    assert selu["model.layers"][1]["dense"]["kernel_initializer"] == "lecun_normal"
    assert selu["model.layers"][2] == {"selu": {}}
    assert sets["nesterov"]["train.optimizer"] == {
        "name": "sgd", "learning_rate": 0.001, "momentum": 0.9, "nesterov": True}
    assert sets["adam"]["train.optimizer"] == {"name": "adam", "learning_rate": 0.001}
    assert sets["one_cycle"]["train.schedule"] == {"one_cycle": {"max_learning_rate": 0.01}}
    assert sets["exponential_decay"]["train.schedule"] == {
        "exponential": {"decay_steps": 10, "decay_rate": 0.1, "per": "epoch"}}
    assert sets["performance"]["train.schedule"] == {"performance": {"factor": 0.5,
                                                                     "patience": 2}}
    assert sets["early_stopping"]["train.callbacks"] == [
        {"early_stopping": {"patience": 2, "restore_best_weights": True}}]
    assert [entry for entry in sets["dropout"]["model.layers"] if "dropout" in entry] == [
        {"dropout": {"rate": 0.2}}] * 3
    assert sets["max_norm"]["model.layers"][5]["dense"].get("kernel_constraint") is None
    preset = sets["default_dnn"]
    assert preset["train.optimizer"] == {"name": "nadam"}
    assert [next(iter(entry)) for entry in preset["model.layers"]] == [
        "flatten", "dense", "dense", "dense"]
    assert preset["model.layers"][1]["dense"]["activation"] == "elu"
    # The study searches every optimizer's rate, the recipe's own among them.
    assert [v.name for v in plan.variants if v.searched] == [
        "momentum", "nesterov", "rmsprop", "adam", "nadam"]
    assert plan.grid == [0.0001, 0.001, 0.01] and plan.search_metric == "val_accuracy"


def test_an_optimizer_change_keeps_the_gradient_clipping(fixture_data):
    plan = plan_tricks(RECIPES / "architectures" / "rnn_fashion_mnist.yaml")
    sets = {v.name: v.change.set for v in plan.variants}
    assert sets["nadam"]["train.optimizer"] == {
        "name": "nadam", "learning_rate": 0.001, "global_clipnorm": 1.0}
    assert plan.skipped["clip_norm"] == "the recipe already clips gradients (global_clipnorm 1)"


@pytest.mark.parametrize(("change", "skipped"), [
    ({"data": {"dataset": "fashion_mnist", "validation": 0}}, {
        "performance": "it watches val_loss, but the recipe holds out no validation data",
        "early_stopping": "it watches val_loss, but the recipe holds out no validation data"}),
    ({"train": {"phases": [{"epochs": 1}, {"epochs": 2}]}}, {
        name: "the recipe trains in phases (train.phases), each with its own optimizer"
        for name in ("momentum", "nesterov", "rmsprop", "adam", "nadam", "default_dnn")}),
    ({"preset": "self_normalizing"}, {
        "batch_norm": "the model is a self-normalizing net (SELU), which batch normalization "
                      "defeats"}),
    ({"model": {"layers": ["flatten", {"dense": {"units": 10, "activation": "softmax"}}]}}, {
        name: NO_HIDDEN for name in ("he_relu", "he_elu", "he_leaky_relu")}),
], ids=["no-validation", "phases", "selu-preset", "no-hidden-layer"])
def test_reasons_for_what_does_not_apply(fixture_data, tmp_path, change, skipped):
    document = {
        "name": "mlp", "data": {"dataset": "fashion_mnist", "validation": 500},
        "model": {"layers": ["flatten", {"dense": {"units": 8, "activation": "relu"}},
                             {"dense": {"units": 10, "activation": "softmax"}}]},
        "train": {"optimizer": {"name": "sgd"}, "metrics": ["accuracy"]},
    }
    for key, value in change.items():
        document[key] = {**document.get(key, {}), **value} if key != "preset" else value
    plan = plan_tricks(write_recipe(tmp_path, document))
    assert {name: plan.skipped[name] for name in skipped} == skipped
    if "validation" in str(change):
        assert not any(v.searched for v in plan.variants) and plan.search_metric is None
        assert next(v for v in plan.variants if v.name == "adam").description.endswith(
            "learning rate 0.001")
        preset = next(v for v in plan.variants if v.name == "default_dnn")
        assert preset.change.set["train.callbacks"] == []
        assert preset.description.endswith("(no early stopping: no validation data)")


def test_a_regression_is_compared_on_its_loss(fixture_data):
    plan = plan_tricks(RECIPES / "architectures" / "adding_problem_lstm.yaml")
    assert (plan.metric, plan.search_metric) == ("test_loss", "val_loss")
    assert plan.skipped["self_normalizing"] == ("the model has recurrent layers (it needs a "
                                                "plain dense stack)")


def test_a_residual_network_keeps_its_blocks(fixture_data):
    plan = plan_tricks(RECIPES / "architectures" / "resnet_small.yaml")
    reason = "the model has residual layers, which tricks does not rewrite"
    assert {plan.skipped[name] for name in ("he_relu", "batch_norm", "l2")} == {reason}
    assert plan.skipped["max_norm"] == "the model has no hidden dense layers"
    # Dropout goes before the top-level dense layer, blocks untouched.
    dropout = next(v for v in plan.variants if v.name == "dropout").change.set["model.layers"]
    original = [next(iter(entry)) if isinstance(entry, dict) else entry
                for entry in read_yaml(plan.recipe_path)["model"]["layers"]]
    assert [next(iter(entry)) for entry in dropout] == [*original[:-1], "dropout", "dense"]


def test_families_select_and_unknown_ones_are_refused():
    assert parse_families(None) == FAMILIES
    assert parse_families(" optimizer,init_activation ,") == ("init_activation", "optimizer")
    with pytest.raises(UserInputError) as error:
        parse_families("optimizer,optimiser")
    assert str(error.value) == (
        "--families: 'optimiser' is not a family of tricks; did you mean 'optimizer'? Known: "
        "init_activation, batch_norm, clipping, optimizer, schedule, regularization, preset")
    with pytest.raises(UserInputError, match=r"^--families: no family given; known: "):
        parse_families(",")


def test_a_families_filter_and_quick(fixture_data):
    recipe = RECIPES / "chapter11" / "leaky_relu_he.yaml"
    plan = plan_tricks(recipe, ("schedule", "clipping"))
    assert [v.name for v in plan.variants] == ["one_cycle", "exponential_decay", "performance"]
    assert plan.skipped == {"clip_norm": NO_RNN}
    quick = plan_tricks(recipe, quick=True)
    assert [v.name for v in quick.variants] == [
        "he_relu", "batch_norm", "momentum", "one_cycle", "dropout", "default_dnn"]
    assert quick.skipped["adam"] == "--quick tries one variant per family: momentum here"
    with pytest.raises(UserInputError) as error:
        plan_tricks(recipe, ("clipping",))
    assert str(error.value) == (f"{recipe}: no trick of clipping applies to this recipe "
                                f"(clip_norm: {NO_RNN})")


def test_bad_numbers_are_refused(fixture_data):
    recipe = RECIPES / "chapter11" / "leaky_relu_he.yaml"
    with pytest.raises(UserInputError, match=r"^--seeds: 0 is not a number of seeds from 1 to"):
        plan_tricks(recipe, seeds=0)
    with pytest.raises(UserInputError, match=r"^--epochs: 0 is not a number of epochs"):
        plan_tricks(recipe, epochs=0)


def hand_made_results(folder: Path, plan, values: dict[str, list[float]],
                      rates: dict[str, float] | None = None, unfinished: int = 0):
    """A study store as the runs would leave it, with these test accuracies per variant."""
    (folder / STUDY_FILE).write_text(plan.study_text(folder))
    study = load_study(folder / STUDY_FILE)
    store = StudyStore.create(folder / STORE_NAME, study.spec, study.fingerprint)
    for variant, scores in values.items():
        for seed, score in enumerate(scores):
            planned = study.plan(variant, seed)
            store.add_runs([RunRecord(planned.run_id, variant, seed, "main", planned.run_dir,
                                      planned.recipe)])
            if seed >= len(scores) - unfinished:
                continue
            store.record_result(planned.run_id, {
                "status": "completed", "metrics": {"test_accuracy": score}, "epochs_run": 1,
                "history": {"val_accuracy": [score]}, "wall_time_s": 1.0})
    for variant, rate in (rates or {}).items():
        store.set_learning_rate_choice(LearningRateChoice(variant, rate, "val_accuracy",
                                                          {rate: 0.9}))
    results = load_results(store, resamples=2000)
    store.close()
    return results


BASE = [0.80, 0.81, 0.79, 0.80, 0.805]


def shifted(by: float) -> list[float]:
    return [value + by for value in BASE]


def test_the_recommended_recipe_combines_the_detectable_winners(fixture_data, tmp_path):
    plan = plan_tricks(RECIPES / "chapter11" / "leaky_relu_he.yaml")
    results = hand_made_results(tmp_path, plan, {
        "baseline": BASE, "he_elu": shifted(0.02), "batch_norm": shifted(0.01),
        "adam": shifted(0.03), "nadam": shifted(0.04), "one_cycle": shifted(0.015),
        "dropout": shifted(0.012), "l2": shifted(-0.05), "max_norm": shifted(0.0),
        "default_dnn": shifted(0.035),
    }, rates={"nadam": 0.003, "adam": 0.001})
    recommendation = recommend(plan, results)
    # Nadam beats Adam on the optimizer; the preset, better than He+ELU, loses its optimizer
    # to Nadam and is left out whole.
    assert [name for name, *_ in recommendation.applied] == [
        "he_elu", "batch_norm", "nadam", "one_cycle", "dropout"]
    assert recommendation.left_out == {
        "default_dnn": "it changes the optimizer too, and nadam helped more",
        "adam": "it changes the optimizer too, and nadam helped more"}
    _, difference, low, high = recommendation.applied[2]
    assert difference == pytest.approx(0.04) and low > 0 and high > low
    document = recommendation.document
    recipe = recipe_from_dict(document)
    assert recipe.name == "leaky-relu-he-recommended"
    assert document["train"]["optimizer"] == {"name": "nadam", "learning_rate": 0.003}
    # 1cycle peaks at 10x the rate of the optimizer it was combined with.
    assert document["train"]["schedule"] == {"one_cycle": {"max_learning_rate": 0.03}}
    assert [next(iter(entry)) for entry in document["model"]["layers"]] == [
        "flatten", "dropout", "dense", "batch_norm", "elu", "dropout", "dense", "batch_norm",
        "elu", "dropout", "dense"]
    build(recipe)
    assert recommendation.lines[0] == ("Recommended: he_elu, batch_norm, nadam, one_cycle, "
                                       "dropout, applied together in recommended.yaml.")
    assert recommendation.lines[-1] == "Each helped on its own; together they were not tested."


def test_one_cycle_after_rmsprop_leaves_its_momentum_off(fixture_data, tmp_path):
    plan = plan_tricks(RECIPES / "chapter11" / "leaky_relu_he.yaml", ("optimizer", "schedule"))
    results = hand_made_results(tmp_path, plan, {
        "baseline": BASE, "rmsprop": shifted(0.03), "one_cycle": shifted(0.02)},
        rates={"rmsprop": 0.001})
    document = recommend(plan, results).document
    assert document["train"]["optimizer"] == {"name": "rmsprop", "learning_rate": 0.001}
    # Cycling would switch on a momentum of 0.85-0.95 that RMSprop runs without.
    assert document["train"]["schedule"] == {
        "one_cycle": {"max_learning_rate": 0.01, "cycle_momentum": False}}
    build(recipe_from_dict(document))


def test_nothing_detectable_recommends_the_recipe_unchanged(fixture_data, tmp_path):
    plan = plan_tricks(RECIPES / "chapter11" / "leaky_relu_he.yaml", ("optimizer",))
    results = hand_made_results(tmp_path, plan, {
        "baseline": BASE, "adam": shifted(0.0), "nadam": [0.7, 0.9, 0.8, 0.85, 0.75]})
    recommendation = recommend(plan, results)
    assert recommendation.applied == [] and recommendation.left_out == {}
    assert recommendation.document == read_yaml(plan.recipe_path)
    assert recommendation.lines == [
        "Nothing helped detectably: no variant's difference from the baseline in test_accuracy "
        "has a 95% interval excluding 0. recommended.yaml is the recipe unchanged."]


def test_unfinished_runs_recommend_nothing_yet(fixture_data, tmp_path):
    plan = plan_tricks(RECIPES / "chapter11" / "leaky_relu_he.yaml", ("optimizer",))
    results = hand_made_results(tmp_path, plan, {"baseline": BASE, "adam": shifted(0.05)},
                                unfinished=1)
    recommendation = recommend(plan, results)
    assert recommendation.document is None
    assert recommendation.lines == [
        "2 of 10 runs have not finished: run the same command again to finish the study; "
        f"{RECOMMENDED_FILE} is written once they have."]


def test_a_selu_net_gets_alpha_dropout_in_the_combination(fixture_data, tmp_path):
    plan = plan_tricks(RECIPES / "chapter11" / "leaky_relu_he.yaml",
                       ("init_activation", "regularization"))
    results = hand_made_results(tmp_path, plan, {
        "baseline": BASE, "self_normalizing": shifted(0.03), "dropout": shifted(0.02)})
    document = recommend(plan, results).document
    assert document["data"]["scale"] == "standardize"
    kinds = [next(iter(entry)) for entry in document["model"]["layers"]]
    assert kinds.count("alpha_dropout") == 3 and "dropout" not in kinds
    recipe_from_dict(document)


def test_an_out_folder_holding_another_study_or_files_is_refused_untouched(
    fixture_data, tmp_path
):
    plan = plan_tricks(RECIPES / "chapter11" / "leaky_relu_he.yaml", ("optimizer",))
    other = plan_tricks(RECIPES / "chapter11" / "leaky_relu_he.yaml", ("schedule",))
    folder = tmp_path / "out"
    folder.mkdir()
    hand_made_results(folder, other, {"baseline": BASE})
    before = sorted((path.name, path.stat().st_mtime_ns) for path in folder.iterdir())
    with pytest.raises(UserInputError) as error:
        run_tricks(plan, out=folder)
    assert str(error.value) == (f"--out: {folder} holds another study ('leaky-relu-he-tricks', "
                                "made from other variants, epochs, budget or metric); choose another "
                                "folder")
    assert sorted((path.name, path.stat().st_mtime_ns) for path in folder.iterdir()) == before
    files = tmp_path / "thesis"
    files.mkdir()
    (files / "chapter1.tex").write_text("x")
    with pytest.raises(UserInputError, match="is not empty and holds no study"):
        run_tricks(plan, out=files)
    assert [path.name for path in files.iterdir()] == ["chapter1.tex"]
    with pytest.raises(UserInputError, match=r"^--workers: 0 is not a number of processes"):
        run_tricks(plan, out=tmp_path / "new", workers=0)
    assert not (tmp_path / "new").exists()


def test_the_preset_on_a_deep_net_adds_batch_norm_after_each_hidden_layer(fixture_data):
    plan = plan_tricks(RECIPES / "doctor" / "deep_sigmoid_normal.yaml", ("preset",))
    (variant,) = plan.variants
    assert variant.description.endswith(", batch normalization (the net is deep)")
    layers = [next(iter(entry)) for entry in variant.change.set["model.layers"]]
    hidden = layers.count("dense") - 1
    assert hidden >= 10 and layers.count("batch_norm") == hidden


def test_the_subject_reads_layers_after_the_preset(fixture_data):
    document = read_yaml(RECIPES / "chapter11" / "default_dnn_preset.yaml")
    subject = Subject.of(copy.deepcopy(document))
    assert subject.layers[1] == {"dense": {"units": 300, "kernel_initializer": "he_normal",
                                           "activation": "elu"}}
    assert subject.hidden == [1, 2] and subject.activation(1) == "elu"
    assert subject.document == document
