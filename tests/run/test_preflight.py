"""`check_fits`: a model that does not fit its loss and data is refused before training.

Every case builds a real model from a recipe and loads the real fixture data
(the first images of Fashion-MNIST, or a few generated adding-problem
sequences), as `train_recipe` does before it writes anything.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest
import torch
import yaml

from tricklab.cli.main import main
from tricklab.data import DatasetSplits
from tricklab.errors import UserInputError
from tricklab.recipe import Recipe, load_recipe, recipe_from_dict
from tricklab.recipe.load import read_yaml
from tricklab.run import build, load_data, train_recipe
from tricklab.run.preflight import check_fits
from tricklab.train import Trainer

from ..conftest import REPOSITORY, TINY_RECIPE
from .test_recipes import RECIPES, short

FLATTEN = "flatten"
SCE = "sparse_categorical_crossentropy"
ADDING = {"dataset": "adding_problem", "length": 20, "train_size": 64, "validation": 16,
          "test_size": 16}
AUTOENCODER = {"target": "inputs", "loss": "mse", "metrics": []}


def dense(units: int, activation: str | None = None) -> dict[str, Any]:
    return {"dense": {"units": units, **({"activation": activation} if activation else {})}}


def recipe(layers: list[Any] | None = None, data: dict[str, Any] | None = None,
           input_shape: list[int] | None = None, **train: Any) -> dict[str, Any]:
    """The tests' tiny recipe (784-16-10 on the fixture) with its layers, data or train changed."""
    document = copy.deepcopy(TINY_RECIPE)
    if layers is not None:
        document["model"]["layers"] = layers
    if input_shape is not None:
        document["model"]["input_shape"] = input_shape
    if data is not None:
        document["data"] = {**document["data"], **data} if "dataset" not in data else data
    document["train"].update(train)
    return document


def built(document: dict[str, Any]) -> tuple[Recipe, torch.nn.Module, DatasetSplits]:
    """The resolved recipe, its model and its data, as `train_recipe` has them before training."""
    resolved = recipe_from_dict(document)
    model, _ = build(resolved)
    splits = load_data(resolved)
    if resolved.train.target == "inputs":
        splits = splits.as_reconstruction()
    return resolved, model, splits


def refusal(document: dict[str, Any]) -> str:
    with pytest.raises(UserInputError) as raised:
        check_fits(*built(document))
    message = str(raised.value)
    assert "\n" not in message
    return message


