"""Pooling against float64 NumPy loops with Keras's (TensorFlow's) 'same' semantics: padded
cells never win a max nor count in an average, the odd padding pixel at the bottom/right."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from tricklab.errors import UserInputError
from tricklab.nn import build_model, layers, resolve_layers
from tricklab.nn.pooling import AveragePooling2D, GlobalAveragePooling2D, MaxPooling2D


def pair(value):
    return (value, value) if isinstance(value, int) else tuple(value)


def reference_pool(x, pool_size, strides, padding, reduce):
    """Pool NHWC `x` over the real cells of each window; TensorFlow's 'SAME' placement."""
    _, height, width, _ = x.shape
    starts = []
    for size, window, stride in zip((height, width), pool_size, strides, strict=True):
        if padding == "same":
            count = math.ceil(size / stride)
            total = max((count - 1) * stride + window - size, 0)
            starts.append([i * stride - total // 2 for i in range(count)])
        else:
            starts.append([i * stride for i in range((size - window) // stride + 1)])
    y = np.empty((x.shape[0], len(starts[0]), len(starts[1]), x.shape[3]))
    for i, top in enumerate(starts[0]):
        for j, left in enumerate(starts[1]):
            window = x[:, max(top, 0):top + pool_size[0], max(left, 0):left + pool_size[1]]
            y[:, i, j] = reduce(window, axis=(1, 2))
    return y


def run_channels_last(layer, x: np.ndarray) -> np.ndarray:
    return layer(torch.from_numpy(x).permute(0, 3, 1, 2)).permute(0, 2, 3, 1).numpy()


def built(layer, shape):
    layer.build(tuple(shape))
    return layer


POOLS = [(MaxPooling2D, np.max), (AveragePooling2D, np.mean)]


@pytest.mark.parametrize(("factory", "reduce"), POOLS)
@pytest.mark.parametrize(
    ("size", "pool_size", "strides", "padding"),
    [
        ((8, 8), 2, None, "valid"),
        ((7, 9), 2, None, "valid"),  # the last row and column are dropped
        ((7, 9), 3, [2, 3], "valid"),
        ((7, 9), 2, None, "same"),  # pads the bottom and right only
        ((6, 6), 2, 1, "same"),  # stride 1, even window: one pixel after
        ((6, 7), [3, 4], 1, "same"),
        ((7, 8), 3, 2, "same"),
        ((5, 5), 4, 3, "same"),
        ((2, 3), 5, 4, "same"),  # the window is larger than the image
        ((9, 5), [2, 3], [3, 2], "same"),
    ],
)
def test_pooling_matches_keras(factory, reduce, size, pool_size, strides, padding):
    layer = built(factory(pool_size=pool_size, strides=strides, padding=padding), (*size, 3))
    x = np.random.default_rng(0).normal(size=(2, *size, 3))
    expected = reference_pool(x, pair(pool_size), pair(strides or pool_size), padding, reduce)
    assert layer.compute_output_shape((*size, 3)) == expected.shape[1:]
    np.testing.assert_allclose(run_channels_last(layer, x), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(("factory", "reduce"), POOLS)
def test_every_small_same_and_valid_configuration_matches_keras(factory, reduce):
    rng = np.random.default_rng(1)
    for size, window, stride, padding in itertools.product(
        range(1, 8), range(1, 5), range(1, 5), ("same", "valid")
    ):
        shape = (size, size + 2, 2)
        if padding == "valid" and window > size:
            continue
        layer = built(factory(pool_size=[window, 2], strides=[stride, 1], padding=padding), shape)
        x = rng.normal(size=(1, *shape))
        expected = reference_pool(x, (window, 2), (stride, 1), padding, reduce)
        assert layer.compute_output_shape(shape) == expected.shape[1:]
        np.testing.assert_allclose(run_channels_last(layer, x), expected, rtol=1e-12,
                                   err_msg=f"{size=} {window=} {stride=} {padding=}")


def test_padded_cells_never_win_a_max_nor_count_in_an_average():
    x = torch.full((1, 1, 5, 5), -3.0)
    for strides in (1, 2):
        maximum = built(MaxPooling2D(pool_size=2, strides=strides, padding="same"), (5, 5, 1))
        assert torch.equal(maximum(x), torch.full_like(maximum(x), -3.0))
        average = built(AveragePooling2D(pool_size=4, strides=strides, padding="same"), (5, 5, 1))
        assert torch.allclose(average(x), torch.full_like(average(x), -3.0))


def test_same_padding_puts_the_odd_pixel_at_the_bottom_and_right():
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    average = built(AveragePooling2D(pool_size=2, strides=1, padding="same"), (4, 4, 1))
    y = average(x)
    assert y[0, 0, 0, 0] == (0 + 1 + 4 + 5) / 4  # no padding before
    assert y[0, 0, 3, 3] == 15.0  # only the last cell is real
    assert y[0, 0, 3, 0] == (12 + 13) / 2


def test_defaults_and_shapes():
    _, config = layers.resolve("max_pool2d")
    assert config == {"pool_size": 2, "strides": None, "padding": "valid"}
    _, config = layers.resolve("global_avg_pool2d")
    assert config == {"keepdims": False}
    layer = MaxPooling2D(pool_size=[3, 2])
    assert layer.strides == (3, 2)
    assert layer.compute_output_shape((28, 28, 4)) == (9, 14, 4)
    assert AveragePooling2D(strides=3, padding="same").compute_output_shape((28, 28, 4)) == (
        10, 10, 4)
    assert list(layer.parameters()) == []


def test_global_average_pooling():
    x = torch.randn(3, 4, 5, 6, dtype=torch.float64)
    layer = built(GlobalAveragePooling2D(), (5, 6, 4))
    assert layer.compute_output_shape((5, 6, 4)) == (4,)
    expected = x.numpy().mean(axis=(2, 3))
    np.testing.assert_allclose(layer(x).numpy(), expected, rtol=1e-12)
    keep = built(GlobalAveragePooling2D(keepdims=True), (5, 6, 4))
    assert keep.compute_output_shape((5, 6, 4)) == (1, 1, 4)
    assert keep(x).shape == (3, 4, 1, 1)
    model = build_model([5, 6, 4], ["global_avg_pool2d", {"dense": {"units": 2}}])
    channels_last = x.permute(0, 2, 3, 1).float()
    dense = model[1]
    with torch.no_grad():
        np.testing.assert_allclose(
            model(channels_last).numpy(),
            (torch.from_numpy(expected).float() @ dense.weight.T + dense.bias).numpy(),
            rtol=1e-5, atol=1e-6)
    keep_model = build_model([5, 6, 4], [{"global_avg_pool2d": {"keepdims": True}}])
    assert keep_model.output_shape == (1, 1, 4) and keep_model(channels_last).shape == (3, 1, 1, 4)


@pytest.mark.parametrize(
    ("input_shape", "entry", "message"),
    [
        ([28, 28], "max_pool2d",
         "model.layers.0.max_pool2d: max_pool2d expects samples of shape (height, width, channels), got (28, 28); use input_shape [28, 28, 1]"),
        ([10], "global_avg_pool2d",
         "model.layers.0.global_avg_pool2d: global_avg_pool2d expects samples of shape (height, width, channels), got (10,)"),
        ([3, 5, 2], {"avg_pool2d": {"pool_size": 4}},
         "model.layers.0.avg_pool2d: avg_pool2d with padding 'valid' gives an empty output for samples of shape (3, 5, 2): the 4×4 pool does not fit in the 3×5 image; use padding 'same' or a smaller window"),
    ],
)
def test_shape_errors_name_the_problem(input_shape, entry, message):
    with pytest.raises(UserInputError) as caught:
        build_model(input_shape, [entry])
    assert str(caught.value) == message


def test_argument_errors_name_the_field():
    with pytest.raises(UserInputError) as caught:
        resolve_layers([{"max_pool2d": {"pool_size": [2, 0]}}])
    assert str(caught.value) == (
        "model.layers.0.max_pool2d.pool_size: value error, expected a positive integer or a "
        "list of two, e.g. [3, 3] (got [2, 0])")
    with pytest.raises(UserInputError, match=r"^model\.layers\.0\.avg_pool2d\.padding: "):
        resolve_layers([{"avg_pool2d": {"padding": "causal"}}])
    with pytest.raises(UserInputError, match=r"^model\.layers\.0\.avg_pool2d\.strides: "):
        resolve_layers([{"avg_pool2d": {"strides": "2"}}])
