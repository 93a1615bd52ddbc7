"""`deterministic_in_training` is true of every registered layer exactly when it claims it,
and `Sequential.frozen_prefix_length` finds the bottom whose outputs can be cached."""

from __future__ import annotations

import pytest
import torch
from tests.nn.test_layers import example, example_batch

from tricklab.errors import UserInputError
from tricklab.nn import build_model, layers, resolve_layers


def frozen_layer(name: str, config: dict):
    arguments, shape = example(name)
    layer = layers.create(name, {**arguments, **config})
    layer.build(shape)
    layer.trainable = False
    return layer.train()


def behaves_deterministically(layer, name: str) -> bool:
    """Two training-mode passes agree, and a sample's output does not depend on its batch."""
    torch.manual_seed(0)
    batch = example_batch(name, 32)
    first, second = layer(batch), layer(batch)
    alone = layer(batch[:4].clone())
    return torch.equal(first, second) and torch.allclose(first[:4], alone, atol=1e-6)


@pytest.mark.parametrize("name", layers.names())
def test_each_layer_is_deterministic_in_training_exactly_when_it_says_so(name):
    layer = frozen_layer(name, {})
    assert layer.deterministic_in_training == behaves_deterministically(layer, name)


@pytest.mark.parametrize(
    ("name", "config", "deterministic"),
    [("dropout", {"rate": 0.5}, False), ("dropout", {"rate": 0.0}, True),
     ("rrelu", {}, False), ("rrelu", {"lower": 0.2, "upper": 0.2}, True),
     ("dense", {"activation": "rrelu"}, False), ("dense", {"activation": "selu"}, True)],
)
def test_determinism_follows_the_configuration(name, config, deterministic):
    layer = frozen_layer(name, config)
    assert layer.deterministic_in_training is deterministic
    assert behaves_deterministically(layer, name) is deterministic


def test_trainable_batch_norm_depends_on_the_batch_and_frozen_does_not():
    layer = frozen_layer("batch_norm", {})
    assert layer.deterministic_in_training
    layer.trainable = True
    assert not layer.deterministic_in_training
    assert not behaves_deterministically(layer, "batch_norm")


STACK = [
    "flatten",
    {"dense": {"units": 8, "trainable": False}},
    {"batch_norm": {"trainable": False}},
    {"dense": {"units": 8}},
    {"dense": {"units": 3, "activation": "softmax"}},
]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({}, 3),
        ({3: {"dense": {"units": 8, "trainable": False}}}, 4),
        ({2: {"batch_norm": {}}}, 2),  # trainable batch norm uses batch statistics
        ({2: {"dropout": {"rate": 0.3}}}, 2),
        ({1: {"dense": {"units": 8}}}, 0),  # a flatten alone is not worth caching
        ({3: {"dense": {"units": 8, "trainable": False}},
          4: {"dense": {"units": 3, "trainable": False}}}, 4),  # never the whole model
    ],
)
def test_frozen_prefix_length(change, expected):
    stack = [change.get(index, entry) for index, entry in enumerate(STACK)]
    model = build_model([2, 3], stack)
    assert model.frozen_prefix_length() == expected


def test_trainable_false_in_a_layer_entry_freezes_it_and_shows_in_the_resolved_list():
    model = build_model([2, 3], STACK)
    assert [layer.trainable for layer in model] == [True, False, False, True, True]
    assert not any(p.requires_grad for p in model[1].parameters())
    resolved = resolve_layers(STACK)
    assert resolved[1]["dense"]["trainable"] is False
    assert "trainable" not in resolved[3]["dense"]


def test_a_non_boolean_trainable_is_named():
    with pytest.raises(UserInputError, match=r"^model\.layers\.1\.dense\.trainable: expected true"):
        resolve_layers(["flatten", {"dense": {"units": 3, "trainable": "no"}}])