MISFITS = [
    pytest.param(
        recipe([FLATTEN, dense(16, "relu"), dense(5, "softmax")]),
        "model.layers.2.dense.units: the model outputs 5 values per sample, but the data has 10 "
        f"classes ({SCE} needs 10 outputs, one per class)",
        id="too-few-outputs"),
    pytest.param(
        recipe([FLATTEN, dense(16, "relu"), dense(1, "sigmoid")]),
        "model.layers.2.dense.units: the model outputs 1 value per sample, but the data has 10 "
        f"classes ({SCE} needs 10 outputs, one per class)",
        id="one-sigmoid-unit-with-sparse-ce"),
    pytest.param(
        recipe([FLATTEN, dense(5), "softmax"]),
        "model.layers.1.dense.units: the model outputs 5 values per sample, but the data has 10 "
        f"classes ({SCE} needs 10 outputs, one per class)",
        id="width-set-before-an-activation-layer"),
    pytest.param(
        recipe(loss="binary_crossentropy"),
        "train.loss: binary_crossentropy needs 0/1 labels (2 classes, 1 output) or one-hot or "
        "multi-label targets (one output per class), but the data has 10 classes labelled 0 to "
        f"9; use {SCE} with 10 outputs",
        id="binary-ce-on-ten-classes"),
    pytest.param(
        recipe([FLATTEN, dense(2, "softmax")], data={"classes": [5, 6]},
               loss="binary_crossentropy"),
        "train.loss: binary_crossentropy compares the model's output, shape [2] per sample, with "
        "the targets, shape [] (one class label per sample), and cannot reshape one into the "
        f"other; for 2 classes use {SCE}, or end the model with 1 unit",
        id="binary-ce-on-two-softmax-outputs"),
    pytest.param(
        recipe(loss="mse"),
        "train.loss: mse compares the model's output, shape [10] per sample, with the targets, "
        "shape [] (one class label per sample), and cannot reshape one into the other; for 10 "
        f"classes use {SCE}, or end the model with 1 unit",
        id="mse-on-a-ten-way-softmax"),
    pytest.param(
        recipe([dense(10, "softmax")]),
        f"model.layers: the model outputs shape [28, 10] per sample, but {SCE} needs [10]; add a "
        "flatten layer before the first dense layer",
        id="dense-straight-on-images"),
    pytest.param(
        recipe([dense(16, "relu"), dense(1)], loss="mse"),
        "model.layers: the model outputs shape [28, 1] per sample, but mse needs [1]; add a "
        "flatten layer before the first dense layer",
        id="dense-straight-on-images-mse"),
    pytest.param(
        recipe([FLATTEN, dense(16), {"reshape": {"target_shape": [4, 4]}}, dense(10, "softmax")]),
        f"model.layers: the model outputs shape [4, 10] per sample, but {SCE} needs [10]; add a "
        "flatten layer before model.layers.3.dense",
        id="dense-on-a-later-grid"),
    pytest.param(
        recipe([{"conv2d": {"filters": 4, "kernel_size": 3}}, {"max_pool2d": {"pool_size": 2}},
                dense(10, "softmax")], input_shape=[28, 28, 1]),
        f"model.layers: the model outputs shape [13, 13, 10] per sample, but {SCE} needs [10]; "
        "add a flatten layer before the first dense layer",
        id="convolutions-without-flatten"),
    pytest.param(
        recipe([{"conv2d": {"filters": 10, "kernel_size": 28, "activation": "softmax"}}],
               input_shape=[28, 28, 1]),
        f"model.layers: the model outputs shape [1, 1, 10] per sample, but {SCE} needs [10]",
        id="no-dense-no-flatten-hint"),
    pytest.param(
        recipe([{"simple_rnn": {"units": 4, "return_sequences": True}}, dense(1)], data=ADDING,
               input_shape=[20, 2], loss="mse", metrics=[]),
        "model.layers: the model outputs shape [20, 1] per sample, but mse needs [1]",
        id="per-step-outputs-of-a-recurrent-layer"),
    pytest.param(
        recipe([{"simple_rnn": {"units": 4}}, dense(3)], data=ADDING, input_shape=[20, 2],
               loss="mse", metrics=[]),
        "model.layers.1.dense.units: the model outputs 3 values per sample, but mse compares them "
        "one by one with targets of shape [] (1 value each)",
        id="regression-with-three-outputs"),
    pytest.param(
        recipe([{"simple_rnn": {"units": 4}}, dense(1)], data=ADDING, input_shape=[20, 2],
               metrics=[]),
        f"train.loss: {SCE} needs integer class labels, but the targets are the float32 values "
        "of adding_problem (shape [] each); use mse",
        id="sparse-ce-on-a-regression"),
    pytest.param(
        recipe([FLATTEN, dense(100, "sigmoid")], **AUTOENCODER),
        "model.layers.1.dense.units: the model outputs shape [100] per sample, but an "
        "autoencoder (train.target: inputs) reconstructs its inputs, shape [28, 28]: it needs "
        "784 values per sample",
        id="autoencoder-too-narrow"),
    pytest.param(
        recipe([FLATTEN, dense(196, "sigmoid"), {"reshape": {"target_shape": [14, 14]}}],
               **AUTOENCODER),
        "model.layers: the model outputs shape [14, 14] per sample, but an autoencoder "
        "(train.target: inputs) reconstructs its inputs, shape [28, 28]: it needs 784 values "
        "per sample",
        id="autoencoder-smaller-image"),
    pytest.param(
        recipe([FLATTEN, dense(784, "sigmoid")], **{**AUTOENCODER, "loss": SCE}),
        f"train.loss: {SCE} needs integer class labels, but the targets are the inputs "
        "(train.target: inputs); use mse or binary_crossentropy",
        id="autoencoder-with-sparse-ce"),
    pytest.param(
        recipe([FLATTEN, dense(784, "sigmoid")], **{**AUTOENCODER, "metrics": ["accuracy"]}),
        "train.metrics.0.accuracy: accuracy compares predicted classes with class labels, but "
        "an autoencoder's targets are its inputs (train.target: inputs); remove it",
        id="autoencoder-with-accuracy"),
]


@pytest.mark.parametrize(("document", "message"), MISFITS)
def test_a_model_that_does_not_fit_is_refused_naming_the_field(fixture_data, document, message):
    assert refusal(document) == message


