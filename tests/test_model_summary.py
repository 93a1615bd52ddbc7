"""The model summary worked out without PyTorch: every layer's rule against the built layer,
every shipped recipe's table against the built model's, and the cases left to PyTorch."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

import tricklab.nn
from tricklab.errors import UserInputError
from tricklab.layer_shapes import KNOWN_NAMES, RULE_NAMES
from tricklab.memory import MEMORY_LIMIT_VARIABLE
from tricklab.model_summary import format_summary_table, summarize_layers
from tricklab.nn import build_model, count_params, format_summary, layers, resolve_layers, summarize
from tricklab.recipe import load_recipe
from tricklab.recipe.quick_check import snapshot_resolved_recipe
from tricklab.recipe.snapshot import Undecided, cached_snapshot

from .conftest import REPOSITORY
from .nn.test_layers import example

RECIPES = sorted((REPOSITORY / "recipes").rglob("*.yaml"))

CONV = {"filters": 4, "kernel_size": 3}
PROJECTED = {"layers": [{"dense": {"units": 4}}]}
"""A residual block whose main path changes the last axis: a projection shortcut."""

CASES: dict[str, tuple[tuple[int, ...], list]] = {
    "conv2d-same-strides-odd": ((7, 7, 3), [{"conv2d": {**CONV, "strides": 2, "padding": "same"}}]),
    "conv2d-dilated-rect": (
        (9, 11, 2), [{"conv2d": {"filters": 3, "kernel_size": [3, 5], "dilation_rate": 2}}]),
    "conv2d-no-bias-prelu": (
        (8, 8, 3), [{"conv2d": {**CONV, "use_bias": False, "padding": "same",
                                "activation": {"prelu": {"shared_axes": [1, 2]}}}}]),
    "conv2d-strides-pair": ((9, 8, 1), [{"conv2d": {**CONV, "strides": [2, 3]}}]),
    "separable-multiplier": (
        (9, 9, 3), [{"separable_conv2d": {**CONV, "depth_multiplier": 2, "strides": 2,
                                          "padding": "same"}}]),
    "separable-dilated": ((10, 10, 2), [{"separable_conv2d": {**CONV, "dilation_rate": 2}}]),
    "transpose-same-strides": (
        (5, 6, 3), [{"conv2d_transpose": {**CONV, "strides": 2, "padding": "same"}}]),
    "transpose-stride-beyond-kernel": (
        (5, 5, 3), [{"conv2d_transpose": {"filters": 2, "kernel_size": 2, "strides": 3}}]),
    "transpose-dilated": ((5, 5, 3), [{"conv2d_transpose": {**CONV, "dilation_rate": 2}}]),
    "max-pool-same": ((7, 7, 3), [{"max_pool2d": {"pool_size": 3, "strides": 2,
                                                  "padding": "same"}}]),
    "avg-pool-stride-1-same": ((7, 6, 2), [{"avg_pool2d": {"strides": 1, "padding": "same"}}]),
    "max-pool-rect": ((9, 9, 1), [{"max_pool2d": {"pool_size": [2, 3]}}]),
    "global-pool-keepdims": ((5, 5, 3), [{"global_avg_pool2d": {"keepdims": True}}]),
    "dense-on-images": ((4, 4, 3), [{"dense": {"units": 5}}]),
    "dense-prelu": ((6,), [{"dense": {"units": 5, "activation": "prelu"}}]),
    "dense-frozen": ((6,), [{"dense": {"units": 5, "trainable": False}}, {"dense": {"units": 2}}]),
    "dense-max-norm-bias": (
        (6,), [{"dense": {"units": 5, "kernel_constraint": {"max_norm": {"axis": [0, 1]}},
                          "bias_constraint": "non_neg", "kernel_regularizer": "l2",
                          "bias_initializer": {"random_uniform": {"minval": 0.0}}}}]),
    "batch-norm-frozen": ((6,), [{"batch_norm": {"trainable": False}}]),
    "batch-norm-axis-1-no-center": ((5, 6), [{"batch_norm": {"axis": 1, "center": False}}]),
    "batch-norm-images": ((4, 4, 3), [{"batch_norm": {}}]),
    "layer-norm-axes": ((4, 5, 3), [{"layer_norm": {"axis": [1, 2], "scale": False}}]),
    "layer-norm-orthogonal": ((4, 5), [{"layer_norm": {"axis": [-2, -1],
                                                       "gamma_initializer": "orthogonal"}}]),
    "reshape-minus-one-to-image": ((12,), [{"reshape": {"target_shape": [2, 3, -1]}}]),
    "reshape-exact": ((4, 6), [{"reshape": {"target_shape": [3, 8]}}]),
    "flatten-images": ((4, 5, 3), ["flatten"]),
    "embedding-grid": ((2, 3), [{"embedding": {"input_dim": 7, "output_dim": 4}}]),
    "simple-rnn-sequences-relu": (
        (5, 3), [{"simple_rnn": {"units": 4, "activation": "relu", "return_sequences": True}}]),
    "lstm-no-bias": ((5, 3), [{"lstm": {"units": 4, "use_bias": False}}]),
    "lstm-frozen": ((5, 3), [{"lstm": {"units": 4, "trainable": False}}]),
    "gru-sequences-orthogonal-bias": (
        (5, 3), [{"gru": {"units": 4, "return_sequences": True,
                          "bias_initializer": "orthogonal"}}]),
    "gru-no-bias": ((5, 3), [{"gru": {"units": 4, "use_bias": False}}]),
    "residual-nested-frozen": (
        (6,), [{"residual": {"layers": [{"residual": PROJECTED},
                                        {"dense": {"units": 4, "trainable": False}},
                                        "batch_norm"],
                             "activation": "prelu"}}]),
    "residual-frozen": ((6,), [{"residual": {**PROJECTED, "trainable": False}}]),
    "residual-identity": (
        (6,), [{"residual": {"layers": [{"dense": {"units": 6}}], "shortcut": "identity"}}]),
    "residual-projection-without-batch-norm": (
        (6,), [{"residual": {**PROJECTED, "shortcut": "projection",
                             "shortcut_batch_norm": False}}]),
    "residual-strided-images": (
        (9, 9, 3), [{"residual": {"layers": [{"conv2d": {**CONV, "strides": 2,
                                                         "padding": "same"}}]}}]),
    "prelu-images-shared": ((4, 4, 3), [{"prelu": {"shared_axes": [1, 2]}}]),
    "prelu-sequences": ((5, 6), ["prelu"]),
    "activation-prelu": ((5,), [{"activation": {"activation": "prelu"}}]),
    "softmax-axis": ((5, 6), [{"softmax": {"axis": -2}}]),
    "names-count-per-class": (
        (6,), ["silu", "swish", "relu", {"dense": {"units": 3}}, "relu", {"dense": {"units": 2}}]),
}
"""More shapes, options and freezing than the one example per layer of `tests/nn/test_layers.py`."""

REFUSED: dict[str, tuple[tuple[int, ...], list]] = {
    "conv2d-on-flat-samples": ((6,), [{"conv2d": CONV}]),
    "conv2d-empty-output": ((2, 2, 3), [{"conv2d": CONV}]),
    "pooling-on-sequences": ((5, 6), ["max_pool2d"]),
    "lstm-on-flat-samples": ((6,), [{"lstm": {"units": 4}}]),
    "reshape-count-mismatch": ((7,), [{"reshape": {"target_shape": [2, -1]}}]),
    "batch-norm-axis-out-of-range": ((6,), [{"batch_norm": {"axis": 2}}]),
    "layer-norm-repeated-axis": ((4, 5), [{"layer_norm": {"axis": [1, -2]}}]),
    "softmax-axis-out-of-range": ((6,), [{"softmax": {"axis": 2}}]),
    "prelu-shared-axis-out-of-range": ((6,), [{"prelu": {"shared_axes": 2}}]),
    "orthogonal-bias": ((6,), [{"dense": {"units": 3, "bias_initializer": "orthogonal"}}]),
    "uniform-bounds-reversed": (
        (6,), [{"dense": {"units": 3,
                          "kernel_initializer": {"random_uniform": {"minval": 1.0}}}}]),
    "constraint-axis-out-of-range": (
        (6,), [{"dense": {"units": 3, "kernel_constraint": {"unit_norm": {"axis": 2}}}}]),
    "identity-shortcut-changing-shape": (
        (6,), [{"residual": {**PROJECTED, "shortcut": "identity"}}]),
    "no-stride-for-the-shortcut": (  # 9 -> 4: s = ceil(9 / 4) = 3 gives ceil(9 / 3) = 3
        (9, 9, 3), [{"residual": {"layers": [{"conv2d": {**CONV, "strides": 2}}]}}]),
    "too-large-for-memory": (
        (28, 28), ["flatten", {"dense": {"units": 1_000_000_000}}, {"dense": {"units": 10}}]),
}
"""Models PyTorch refuses to build: the rules must leave them to it."""


@pytest.fixture(autouse=True)
def machine_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    """The machine's own available memory, whatever the environment running the tests says."""
    monkeypatch.delenv(MEMORY_LIMIT_VARIABLE, raising=False)


