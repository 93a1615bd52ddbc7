"""Convolutions against float64 NumPy loops in Keras's own layouts and padding rules; Keras's
output shapes, initializer fans, constraint axes; regularizers, errors, a LeNet-5-like stack.

The references work on channels-last arrays with Keras's kernel layouts, so they also check
how the layers lay Keras's kernels out in PyTorch's.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from tricklab.errors import UserInputError
from tricklab.nn import build_model, layers, resolve_layers
from tricklab.nn.convolutional import Conv2D
from tricklab.nn.separable_convolution import SeparableConv2D
from tricklab.nn.transposed_convolution import Conv2DTranspose
from tricklab.nn.variance_scaling import TRUNCATION_STDDEV


def pair(value):
    return (value, value) if isinstance(value, int) else tuple(value)


def keras_same_padding(size, extent, stride):
    """TensorFlow's 'SAME' padding of one axis: (before, after), the odd pixel after."""
    total = max((math.ceil(size / stride) - 1) * stride + extent - size, 0)
    return total // 2, total - total // 2


def extents(kernel_size, dilation):
    return tuple((k - 1) * d + 1 for k, d in zip(kernel_size, dilation, strict=True))


def reference_conv2d(x, kernel, bias, strides, padding, dilation):
    """Cross-correlation of NHWC `x` with a Keras kernel (kh, kw, in, out), Keras's padding."""
    n, height, width, _ = x.shape
    kh, kw, _, out = kernel.shape
    (sh, sw), (dh, dw) = strides, dilation
    eh, ew = extents((kh, kw), dilation)
    if padding == "same":
        (top, bottom), (left, right) = (
            keras_same_padding(height, eh, sh), keras_same_padding(width, ew, sw))
    else:
        top = bottom = left = right = 0
    padded = np.zeros((n, height + top + bottom, width + left + right, x.shape[3]))
    padded[:, top:top + height, left:left + width] = x
    rows, cols = (padded.shape[1] - eh) // sh + 1, (padded.shape[2] - ew) // sw + 1
    y = np.zeros((n, rows, cols, out))
    for i in range(rows):
        for j in range(cols):
            for u in range(kh):
                for v in range(kw):
                    y[:, i, j] += padded[:, i * sh + u * dh, j * sw + v * dw] @ kernel[u, v]
    return y + bias


def reference_conv2d_transpose(x, kernel, bias, strides, padding, dilation):
    """Scatter-add definition on NHWC `x` with a Keras kernel (kh, kw, out, in); the canvas is
    cropped (TensorFlow's 'SAME') or zero-extended to Keras's output size."""
    n, height, width, _ = x.shape
    kh, kw, out, _ = kernel.shape
    (sh, sw), (dh, dw) = strides, dilation
    eh, ew = extents((kh, kw), dilation)
    canvas = np.zeros((n, (height - 1) * sh + eh, (width - 1) * sw + ew, out))
    for i in range(height):
        for j in range(width):
            for u in range(kh):
                for v in range(kw):
                    canvas[:, i * sh + u * dh, j * sw + v * dw] += x[:, i, j] @ kernel[u, v].T
    if padding == "same":
        rows, cols = height * sh, width * sw
        top, left = keras_same_padding(rows, eh, sh)[0], keras_same_padding(cols, ew, sw)[0]
    else:
        rows, cols = (height - 1) * sh + max(eh, sh), (width - 1) * sw + max(ew, sw)
        top = left = 0
    kept = canvas[:, top:top + rows, left:left + cols]
    y = np.zeros((n, rows, cols, out))
    y[:, :kept.shape[1], :kept.shape[2]] = kept
    return y + bias