@pytest.mark.parametrize(("document", "targets"), [
    (recipe([{"simple_rnn": {"units": 4}}, dense(1, "sigmoid")], data=ADDING,
            input_shape=[20, 2], loss="binary_crossentropy", metrics=[]),
     "the float32 values of adding_problem (shape [] each)"),
    (recipe([FLATTEN, dense(784, "sigmoid"), {"reshape": {"target_shape": [28, 28]}}],
            data={"scale": "standardize"}, **{**AUTOENCODER, "loss": "binary_crossentropy"}),
     "the inputs (train.target: inputs)"),
], ids=["regression-sums-up-to-2", "standardized-images"])
def test_binary_ce_needs_targets_between_0_and_1(fixture_data, document, targets):
    resolved, model, splits = built(document)
    parts = [p for p in (splits.train, splits.val, splits.test) if p is not None]
    values = [p.x if resolved.train.target == "inputs" else p.y for p in parts]
    low, high = min(float(v.min()) for v in values), max(float(v.max()) for v in values)
    assert low < 0 or high > 1
    use = "mse, or data.scale: unit" if resolved.train.target == "inputs" else "mse"
    with pytest.raises(UserInputError) as raised:
        check_fits(resolved, model, splits)
    assert str(raised.value) == (
        f"train.loss: binary_crossentropy needs targets between 0 and 1, but {targets} range "
        f"from {low:g} to {high:g}; use {use}")


def test_what_the_losses_accept_passes(fixture_data):
    accepted = [
        recipe(),
        recipe([FLATTEN, dense(12, "softmax")]),  # extra outputs are never the label
        recipe([FLATTEN, dense(1, "sigmoid")], data={"classes": [5, 6]},
               loss="binary_crossentropy"),
        recipe([FLATTEN, dense(1)], loss="mse", metrics=["mae"]),  # class ids as numbers
        recipe([FLATTEN, dense(784, "sigmoid")], **AUTOENCODER),  # 784 values for [28, 28]
        recipe([FLATTEN, dense(784, "sigmoid"), {"reshape": {"target_shape": [28, 28]}}],
               **{**AUTOENCODER, "loss": "binary_crossentropy"}),
        recipe([{"simple_rnn": {"units": 4}}, dense(1)], data=ADDING, input_shape=[20, 2],
               loss="mse", metrics=[]),
    ]
    for document in accepted:
        check_fits(*built(document))
    # ... and one that is not, so this test cannot pass without the check
    assert refusal(recipe(loss="mse")).startswith("train.loss: mse compares")


# --- tasks beyond ten classes: categorical CE, regression losses, every metric (issue 14) -----

CCE = "categorical_crossentropy"
BINARY = {"classes": [5, 6]}
ONE_SIGMOID = [FLATTEN, dense(1, "sigmoid")]