def assert_rows_equal_the_built_model(input_shape: tuple[int, ...], layer_list: list) -> None:
    quick = summarize_layers(input_shape, resolve_layers(layer_list))
    assert quick is not None, f"no rule answers for {layer_list} (add one to layer_shapes.py)"
    model = build_model(input_shape, layer_list)
    for row, built in zip(quick.rows, summarize(model), strict=True):
        assert row == built  # name, type, output shape, parameters, trainable: field by field
    assert quick.params == count_params(model)
    assert (quick.input_shape, quick.output_shape) == (model.input_shape, model.output_shape)


@pytest.mark.parametrize("name", layers.names())
def test_every_registered_layer_has_a_rule_that_matches_the_built_layer(name: str) -> None:
    config, shape = example(name)
    assert_rows_equal_the_built_model(shape, [{name: config}])


@pytest.mark.parametrize(("shape", "layer_list"), CASES.values(), ids=CASES.keys())
def test_rules_match_the_built_model(shape: tuple[int, ...], layer_list: list) -> None:
    assert_rows_equal_the_built_model(shape, layer_list)


def test_the_rules_cover_the_registry_and_nothing_else() -> None:
    assert set(layers.names()) == RULE_NAMES


@pytest.mark.parametrize("family", sorted(KNOWN_NAMES))
def test_the_rules_know_every_name_a_layer_may_refer_to(family: str) -> None:
    # A new initializer, regularizer or constraint: say in layer_shapes.py what it needs.
    assert set(getattr(tricklab.nn, family).names()) == KNOWN_NAMES[family]


