"""`check_fits`: a model that does not fit its loss and data is refused before training.

Every case builds a real model from a recipe and loads the real fixture data
(the first images of Fashion-MNIST, or a few generated adding-problem
sequences), as `train_recipe` does before it writes anything.
"""

from __future__ import annotations

import copy
from typing import Any

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


CLI_CASES = [case for case in MISFITS if case.id in {
    "too-few-outputs", "binary-ce-on-ten-classes", "dense-straight-on-images",
    "autoencoder-too-narrow"}]


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