@pytest.fixture(scope="module")
def own_arrays(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """scikit-learn's data as `.npz` archives, for the numpy dataset.

    wine: one-hot float rows of 3 classes; cancer: 0/1 labels stored as floats
    (a regression to the dataset, classes to the metrics); diabetes: a regression.
    """
    from sklearn.datasets import load_breast_cancer, load_diabetes, load_wine

    folder = tmp_path_factory.mktemp("arrays")
    x, y = load_wine(return_X_y=True)
    np.savez(folder / "wine.npz", x=x, y=np.eye(3)[y])
    x, y = load_breast_cancer(return_X_y=True)
    np.savez(folder / "cancer.npz", x=x, y=y.astype(np.float64))
    x, y = load_diabetes(return_X_y=True)
    np.savez(folder / "diabetes.npz", x=x, y=y)
    return {name: str(folder / f"{name}.npz") for name in ("wine", "cancer", "diabetes")}


def arrays(name: str, layers: list[Any], features: int, **train: Any) -> dict[str, Any]:
    """A recipe on one of `own_arrays`' archives (its path filled in by the test)."""
    return recipe(layers, data={"dataset": "numpy", "path": name}, input_shape=[features],
                  **train)


def with_paths(document: dict[str, Any], paths: dict[str, str]) -> dict[str, Any]:
    document = copy.deepcopy(document)
    if document["data"].get("dataset") == "numpy":
        document["data"]["path"] = paths[document["data"]["path"]]
    return document


TASK_MISFITS = [
    pytest.param(
        recipe([FLATTEN, dense(16, "relu"), dense(5, "softmax")], loss=CCE),
        "model.layers.2.dense.units: the model outputs 5 values per sample, but the data has 10 "
        f"classes ({CCE} needs 10 outputs, one per class)",
        id="categorical-ce-too-few-outputs-for-labels"),
    pytest.param(
        arrays("wine", [dense(4, "softmax")], 13, loss=CCE, metrics=[]),
        "model.layers.0.dense.units: the model outputs 4 values per sample, but the targets are "
        f"one-hot rows of 3 classes ({CCE} needs 3 outputs, one per class)",
        id="categorical-ce-one-hot-needs-one-output-per-column"),
    pytest.param(
        recipe([{"simple_rnn": {"units": 4}}, dense(1)], data=ADDING, input_shape=[20, 2],
               loss=CCE, metrics=[]),
        f"train.loss: {CCE} needs class labels or one-hot (probability) rows, but the targets "
        "are the float32 values of adding_problem (shape [] each); use mse",
        id="categorical-ce-on-a-regression"),
    pytest.param(
        recipe([FLATTEN, dense(784, "softmax")], **{**AUTOENCODER, "loss": CCE}),
        f"train.loss: {CCE} needs class labels or one-hot (probability) rows, but the targets "
        "are the inputs (train.target: inputs); use mse or binary_crossentropy",
        id="categorical-ce-autoencoder"),
    pytest.param(
        recipe(loss="mae", metrics=[]),
        "train.loss: mae compares the model's output, shape [10] per sample, with the targets, "
        "shape [] (one class label per sample), and cannot reshape one into the other; for 10 "
        f"classes use {SCE}, or end the model with 1 unit",
        id="mae-on-a-ten-way-softmax"),
    pytest.param(
        recipe([{"simple_rnn": {"units": 4}}, dense(3)], data=ADDING, input_shape=[20, 2],
               loss="huber", metrics=[]),
        "model.layers.1.dense.units: the model outputs 3 values per sample, but huber compares "
        "them one by one with targets of shape [] (1 value each)",
        id="huber-with-three-outputs"),
    pytest.param(
        recipe([FLATTEN, dense(1)], loss="mse"),
        "train.metrics.0.accuracy: accuracy of one output thresholds it into 0/1 predictions, "
        "but the data has 10 classes labelled 0 to 9; end the model with 10 softmax units",
        id="accuracy-of-one-output-on-ten-classes"),
    pytest.param(
        recipe(metrics=["accuracy", "auc"]),
        "train.metrics.1.auc: auc is the ROC area of one output (a sigmoid unit) against 0/1 "
        "labels, but the model outputs 10 values per sample; accepted: 1 output with 2 classes "
        "(binary_crossentropy), or use precision, recall or top_k_accuracy",
        id="auc-on-a-softmax"),
    pytest.param(
        recipe([FLATTEN, dense(2, "softmax")], data=BINARY, metrics=["auc"]),
        "train.metrics.0.auc: auc is the ROC area of one output (a sigmoid unit) against 0/1 "
        "labels, but the model outputs 2 values per sample; accepted: 1 output with 2 classes "
        "(binary_crossentropy), or use precision, recall or top_k_accuracy",
        id="auc-on-two-softmax-outputs"),
    pytest.param(
        recipe(metrics=[{"top_k_accuracy": {"k": 10}}]),
        "train.metrics.0.top_k_accuracy.k: 10 with 10 classes counts every sample as a hit; "
        "accepted: 1 to 9",
        id="top-k-as-many-as-classes"),
    pytest.param(
        recipe(ONE_SIGMOID, data=BINARY, loss="binary_crossentropy", metrics=["top_k_accuracy"]),
        "train.metrics.0.top_k_accuracy: top_k_accuracy needs one score per class, but the "
        "model outputs 1 value per sample; use accuracy, precision, recall or auc",
        id="top-k-of-one-output"),
    pytest.param(
        recipe(metrics=[{"precision": {"class_id": 10}}]),
        "train.metrics.0.precision.class_id: 10; accepted: 0 to 9, one of the model's 10 classes",
        id="precision-class-id-beyond-the-outputs"),
    pytest.param(
        recipe(ONE_SIGMOID, data=BINARY, loss="binary_crossentropy",
               metrics=[{"recall": {"class_id": 1}}]),
        "train.metrics.0.recall.class_id: 1; accepted: 0 (the positive class of one output)",
        id="recall-class-id-of-one-output"),
    pytest.param(
        recipe(metrics=["mae"]),
        "train.metrics.0.mae: mae compares the model's output, shape [10] per sample, value by "
        "value with one class label per sample; use accuracy, or end the model with 1 unit",
        id="mae-metric-on-a-softmax"),
    pytest.param(
        arrays("wine", [dense(2, "softmax")], 13, loss=CCE, metrics=["rmse"]),
        "model.layers.0.dense.units: the model outputs 2 values per sample, but the targets are "
        f"one-hot rows of 3 classes ({CCE} needs 3 outputs, one per class)",
        id="loss-checked-before-metrics"),
    pytest.param(
        arrays("diabetes", [dense(1)], 10, loss="mse", metrics=["mae", "precision"]),
        "train.metrics.1.precision: precision counts predicted classes against class labels, but "
        "the targets are the float32 values of numpy (shape [] each); use mae, mse or rmse",
        id="precision-on-a-regression"),
    pytest.param(
        recipe([{"simple_rnn": {"units": 4}}, dense(1)], data=ADDING, input_shape=[20, 2],
               loss="mse", metrics=["accuracy"]),
        "train.metrics.0.accuracy: accuracy compares predicted classes with class labels, but "
        "the targets are the float32 values of adding_problem (shape [] each); use mae, mse or "
        "rmse",
        id="accuracy-on-a-regression"),
    pytest.param(
        arrays("wine", [dense(3, "sigmoid")], 13, loss="binary_crossentropy",
               metrics=["mse", "precision"]),
        "train.metrics.1.precision: precision reads one class per sample from several outputs "
        "(their argmax), but binary_crossentropy scores each of the 3 values on its own "
        "(multi-label); remove it, or use categorical_crossentropy for one class per sample",
        id="precision-of-a-multi-label-model"),
    pytest.param(
        recipe([FLATTEN, dense(784, "sigmoid")], **{**AUTOENCODER, "metrics": ["mse", "auc"]}),
        "train.metrics.1.auc: auc ranks one output's scores against 0/1 labels, but an "
        "autoencoder's targets are its inputs (train.target: inputs); remove it",
        id="auc-on-an-autoencoder"),
]


@pytest.mark.parametrize(("document", "message"), TASK_MISFITS)
def test_a_loss_or_metric_that_does_not_fit_the_task_is_one_line(fixture_data, own_arrays,
                                                                   document, message):
    assert refusal(with_paths(document, own_arrays)) == message


def test_what_the_new_losses_and_metrics_accept_passes(fixture_data, own_arrays):
    every_class_metric = ["accuracy", {"top_k_accuracy": {"k": 9}}, "precision", "recall",
                          {"precision": {"class_id": 9}}]
    binary_metrics = ["accuracy", "auc", "precision", "recall", "mae",
                      {"recall": {"class_id": 0}}]
    accepted = [
        recipe(loss=CCE, metrics=every_class_metric),  # labels one-hot encoded by the loss
        recipe([FLATTEN, dense(12, "softmax")], loss=CCE),  # extra outputs, as for sparse
        recipe(metrics=every_class_metric),
        recipe(ONE_SIGMOID, data=BINARY, loss="binary_crossentropy", metrics=binary_metrics),
        recipe([FLATTEN, dense(1)], loss="huber", metrics=["mae", "rmse"]),  # ids as numbers
        arrays("wine", [dense(3, "softmax")], 13, loss=CCE,
               metrics=["accuracy", {"top_k_accuracy": {"k": 2}}, "precision", "mse"]),
        arrays("wine", [dense(3, "sigmoid")], 13, loss="binary_crossentropy",
               metrics=["mae", "rmse"]),  # multi-label: compared value by value
        arrays("cancer", [dense(1, "sigmoid")], 30, loss="binary_crossentropy",
               metrics=["auc", "precision", "recall", "accuracy"]),
        arrays("diabetes", [dense(1)], 10, loss="mae", metrics=["mae", "mse", "rmse"]),
        recipe([FLATTEN, dense(784, "sigmoid")], **{**AUTOENCODER, "loss": "huber",
                                                    "metrics": ["mae", "rmse"]}),
    ]
    for document in accepted:
        check_fits(*built(with_paths(document, own_arrays)))
    # ... and the same metrics where they do not fit, so this test cannot pass without the check
    assert refusal(recipe(metrics=binary_metrics)).startswith("train.metrics.1.auc: ")


# --- the net under the rules: the model, the loss and the metrics run once -------------------


def test_a_module_that_cannot_take_the_data_is_one_line(fixture_data):
    resolved, _, splits = built(recipe())
    foreign = torch.nn.Linear(784, 10)  # any nn.Module; this one misses a flatten
    with pytest.raises(UserInputError) as raised:
        check_fits(resolved, foreign, splits)
    message = str(raised.value)
    assert message.startswith("model: the model does not fit the data and loss: ")
    assert "784" in message and "\n" not in message


def test_a_layer_that_cannot_read_the_inputs_is_one_line(fixture_data):
    # An embedding looks up ids below its input_dim; raw pixels go up to 255.
    document = recipe([{"embedding": {"input_dim": 16, "output_dim": 4}}, FLATTEN,
                       dense(10, "softmax")], data={"scale": "none"})
    assert refusal(document) == (
        "model: the model does not fit the data and loss: index out of range in self")


def test_a_foreign_model_too_narrow_is_named_as_the_model(fixture_data):
    resolved, _, splits = built(recipe())
    foreign = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 5))
    with pytest.raises(UserInputError) as raised:
        check_fits(resolved, foreign, splits)
    assert str(raised.value) == (
        "model.layers: the model outputs 5 values per sample, but the data has 10 classes "
        f"({SCE} needs 10 outputs, one per class)")