def reference_separable_conv2d(x, depthwise, pointwise, bias, strides, padding, dilation):
    """Depthwise (kh, kw, in, m), output channel c·m + k as TensorFlow orders them, then
    pointwise (1, 1, in·m, filters)."""
    channels, multiplier = depthwise.shape[2:]
    z = np.concatenate(
        [reference_conv2d(x[..., c:c + 1], depthwise[:, :, c:c + 1, k:k + 1], 0.0, strides,
                          padding, dilation)
         for c in range(channels) for k in range(multiplier)],
        axis=-1,
    )
    return z @ pointwise[0, 0] + bias


def keras_kernel(weight: torch.Tensor) -> np.ndarray:
    """A conv2d kernel (out, in, kh, kw), or conv2d_transpose's (in, out, kh, kw), in
    Keras's layout (kh, kw, in, out), resp. (kh, kw, out, in)."""
    return weight.detach().permute(2, 3, 1, 0).numpy()


def run_channels_last(layer, x: np.ndarray) -> np.ndarray:
    """The layer on a channels-last batch, as a model runs it (channels-first inside)."""
    with torch.no_grad():
        y = layer(torch.from_numpy(x).permute(0, 3, 1, 2))
    return y.permute(0, 2, 3, 1).numpy()


def built(layer, shape):
    layer.build(tuple(shape))
    return layer.double()


def randomized_bias(layer):
    with torch.no_grad():
        layer.bias.normal_()
    return layer.bias.detach().numpy()


CONV_CASES = [
    # (height, width), kernel_size, strides, padding, dilation_rate
    ((7, 6), 3, 1, "valid", 1),
    ((7, 6), 3, 1, "same", 1),
    ((7, 6), [2, 3], 1, "same", 1),  # even kernel: the odd pixel goes bottom
    ((7, 8), 3, 2, "same", 1),  # height padded evenly, width unevenly
    ((7, 6), [3, 2], [2, 3], "valid", 1),
    ((5, 5), 4, 3, "same", 1),
    ((6, 6), 1, 2, "same", 1),  # no padding at all
    ((9, 8), 3, 1, "same", [2, 3]),
    ((9, 8), 3, 1, "valid", 2),
    ((8, 9), [4, 2], 1, "same", [1, 2]),
]


