"""Builder: recipe layer lists to models, logits for fused losses, errors, summary."""

from __future__ import annotations

import pickle

import pytest
import torch
from torch import nn

from tricklab.errors import UserInputError
from tricklab.nn import (
    Sequential,
    build_model,
    count_params,
    format_summary,
    resolve_layers,
    summarize,
)
from tricklab.nn.builder import build_layers, model_input
from tricklab.nn.convolutional import NotAnImageError
from tricklab.nn.layers import Dense, Flatten

SEED_MODEL = [
    "flatten",
    {"dense": {"units": 300, "kernel_initializer": "he_normal"}},
    "leaky_relu",
    {"dense": {"units": 100, "kernel_initializer": "he_normal"}},
    "leaky_relu",
    {"dense": {"units": 10, "activation": "softmax"}},
]
BN_MODEL = [
    {"flatten": {}},
    {"batch_norm": {}},
    {"dense": {"units": 300, "activation": "relu"}},
    {"batch_norm": {}},
    {"dense": {"units": 100, "activation": "relu"}},
    {"batch_norm": {}},
    {"dense": {"units": 10, "activation": "softmax"}},
]


def test_seed_model_params_shapes_and_probabilities() -> None:
    model = build_model([28, 28], SEED_MODEL)
    assert count_params(model) == (266_610, 266_610, 0)
    assert model.input_shape == (28, 28) and model.output_shape == (10,)
    probabilities = model(torch.rand(5, 28, 28))
    assert probabilities.shape == (5, 10)
    assert torch.allclose(probabilities.sum(dim=1), torch.ones(5))


def test_forward_logits_is_forward_before_the_final_softmax() -> None:
    model = build_model([28, 28], SEED_MODEL)
    x = torch.rand(5, 28, 28)
    assert model.final_activation == "softmax"
    assert torch.allclose(model.forward_logits(x).softmax(dim=1), model(x), atol=1e-7)


def test_forward_logits_runs_every_layer_once() -> None:
    model = build_model([28, 28], SEED_MODEL)
    calls = []
    for module in model[:-1]:
        module.register_forward_hook(lambda module, *_: calls.append(module))
    model.forward_logits(torch.rand(2, 28, 28))
    assert calls == list(model[:-1])


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        ([{"dense": {"units": 3, "activation": "softmax"}}], "softmax"),
        ([{"dense": {"units": 3}}, "softmax"], "softmax"),
        ([{"dense": {"units": 1, "activation": "sigmoid"}}], "sigmoid"),
        ([{"dense": {"units": 1}}, {"activation": {"activation": "sigmoid"}}], "sigmoid"),
        ([{"dense": {"units": 3}}], None),
        ([{"dense": {"units": 3, "activation": "relu"}}], None),
        ([{"dense": {"units": 3}}, {"softmax": {"axis": 0}}], None),
    ],
)
def test_final_activation_detection(head, expected) -> None:
    model = build_model([4], [{"dense": {"units": 5}}, *head])
    assert model.final_activation == expected
    x = torch.randn(6, 4)
    squash = {"softmax": lambda z: z.softmax(dim=-1), "sigmoid": torch.sigmoid, None: lambda z: z}
    assert torch.allclose(squash[expected](model.forward_logits(x)), model(x), atol=1e-7)


def test_resolve_layers_fills_every_default_and_rebuilds_the_same_model() -> None:
    resolved = resolve_layers(SEED_MODEL)
    assert resolved[0] == {"flatten": {}}
    assert resolved[1] == {
        "dense": {
            "units": 300,
            "activation": None,
            "use_bias": True,
            "kernel_initializer": "he_normal",
            "bias_initializer": "zeros",
            "kernel_regularizer": None,
            "bias_regularizer": None,
            "kernel_constraint": None,
            "bias_constraint": None,
        }
    }
    assert resolved[2] == {"leaky_relu": {"negative_slope": 0.3}}
    assert resolved[5]["dense"]["activation"] == {"softmax": {"axis": -1}}
    nested = resolve_layers(
        [{"dense": {"units": 2, "kernel_initializer": {"variance_scaling": {}}}}]
    )
    assert nested[0]["dense"]["kernel_initializer"] == {
        "variance_scaling": {"scale": 1.0, "mode": "fan_in", "distribution": "truncated_normal"}
    }
    assert resolve_layers(resolved) == resolved
    torch.manual_seed(0)
    first = build_model([28, 28], SEED_MODEL).state_dict()
    torch.manual_seed(0)
    second = build_model([28, 28], resolved).state_dict()
    assert first.keys() == second.keys()
    assert all(torch.equal(first[key], second[key]) for key in first)