@pytest.mark.parametrize("path", [
    REPOSITORY / "recipes" / "chapter11" / "mc_dropout.yaml",      # samples at inference
    REPOSITORY / "recipes" / "chapter11" / "batch_norm_before.yaml",  # a mode-dependent layer
], ids=lambda p: p.stem)
def test_the_check_leaves_training_bit_identical(fixture_data, path):
    resolved = load_recipe(path, [*short(path)[0], "data.train_size=256"])
    splits = load_data(resolved)

    def train(check: bool) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        model, optimizer = build(resolved)  # seeds the global generator
        if check:
            modes = [module.training for module in model.modules()]
            before = {key: value.clone() for key, value in model.state_dict().items()}
            check_fits(resolved, model, splits)
            assert [module.training for module in model.modules()] == modes
            assert all(torch.equal(before[key], value)
                       for key, value in model.state_dict().items())
        trainer = Trainer(model, optimizer, loss=resolved.train.loss,
                          metrics=resolved.train.metrics, seed=resolved.seed, progress="none")
        trainer.fit(splits.train.x, splits.train.y, epochs=1, batch_size=64)
        return model.state_dict(), torch.get_rng_state()

    (checked, rng_checked), (plain, rng_plain) = train(check=True), train(check=False)
    assert torch.equal(rng_checked, rng_plain)
    assert all(torch.equal(checked[key], plain[key]) for key in plain)