@pytest.mark.parametrize(("size", "kernel_size", "strides", "padding", "dilation"), CONV_CASES)
def test_conv2d_is_keras_cross_correlation(size, kernel_size, strides, padding, dilation):
    torch.manual_seed(0)
    layer = built(Conv2D(filters=4, kernel_size=kernel_size, strides=strides, padding=padding,
                         dilation_rate=dilation), (*size, 3))
    bias = randomized_bias(layer)
    x = np.random.default_rng(0).normal(size=(2, *size, 3))
    expected = reference_conv2d(x, keras_kernel(layer.weight), bias, pair(strides), padding,
                                pair(dilation))
    assert layer.compute_output_shape((*size, 3)) == expected.shape[1:]
    np.testing.assert_allclose(run_channels_last(layer, x), expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(("size", "kernel_size", "strides", "padding", "dilation"), CONV_CASES)
def test_separable_conv2d_is_depthwise_then_pointwise(size, kernel_size, strides, padding,
                                                      dilation):
    torch.manual_seed(0)
    layer = built(SeparableConv2D(filters=4, kernel_size=kernel_size, strides=strides,
                                  padding=padding, dilation_rate=dilation, depth_multiplier=2),
                  (*size, 3))
    bias = randomized_bias(layer)
    kh, kw = pair(kernel_size)
    assert layer.depthwise_weight.shape == (6, 1, kh, kw)
    depthwise = layer.depthwise_weight.detach().reshape(3, 2, kh, kw).permute(2, 3, 0, 1).numpy()
    x = np.random.default_rng(1).normal(size=(2, *size, 3))
    expected = reference_separable_conv2d(x, depthwise, keras_kernel(layer.pointwise_weight),
                                          bias, pair(strides), padding, pair(dilation))
    assert layer.compute_output_shape((*size, 3)) == expected.shape[1:]
    np.testing.assert_allclose(run_channels_last(layer, x), expected, rtol=1e-10, atol=1e-12)


TRANSPOSE_CASES = [
    # kernel_size, strides, padding, dilation_rate
    (3, 1, "valid", 1),
    (3, 2, "valid", 1),
    (2, 3, "valid", 1),  # stride beyond the kernel: zeros between the copies and at the end
    (3, 2, "same", 1),  # uneven crop: one pixel more at the bottom/right
    (4, 2, "same", 1),
    ([3, 4], [2, 3], "same", 1),
    (5, 3, "same", 1),
    (1, 2, "same", 1),  # kernel below the stride: nothing cropped, zeros appended
    (2, 1, "same", 1),
    (3, 1, "same", 2),
    ([2, 3], 1, "valid", [2, 1]),
]


@pytest.mark.parametrize(("kernel_size", "strides", "padding", "dilation"), TRANSPOSE_CASES)
def test_conv2d_transpose_is_the_keras_scatter_add(kernel_size, strides, padding, dilation):
    torch.manual_seed(0)
    layer = built(Conv2DTranspose(filters=4, kernel_size=kernel_size, strides=strides,
                                  padding=padding, dilation_rate=dilation), (3, 4, 2))
    bias = randomized_bias(layer)
    x = np.random.default_rng(2).normal(size=(2, 3, 4, 2))
    expected = reference_conv2d_transpose(x, keras_kernel(layer.weight), bias, pair(strides),
                                          padding, pair(dilation))
    assert layer.compute_output_shape((3, 4, 2)) == expected.shape[1:]
    np.testing.assert_allclose(run_channels_last(layer, x), expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(("kernel_size", "strides", "padding", "dilation"), TRANSPOSE_CASES)
def test_conv2d_transpose_is_the_adjoint_of_the_keras_convolution(kernel_size, strides, padding,
                                                                  dilation):
    # <conv(z), x> = <z, conv_transpose(x)>: the crop is where Keras's forward padding is.
    torch.manual_seed(0)
    layer = built(Conv2DTranspose(filters=4, kernel_size=kernel_size, strides=strides,
                                  padding=padding, dilation_rate=dilation, use_bias=False),
                  (3, 4, 2))
    rows, cols, _ = layer.compute_output_shape((3, 4, 2))
    rng = np.random.default_rng(3)
    x, z = rng.normal(size=(2, 3, 4, 2)), rng.normal(size=(2, rows, cols, 4))
    forward = reference_conv2d(z, keras_kernel(layer.weight), 0.0, pair(strides), padding,
                               pair(dilation))
    assert forward.shape == x.shape
    assert np.sum(forward * x) == pytest.approx(np.sum(z * run_channels_last(layer, x)),
                                                rel=1e-10)


@pytest.mark.parametrize(
    ("layer", "input_shape", "output_shape"),
    [
        (Conv2D(filters=5, kernel_size=3), (28, 28, 1), (26, 26, 5)),
        (Conv2D(filters=5, kernel_size=3, strides=2, padding="same"), (7, 8, 3), (4, 4, 5)),
        (Conv2D(filters=5, kernel_size=[5, 3], strides=[1, 2]), (9, 9, 3), (5, 4, 5)),
        (Conv2D(filters=5, kernel_size=3, dilation_rate=3), (10, 9, 3), (4, 3, 5)),
        (SeparableConv2D(filters=2, kernel_size=3, strides=3, padding="same"), (10, 9, 3),
         (4, 3, 2)),
        (Conv2DTranspose(filters=5, kernel_size=3, strides=2), (4, 5, 3), (9, 11, 5)),
        (Conv2DTranspose(filters=5, kernel_size=2, strides=3), (4, 5, 3), (12, 15, 5)),
        (Conv2DTranspose(filters=5, kernel_size=3, strides=2, padding="same"), (4, 5, 3),
         (8, 10, 5)),
        (Conv2DTranspose(filters=5, kernel_size=3, dilation_rate=2), (4, 5, 3), (8, 9, 5)),
    ],
)
def test_output_shapes_follow_keras(layer, input_shape, output_shape):
    layer.build(input_shape)
    assert layer.compute_output_shape(input_shape) == output_shape
    y = layer(torch.randn(2, input_shape[2], *input_shape[:2]))
    assert y.shape == (2, output_shape[2], *output_shape[:2])


def test_keras_defaults_and_parameters_in_pytorch_layout():
    _, config = layers.resolve({"conv2d": {"filters": 8, "kernel_size": [3, 5]}})
    assert config == {
        "filters": 8, "kernel_size": [3, 5], "strides": 1, "padding": "valid",
        "dilation_rate": 1, "activation": None, "use_bias": True,
        "kernel_initializer": "glorot_uniform", "bias_initializer": "zeros",
        "kernel_regularizer": None, "bias_regularizer": None,
        "kernel_constraint": None, "bias_constraint": None,
    }
    _, separable = layers.resolve({"separable_conv2d": {"filters": 8, "kernel_size": 3}})
    assert separable["depth_multiplier"] == 1
    assert separable["depthwise_initializer"] == separable["pointwise_initializer"] == (
        "glorot_uniform")
    conv = Conv2D(filters=8, kernel_size=[3, 5])
    conv.build((10, 10, 2))
    assert conv.weight.shape == (8, 2, 3, 5) and torch.equal(conv.bias, torch.zeros(8))
    assert conv.weight_regularizers() == {} and conv.weight_constraints() == {}
    transpose = Conv2DTranspose(filters=8, kernel_size=[3, 5], use_bias=False)
    transpose.build((10, 10, 2))
    assert transpose.weight.shape == (2, 8, 3, 5) and transpose.bias is None
    separable = SeparableConv2D(filters=8, kernel_size=3, depth_multiplier=3)
    separable.build((10, 10, 2))
    assert {name: tuple(p.shape) for name, p in separable.named_parameters()} == {
        "depthwise_weight": (6, 1, 3, 3), "pointwise_weight": (8, 6, 1, 1), "bias": (8,)}


def test_activation_and_logits():
    torch.manual_seed(0)
    layer = built(Conv2D(filters=3, kernel_size=2, activation="softmax"), (4, 4, 2))
    plain = built(Conv2D(filters=3, kernel_size=2), (4, 4, 2))
    plain.load_state_dict(layer.state_dict())
    x = torch.randn(2, 2, 4, 4, dtype=torch.float64)
    assert layer.output_activation == "softmax"
    assert torch.allclose(layer.forward_logits(x), plain(x))
    # Keras's softmax runs over the channels, held at dimension 1.
    assert torch.allclose(layer(x), torch.softmax(plain(x), dim=1))
    relu = built(Conv2DTranspose(filters=3, kernel_size=2, activation="relu"), (4, 4, 2))
    assert relu.output_activation is None
    assert torch.equal(relu.forward_logits(x), relu(x)) and (relu(x) >= 0).all()


def test_conv2d_he_normal_uses_keras_fans():
    torch.manual_seed(0)
    layer = Conv2D(filters=64, kernel_size=5, kernel_initializer="he_normal")
    layer.build((12, 12, 8))
    fan_in = 5 * 5 * 8  # fan_out would be 5 · 5 · 64
    assert layer.weight.var().item() == pytest.approx(2 / fan_in, rel=0.05)
    assert layer.weight.abs().max().item() <= 2 * math.sqrt(2 / fan_in) / TRUNCATION_STDDEV


@pytest.mark.parametrize(
    ("layer", "input_shape", "parameter", "fan_in", "fan_out"),
    [
        (Conv2D(filters=32, kernel_size=3), (6, 6, 8), "weight", 3 * 3 * 8, 3 * 3 * 32),
        # Keras's depthwise kernel (kh, kw, in, m): fan_in kh·kw·in, fan_out kh·kw·m.
        (SeparableConv2D(filters=8, kernel_size=3, depth_multiplier=2), (6, 6, 16),
         "depthwise_weight", 3 * 3 * 16, 3 * 3 * 2),
        (SeparableConv2D(filters=8, kernel_size=3, depth_multiplier=2), (6, 6, 16),
         "pointwise_weight", 32, 8),
        # Keras's transposed kernel (kh, kw, filters, in): fan_in kh·kw·filters.
        (Conv2DTranspose(filters=32, kernel_size=3), (6, 6, 8), "weight", 3 * 3 * 32, 3 * 3 * 8),
    ],
)
def test_glorot_uniform_bounds_use_keras_fans(layer, input_shape, parameter, fan_in, fan_out):
    torch.manual_seed(0)
    layer.build(input_shape)
    limit = math.sqrt(6 / (fan_in + fan_out))
    largest = getattr(layer, parameter).abs().max().item()
    assert 0.9 * limit < largest <= limit


def test_orthogonal_depthwise_kernel_is_orthogonal_in_keras_layout():
    # Keras flattens its depthwise kernel (kh, kw, in, m) to (kh·kw·in, m): orthonormal columns.
    torch.manual_seed(0)
    layer = SeparableConv2D(filters=2, kernel_size=3, depth_multiplier=4,
                            depthwise_initializer="orthogonal")
    layer.build((6, 6, 3))
    keras = layer.depthwise_weight.detach().reshape(3, 4, 3, 3).permute(2, 3, 0, 1)
    columns = keras.reshape(3 * 3 * 3, 4)
    assert torch.allclose(columns.T @ columns, torch.eye(4), atol=1e-5)


def test_conv2d_transpose_he_normal_uses_keras_fans():
    torch.manual_seed(0)
    layer = Conv2DTranspose(filters=16, kernel_size=4, kernel_initializer="he_normal")
    layer.build((5, 5, 4))
    assert layer.weight.var().item() == pytest.approx(2 / (4 * 4 * 16), rel=0.1)


def per_filter_norms(weight, dims):
    return torch.linalg.vector_norm(weight.detach(), dim=dims)


def test_max_norm_over_keras_axes_bounds_each_filter():
    constraint = {"max_norm": {"max_value": 0.5, "axis": [0, 1, 2]}}
    model = build_model([6, 6, 3], [
        {"conv2d": {"filters": 4, "kernel_size": 3, "kernel_constraint": constraint}},
        {"conv2d_transpose": {"filters": 5, "kernel_size": 2, "kernel_constraint": constraint}},
        {"separable_conv2d": {"filters": 2, "kernel_size": 3, "depth_multiplier": 2,
                              "depthwise_constraint": constraint,
                              "pointwise_constraint": constraint}},
    ])
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0.0, 3.0)
    conv, transpose, separable = model
    depthwise_before = separable.depthwise_weight.detach().clone()
    model.apply_constraints()
    # conv2d (out, in, kh, kw): Keras's (kh, kw, in) is each output filter.
    assert per_filter_norms(conv.weight, (1, 2, 3)) == pytest.approx([0.5] * 4, rel=1e-5)
    # conv2d_transpose (in, out, kh, kw): Keras's (kh, kw, out) is each input channel's kernels.
    assert per_filter_norms(transpose.weight, (1, 2, 3)) == pytest.approx([0.5] * 4, rel=1e-5)
    assert per_filter_norms(transpose.weight, (0, 2, 3)) != pytest.approx([0.5] * 5)
    # depthwise (in·m, 1, kh, kw) seen as (in, m, kh, kw): Keras's (kh, kw, in) is each multiplier.
    depthwise = separable.depthwise_weight.reshape(5, 2, 3, 3)
    assert per_filter_norms(depthwise, (0, 2, 3)) == pytest.approx([0.5] * 2, rel=1e-5)
    scale = separable.depthwise_weight.detach() / depthwise_before
    assert torch.allclose(scale.reshape(5, 2, 9), scale.reshape(5, 2, 9)[0, :, 0][None, :, None])
    assert per_filter_norms(separable.pointwise_weight, (1, 2, 3)) == pytest.approx(
        [0.5] * 2, rel=1e-5)


def test_bias_constraint_and_axis_errors():
    model = build_model([5, 5, 2], [{"conv2d": {"filters": 3, "kernel_size": 2,
                                                "bias_constraint": "non_neg"}}])
    with torch.no_grad():
        model[0].bias.fill_(-1.0)
    model.apply_constraints()
    assert torch.equal(model[0].bias, torch.zeros(3))
    with pytest.raises(UserInputError, match=r"^model\.layers\.0\.conv2d: kernel_constraint\.axis: 4 is out of range"):
        build_model([5, 5, 2], [{"conv2d": {"filters": 3, "kernel_size": 2,
                                            "kernel_constraint": {"max_norm": {"axis": 4}}}}])


def test_regularizers_are_collected_by_the_model():
    torch.manual_seed(0)
    model = build_model([6, 6, 2], [
        {"conv2d": {"filters": 3, "kernel_size": 3, "kernel_regularizer": {"l2": {"l2": 0.1}},
                    "bias_regularizer": {"l1": {"l1": 0.2}}}},
        {"separable_conv2d": {"filters": 2, "kernel_size": 2,
                              "depthwise_regularizer": {"l1": {"l1": 0.3}},
                              "pointwise_regularizer": {"l2": {"l2": 0.4}}}},
        {"conv2d_transpose": {"filters": 2, "kernel_size": 2, "use_bias": False,
                              "bias_regularizer": "l2"}},
    ])
    conv, separable, _ = model
    with torch.no_grad():
        conv.bias.normal_()
    expected = (0.1 * conv.weight.square().sum() + 0.2 * conv.bias.abs().sum()
                + 0.3 * separable.depthwise_weight.abs().sum()
                + 0.4 * separable.pointwise_weight.square().sum())
    assert torch.allclose(model.regularization_loss(), expected)
    assert sorted(separable.weight_regularizers()) == ["depthwise_weight", "pointwise_weight"]
    assert model[2].weight_regularizers() == {}  # no bias: its regularizer is ignored, as in Keras


@pytest.mark.parametrize(
    ("input_shape", "entry", "message"),
    [
        ([28, 28], {"conv2d": {"filters": 2, "kernel_size": 3}},
         "model.layers.0.conv2d: conv2d expects samples of shape (height, width, channels), got (28, 28); use input_shape [28, 28, 1]"),
        ([784], {"conv2d_transpose": {"filters": 2, "kernel_size": 3}},
         "model.layers.0.conv2d_transpose: conv2d_transpose expects samples of shape (height, width, channels), got (784,)"),
        ([3, 3, 1], {"conv2d": {"filters": 2, "kernel_size": 5}},
         "model.layers.0.conv2d: conv2d with padding 'valid' gives an empty output for samples of shape (3, 3, 1): the 5×5 kernel does not fit in the 3×3 image; use padding 'same' or a smaller window"),
        ([9, 9, 1], {"separable_conv2d": {"filters": 2, "kernel_size": [3, 5], "dilation_rate": 3}},
         "model.layers.0.separable_conv2d: separable_conv2d with padding 'valid' gives an empty output for samples of shape (9, 9, 1): the 7×13 dilated kernel does not fit in the 9×9 image; use padding 'same' or a smaller window"),
    ],
)
def test_shape_errors_name_the_problem(input_shape, entry, message):
    with pytest.raises(UserInputError) as caught:
        build_model(input_shape, [entry])
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"filters": 2, "kernel_size": 3, "strides": 2, "dilation_rate": 2},
         "model.layers.0.conv2d.dilation_rate: value error, dilation_rate > 1 cannot be combined with strides > 1 (strides 2), as in Keras (got 2)"),
        ({"filters": 2, "kernel_size": [3, 3, 3]},
         "model.layers.0.conv2d.kernel_size: value error, expected a positive integer or a list of two, e.g. [3, 3] (got [3, 3, 3])"),
        ({"filters": 2, "kernel_size": 0},
         "model.layers.0.conv2d.kernel_size: value error, expected a positive integer or a list of two, e.g. [3, 3] (got 0)"),
        ({"filters": 2, "kernel_size": 3, "strides": [1, True]},
         "model.layers.0.conv2d.strides: value error, expected a positive integer or a list of two, e.g. [3, 3] (got [1, True])"),
        ({"filters": 2, "kernel_size": 3, "padding": "full"},
         "model.layers.0.conv2d.padding: input should be 'valid' or 'same' (got 'full')"),
        ({"filters": 0, "kernel_size": 3},
         "model.layers.0.conv2d.filters: input should be greater than 0 (got 0)"),
    ],
)
def test_argument_errors_name_the_field(config, message):
    with pytest.raises(UserInputError) as caught:
        resolve_layers([{"conv2d": config}])
    assert str(caught.value) == message


