"""Reshape: Keras semantics on channels-last samples, -1 inference, views, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tricklab.errors import UserInputError
from tricklab.nn import build_model, layers
from tricklab.nn.base import channels_first
from tricklab.nn.reshaping import Reshape


@pytest.mark.parametrize(
    ("input_shape", "target_shape", "output_shape"),
    [
        ((6,), [3, 2], (3, 2)),
        ((6,), [-1, 2], (3, 2)),
        ((3, 8), [2, -1, 3], (2, 4, 3)),  # a sequence to an image
        ((2, 3, 4), [24], (24,)),  # an image to a flat vector
        ((2, 3, 4), [6, -1], (6, 4)),  # an image to a sequence
        ((4, 4, 2), [2, 8, 2], (2, 8, 2)),  # an image to one with as many channels
        ((4, 4, 2), [4, 2, 4], (4, 2, 4)),  # an image to one with other channels
        ((4, 6, 3), [-1, 2, 6], (6, 2, 6)),
    ],
)
def test_reshape_is_numpy_reshape_of_channels_last_samples(
    input_shape, target_shape, output_shape
) -> None:
    model = build_model(input_shape, [{"reshape": {"target_shape": target_shape}}])
    assert model.output_shape == output_shape
    # Distinct values, so any misplaced element shows.
    x = np.arange(5 * np.prod(input_shape), dtype=np.float64).reshape(5, *input_shape)
    expected = np.reshape(x, (5, *output_shape))
    np.testing.assert_array_equal(model(torch.tensor(x)).numpy(), expected)


def test_a_dense_layer_after_an_image_reshape_reads_the_keras_channels() -> None:
    # (6,) -> (1, 3, 2): two channels, which the Dense layer mixes as Keras's would.
    model = build_model([6], [{"reshape": {"target_shape": [1, 3, 2]}},
                              {"dense": {"units": 1, "use_bias": False}}]).double()
    x = np.random.default_rng(0).normal(size=(4, 6))
    weight = model[1].weight.detach().numpy()  # (units, channels)
    expected = x.reshape(4, 1, 3, 2) @ weight.T
    np.testing.assert_allclose(model(torch.tensor(x)).detach().numpy(), expected, rtol=1e-12)


@pytest.mark.parametrize(
    ("input_shape", "target_shape"),
    [((6,), [2, 3]), ((2, 3), [3, 2]), ((6,), [1, 3, 2]), ((4, 4, 2), [2, 8, 2]),
     ((4, 4, 1), [16])],
)
def test_forward_is_a_view_where_the_held_layouts_allow(input_shape, target_shape) -> None:
    layer = Reshape(target_shape=target_shape)
    layer.build(input_shape)
    held = (input_shape[-1], *input_shape[:-1]) if len(input_shape) == 3 else input_shape
    x = torch.randn(3, *held)
    y = layer(x)
    assert y._base is x
    assert y.data_ptr() == x.data_ptr()


def test_an_image_with_several_channels_to_a_flat_vector_follows_keras_order() -> None:
    layer = Reshape(target_shape=[-1])
    layer.build((2, 2, 3))
    keras = torch.arange(24.0).reshape(2, 2, 2, 3)
    assert torch.equal(layer(channels_first(keras)), keras.reshape(2, 12))


@pytest.mark.parametrize(
    ("target_shape", "message"),
    [
        ([4, 2], r"^model\.layers\.0\.reshape: target_shape \[4, 2\] holds 8 values but the "
                 r"input shape \(2, 3\) has 6$"),
        ([4, -1], r"^model\.layers\.0\.reshape: target_shape \[4, -1\] cannot hold the input "
                  r"shape \(2, 3\): 6 values are not a multiple of 4$"),
        ([-1, -1], r"^model\.layers\.0\.reshape\.target_shape: .*at most one size may be -1"),
        ([3, 0, 2], r"^model\.layers\.0\.reshape\.target_shape: .*sizes must be positive"),
        ([], r"^model\.layers\.0\.reshape\.target_shape: "),
        ("six", r"^model\.layers\.0\.reshape\.target_shape: "),
    ],
)
def test_errors_name_target_shape_the_input_shape_and_the_counts(target_shape, message) -> None:
    with pytest.raises(UserInputError, match=message):
        build_model([2, 3], [{"reshape": {"target_shape": target_shape}}])


def test_config_round_trips_and_target_shape_is_required() -> None:
    _, config = layers.resolve({"reshape": {"target_shape": [-1, 3]}})
    assert config == {"target_shape": [-1, 3]}
    assert Reshape.from_config(config).get_config() == config
    with pytest.raises(UserInputError, match=r"^model\.layers\.0\.reshape\.target_shape: required"):
        layers.resolve("reshape", "model.layers.0")