# --- every shipped recipe fits its data -------------------------------------------------------


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_every_shipped_recipe_fits_its_data(path, fixture_data, tmp_path):
    overrides = short(path)[0]
    source = read_yaml(path)["model"].get("reuse", {}).get("from", "")
    if source.endswith(".yaml"):
        # The recipe it reuses, shortened as tests/run/test_recipes.py does, trained first.
        source_path = REPOSITORY / source
        train_recipe(load_recipe(source_path, [*short(source_path)[0], "data.train_size=64"]),
                     out=tmp_path / "source", progress="none")
        overrides.append(f"model.reuse.from={tmp_path / 'source'}")
    resolved = load_recipe(path, overrides)
    model, _ = build(resolved)
    splits = load_data(resolved)
    if resolved.train.target == "inputs":
        splits = splits.as_reconstruction()
    check_fits(resolved, model, splits)


# --- through the command line (once the run layer calls check_fits) --------------------------


CLI_CASES = [case for case in MISFITS + TASK_MISFITS if case.id in {
    "too-few-outputs", "binary-ce-on-ten-classes", "dense-straight-on-images",
    "autoencoder-too-narrow", "auc-on-a-softmax"}]


@pytest.mark.parametrize(("document", "message"), CLI_CASES)
@pytest.mark.parametrize("command", ["train", "doctor", "lr-find"])
def test_the_cli_refuses_a_misfit_before_writing_anything(fixture_data, tmp_path, capsys,
                                                          monkeypatch, command, document,
                                                          message):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump({**document, "train": {**document["train"], "epochs": 20}}))
    out = tmp_path / "out"
    code = main([command, str(path), "--out", str(out)])
    assert code == 2
    assert capsys.readouterr().err == f"error: {message}\n"
    assert sorted(item.name for item in tmp_path.iterdir()) == ["cache", "recipe.yaml"] or (
        sorted(item.name for item in tmp_path.iterdir()) == ["recipe.yaml"])
