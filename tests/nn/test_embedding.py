"""Embedding: lookup, float ids, Keras's initializer and fans, regularizer, constraint, shapes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tricklab.errors import UserInputError
from tricklab.nn import build_model, count_params, layers, resolve_layers
from tricklab.nn.embedding import Embedding


def built(input_dim: int, output_dim: int, input_shape: tuple[int, ...], **config) -> Embedding:
    layer = Embedding(input_dim=input_dim, output_dim=output_dim, **config)
    layer.build(input_shape)
    return layer


def test_lookup_of_integer_and_float_ids():
    layer = built(10, 3, (4,))
    table = layer.embeddings.detach().numpy()
    ids = np.array([[0, 9, 3, 3], [5, 1, 0, 2]])
    expected = table[ids]
    np.testing.assert_array_equal(layer(torch.tensor(ids)).detach().numpy(), expected)
    # Ids held as floats (as a dataset of numbers holds them) are cast as Keras casts them.
    floats = torch.tensor(ids, dtype=torch.float32)
    np.testing.assert_array_equal(layer(floats).detach().numpy(), expected)
    np.testing.assert_array_equal(layer(floats + 0.4).detach().numpy(), expected)
    assert layer.compute_output_shape((4,)) == (4, 3)


def test_gradients_reach_only_the_looked_up_rows():
    layer = built(6, 2, (3,))
    layer(torch.tensor([[1, 1, 4]])).sum().backward()
    expected = torch.zeros(6, 2)
    expected[1], expected[4] = 2.0, 1.0
    assert torch.equal(layer.embeddings.grad, expected)


def test_keras_uniform_initializer_is_the_default_and_shows_in_the_recipe():
    ((_, config),) = resolve_layers([{"embedding": {"input_dim": 5, "output_dim": 2}}])[0].items()
    assert config == {
        "input_dim": 5,
        "output_dim": 2,
        "embeddings_initializer": {"random_uniform": {"minval": -0.05, "maxval": 0.05}},
        "embeddings_regularizer": None,
        "embeddings_constraint": None,
    }
    torch.manual_seed(0)
    table = built(1000, 50, (3,)).embeddings.detach()
    assert table.shape == (1000, 50)
    assert 0.049 < table.abs().max().item() <= 0.05
    assert table.std().item() == pytest.approx(0.1 / math.sqrt(12), rel=0.02)


def test_initializers_see_keras_fans():
    # Keras's table is (input_dim, output_dim) with fan_in = input_dim.
    torch.manual_seed(1)
    table = built(1000, 8, (3,), embeddings_initializer="he_uniform").embeddings.detach()
    limit = math.sqrt(6 / 1000)
    assert 0.95 * limit < table.abs().max().item() <= limit


def test_parameter_count_and_registry_name():
    model = build_model([7], [{"embedding": {"input_dim": 100, "output_dim": 16}}])
    assert count_params(model).trainable == 100 * 16
    assert model.output_shape == (7, 16)
    assert [name for name, _ in model[0].named_parameters()] == ["embeddings"]


def test_regularizer_and_constraint_on_keras_axes():
    model = build_model([3], [{"embedding": {
        "input_dim": 6, "output_dim": 4,
        "embeddings_regularizer": {"l2": {"l2": 0.5}},
        "embeddings_constraint": {"max_norm": {"max_value": 1.0, "axis": 1}},
    }}])
    layer = model[0]
    torch.testing.assert_close(model.regularization_loss(), 0.5 * layer.embeddings.square().sum())
    with torch.no_grad():
        layer.embeddings.mul_(100)
    model.apply_constraints()
    # Keras axis 1 of (input_dim, output_dim): each id's vector is bounded.
    norms = torch.linalg.vector_norm(layer.embeddings, dim=1)
    assert norms.max() <= 1.0 + 1e-6 and norms.min() > 0.99


def test_sequences_of_ids_feed_a_recurrent_layer():
    torch.manual_seed(2)
    model = build_model([5], [{"embedding": {"input_dim": 10, "output_dim": 4}},
                              {"lstm": {"units": 3}}])
    out = model(torch.randint(10, (2, 5)).float())
    assert out.shape == (2, 3)


def test_image_shaped_inputs_and_outputs_follow_the_held_layout():
    # Ids of shape (h, w) give vectors (h, w, d): an image, held channels-first in a model.
    torch.manual_seed(3)
    ids = torch.randint(10, (2, 5, 7))
    model = build_model([5, 7], [{"embedding": {"input_dim": 10, "output_dim": 4}}, "flatten"])
    table = model[0].embeddings.detach()
    torch.testing.assert_close(model(ids), table[ids].flatten(1))
    # Ids of shape (h, w, c) arrive channels-first and leave as (h, w, c, d).
    image_ids = torch.randint(10, (2, 5, 7, 3))
    model = build_model([5, 7, 3], [{"embedding": {"input_dim": 10, "output_dim": 4}}])
    torch.testing.assert_close(model(image_ids), model[0].embeddings.detach()[image_ids])


def test_bad_arguments_are_named():
    with pytest.raises(UserInputError, match=r"^Embedding\.input_dim: "):
        Embedding(input_dim=0, output_dim=3)
    with pytest.raises(UserInputError, match=r"^Embedding\.output_dim: "):
        Embedding(input_dim=3, output_dim=-1)
    with pytest.raises(UserInputError, match=r"^model\.layers\.0\.embedding: unknown key 'mask_zero'"):
        layers.resolve({"embedding": {"input_dim": 3, "output_dim": 2, "mask_zero": True}},
                       "model.layers.0")