def test_argument_errors_of_the_other_layers():
    with pytest.raises(UserInputError, match=r"^model\.layers\.0\.separable_conv2d\.depth_multiplier: "):
        resolve_layers([{"separable_conv2d": {"filters": 2, "kernel_size": 3,
                                              "depth_multiplier": 0}}])
    with pytest.raises(UserInputError, match=r"^model\.layers\.0\.conv2d_transpose\.dilation_rate: "):
        resolve_layers([{"conv2d_transpose": {"filters": 2, "kernel_size": 3,
                                              "strides": [1, 2], "dilation_rate": [2, 1]}}])
    with pytest.raises(UserInputError, match=r"^SeparableConv2D\.pointwise_initializer: .*did you mean"):
        SeparableConv2D(filters=2, kernel_size=3, pointwise_initializer="he_norml")


def test_lenet5_like_stack_equals_a_hand_written_torch_model():
    torch.manual_seed(0)
    model = build_model([28, 28, 1], [
        {"conv2d": {"filters": 6, "kernel_size": 5, "padding": "same", "activation": "tanh"}},
        {"avg_pool2d": {"pool_size": 2}},
        {"conv2d": {"filters": 16, "kernel_size": 5, "activation": "tanh"}},
        {"max_pool2d": {"pool_size": 2}},
        "flatten",
        {"dense": {"units": 120, "activation": "relu"}},
        {"dense": {"units": 10, "activation": "softmax"}},
    ])
    assert model.output_shape == (10,)
    reference = nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.Tanh(), nn.AvgPool2d(2),
        nn.Conv2d(6, 16, 5), nn.Tanh(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(16 * 5 * 5, 120), nn.ReLU(), nn.Linear(120, 10), nn.Softmax(-1),
    )
    with torch.no_grad():
        for mine, theirs in [(0, 0), (2, 3)]:
            reference[theirs].weight.copy_(model[mine].weight)
            reference[theirs].bias.copy_(model[mine].bias.normal_())
        # Flatten runs over Keras's (h, w, c); torch's nn.Flatten over (c, h, w).
        order = torch.arange(5 * 5 * 16).reshape(5, 5, 16).permute(2, 0, 1).reshape(-1)
        reference[7].weight.copy_(model[5].weight[:, order])
        reference[7].bias.copy_(model[5].bias)
        reference[9].weight.copy_(model[6].weight)
        reference[9].bias.copy_(model[6].bias)
    x = torch.rand(3, 28, 28, 1)
    model.eval()
    with torch.no_grad():
        assert torch.allclose(model(x), reference(x.permute(0, 3, 1, 2)), atol=1e-6)