@pytest.mark.parametrize("path", RECIPES, ids=lambda path: str(path.relative_to(REPOSITORY)))
def test_every_recipe_summary_is_the_built_models(path: Path, fixture_data: Path) -> None:
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    if document["model"].get("reuse") is not None:
        pytest.skip("model.reuse: the reused layers are read from a trained model on disk, "
                    "so the summary builds the model")
    quick = snapshot_resolved_recipe(path, (), cached_snapshot())
    assert quick is not None
    live = load_recipe(path)
    assert quick.model.layers == live.model.layers  # the snapshot resolves as the registries do
    assert (quick.name, quick.preset_decisions) == (live.name, live.preset_decisions)
    summary = summarize_layers(quick.model.input_shape, quick.model.layers)
    assert summary is not None
    model = build_model(live.model.input_shape, live.model.layers)
    assert format_summary_table(summary) == format_summary(model)


@pytest.mark.parametrize(("shape", "layer_list"), REFUSED.values(), ids=REFUSED.keys())
def test_what_pytorch_refuses_is_left_to_it(shape: tuple[int, ...], layer_list: list) -> None:
    assert summarize_layers(shape, resolve_layers(layer_list)) is None
    with pytest.raises(UserInputError):
        build_model(shape, layer_list)


def test_what_the_rules_cannot_judge_is_left_to_pytorch(monkeypatch: pytest.MonkeyPatch) -> None:
    dense = resolve_layers([{"dense": {"units": 3}}])
    assert summarize_layers((6,), dense) is not None
    undecided = [{"dense": {**dense[0]["dense"], "units": Undecided("dense")}}]
    unknown = [{"maxout": {"units": 3}}]
    as_text = [{"dense": {**dense[0]["dense"], "units": "3"}}]
    for layer_list in (undecided, unknown, as_text, []):
        assert summarize_layers((6,), layer_list) is None, layer_list
    assert summarize_layers((0,), dense) is None
    # A memory limit is the memory check's to read and word.
    monkeypatch.setenv(MEMORY_LIMIT_VARIABLE, "1GiB")
    assert summarize_layers((6,), dense) is None


def test_the_snapshot_resolution_leaves_what_it_cannot_read_to_the_full_load(
        fixture_data: Path, tmp_path: Path) -> None:
    snapshot = cached_snapshot()
    recipe = yaml.safe_load((REPOSITORY / "recipes/chapter11/leaky_relu_he.yaml").read_text())
    path = tmp_path / "recipe.yaml"

    def resolved(document: dict, overrides: tuple[str, ...] = ()) -> object:
        path.write_text(yaml.safe_dump(document))
        return snapshot_resolved_recipe(path, overrides, snapshot)

    assert resolved(recipe) is not None
    assert resolved(recipe, ("model.layers.1.dense.units=30",)).model.layers[1] == {
        "dense": load_recipe(path, ["model.layers.1.dense.units=30"]).model.layers[1]["dense"]}
    assert snapshot_resolved_recipe(path, (), None) is None
    model = recipe["model"]
    for document in (
        {**recipe, "model": {"layers": model["layers"]}},  # input shape from the dataset
        {**recipe, "data": {"dataset": "numpy", "path": "x.npz"}},  # scale: auto, from the file
        {**recipe, "model": {**model, "layers": [{"residual": {"layers": ["flaten"]}}]}},
        {**recipe, "train": {**recipe["train"], "callbacks": [
            {"early_stopping": {"monitor": "val_acuracy"}}]}},
        {**recipe, "train": {**recipe["train"], "phases": [{"epochs": 1, "trainable": "-1:"}]}},
    ):
        assert resolved(document) is None, document