@pytest.mark.parametrize(
    ("layers", "message"),
    [
        (
            ["flatten", "densee"],
            r"^model\.layers\.1: unknown layer 'densee'; did you mean 'dense'\?",
        ),
        (
            ["flatten", {"dense": {"units": 3, "size": 1}}],
            r"^model\.layers\.1\.dense: unknown key 'size'",
        ),
        (["flatten", {"dense": {"units": "many"}}], r"^model\.layers\.1\.dense\.units: "),
        (["flatten", {"dense": {}}], r"^model\.layers\.1\.dense\.units: required field is missing"),
        (
            ["flatten", {"dense": {"units": 3, "kernel_initializer": "he_norml"}}],
            r"^model\.layers\.1\.dense\.kernel_initializer: unknown initializer 'he_norml'; "
            r"did you mean 'he_normal'\?",
        ),
        (
            ["flatten", {"dense": {"units": 3, "activation": "sofmax"}}],
            r"^model\.layers\.1\.dense\.activation: unknown activation 'sofmax'; did you mean",
        ),
        (
            ["flatten", {"dense": {"units": 3, "bias_initializer": {"constant": {"v": 1}}}}],
            r"^model\.layers\.1\.dense\.bias_initializer\.constant: unknown key 'v'",
        ),
        (["flatten", {"dropout": {"rate": 1.5}}], r"^model\.layers\.1\.dropout\.rate: "),
        (["flatten", {"batch_norm": {"axis": 2}}], r"^model\.layers\.1\.batch_norm: axis 2 "),
        ("flatten", r"^model\.layers: expected a non-empty list"),
        ([], r"^model\.layers: expected a non-empty list"),
    ],
)
def test_errors_name_the_dotted_path(layers, message) -> None:
    with pytest.raises(UserInputError, match=message):
        build_model([28, 28], layers)


def test_bad_input_shape_is_reported_at_its_path() -> None:
    with pytest.raises(UserInputError, match=r"^model\.input_shape: "):
        build_model([28, 0], SEED_MODEL)


def test_summary_matches_keras_for_the_bn_model() -> None:
    model = build_model([28, 28], BN_MODEL)
    assert count_params(model) == (271_346, 268_978, 2_368)
    rows = summarize(model)
    assert [row.name for row in rows] == [
        "flatten",
        "batch_norm",
        "dense",
        "batch_norm_1",
        "dense_1",
        "batch_norm_2",
        "dense_2",
    ]
    assert [row.params for row in rows] == [0, 3_136, 235_500, 1_200, 30_100, 400, 1_010]
    assert rows[1].type == "BatchNormalization" and rows[1].output_shape == (784,)
    text = format_summary(model)
    for line in (
        "Total params: 271,346",
        "Trainable params: 268,978",
        "Non-trainable params: 2,368",
        "dense_2 (Dense)",
        "(None, 300)",
    ):
        assert line in text


def test_summary_reflects_frozen_layers() -> None:
    model = build_model([28, 28], SEED_MODEL)
    model[1].trainable = False
    assert count_params(model).trainable == 266_610 - 235_500
    assert [row.trainable for row in summarize(model)][:3] == [True, False, True]
    assert "dense (Dense)" in format_summary(model)


def test_sequential_keeps_shapes_through_slicing_and_editing() -> None:
    model = build_model([28, 28], SEED_MODEL)
    body = model[1:5]
    assert isinstance(body, Sequential)
    assert body.input_shape == (784,) and body.output_shape == (100,)
    assert [name for name, _ in body.named_children()] == ["1", "2", "3", "4"]
    model[-1] = Dense(units=5, activation="softmax")
    assert model.output_shape == (5,) and model[-1].weight.shape == (5, 100)
    model.append(nn.Linear(5, 2))
    assert model.output_shape == (2,)
    assert model.final_activation is None
    assert model.forward_logits(torch.rand(3, 28, 28)).shape == (3, 2)
    with pytest.raises(ValueError, match="keep the per-sample shape"):
        model.insert(1, Dense(units=7))


def test_sequential_builds_python_layers_in_order() -> None:
    torch.manual_seed(1)
    model = Sequential(Flatten(), Dense(units=4), nn.ReLU(), input_shape=(2, 3))
    torch.manual_seed(1)
    reference = torch.empty(4, 6)
    nn.init.xavier_uniform_(reference)
    assert torch.equal(model[1].weight, reference)
    assert model.output_shape == (4,)


CONV = {"conv2d": {"filters": 2, "kernel_size": 3}}
NOT_AN_IMAGE = "conv2d expects samples of shape (height, width, channels), got "


@pytest.mark.parametrize(
    ("layers", "message"),
    [
        # The model's input reaches the convolution: a channel axis on it is the fix.
        ([CONV], "model.layers.0.conv2d: " + NOT_AN_IMAGE + "(28, 28); use input_shape [28, 28, 1]"),
        (["relu", {"dropout": {"rate": 0.1}}, {"batch_norm": {}}, CONV],
         "model.layers.3.conv2d: " + NOT_AN_IMAGE + "(28, 28); use input_shape [28, 28, 1]"),
        ([{"residual": {"layers": [CONV]}}],
         "model.layers.0.residual.layers.0.conv2d: " + NOT_AN_IMAGE
         + "(28, 28); use input_shape [28, 28, 1]"),
        # A dense layer's outputs: another input shape would not make them an image.
        ([{"dense": {"units": 10}}, CONV],
         "model.layers.1.conv2d: " + NOT_AN_IMAGE + "(28, 10) from model.layers.0.dense; to "
         "read them as one-channel images, add the layer {reshape: {target_shape: [28, 10, 1]}} "
         "before it"),
        # Even where they keep the input's shape: given (28, 28, 1) it would give (28, 28, 28).
        ([{"dense": {"units": 28}}, CONV],
         "model.layers.1.conv2d: " + NOT_AN_IMAGE + "(28, 28) from model.layers.0.dense; to "
         "read them as one-channel images, add the layer {reshape: {target_shape: [28, 28, 1]}} "
         "before it"),
        ([{"dense": {"units": 10}}, {"residual": {"layers": [CONV]}}],
         "model.layers.1.residual.layers.0.conv2d: " + NOT_AN_IMAGE + "(28, 10) from "
         "model.layers.0.dense; to read them as one-channel images, add the layer "
         "{reshape: {target_shape: [28, 10, 1]}} before it"),
        # Flat samples: which image they were is not for the message to guess.
        (["flatten", CONV], "model.layers.1.conv2d: " + NOT_AN_IMAGE
         + "(784,) from model.layers.0.flatten"),
    ],
)
def test_a_layer_that_needs_images_is_told_what_to_change(layers, message) -> None:
    with pytest.raises(UserInputError) as caught:
        build_model([28, 28], layers)
    assert str(caught.value) == message


def test_image_advice_needs_to_know_the_model_input() -> None:
    # Layers built on their own (new layers on a reused model's outputs, say) may not
    # take the model's input: no input shape is suggested.
    with pytest.raises(UserInputError) as caught:
        build_layers((28, 10), [CONV])
    assert str(caught.value) == "model.layers.0.conv2d: " + NOT_AN_IMAGE + "(28, 10)"
    with model_input([28, 10]), pytest.raises(UserInputError) as caught:
        build_layers((28, 10), ["relu", CONV])
    assert str(caught.value) == ("model.layers.1.conv2d: " + NOT_AN_IMAGE
                                 + "(28, 10); use input_shape [28, 10, 1]")


def test_not_an_image_error_survives_a_process_boundary() -> None:
    error = pickle.loads(pickle.dumps(NotAnImageError("conv2d", (28, 10))))
    assert isinstance(error, UserInputError)
    assert (error.layer, error.input_shape) == ("conv2d", (28, 10))
    assert str(error) == NOT_AN_IMAGE + "(28, 10)"
