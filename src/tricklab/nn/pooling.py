"""2-D pooling layers with Keras 3 names, defaults, padding and shapes.

`max_pool2d` (Keras `MaxPooling2D`), `avg_pool2d` (`AveragePooling2D`) and
`global_avg_pool2d` (`GlobalAveragePooling2D`). As for the convolutions
(`tricklab.nn.convolutional`), shapes are Keras's `(height, width, channels)`
and `forward` works on the `[N, C, H, W]` batches held inside a model.

With `"same"` padding, Keras (TensorFlow) pads as for a convolution, the odd
pixel at the bottom or right, and padded cells never count: a max ignores
them (padding with −∞) and an average divides by the number of real cells
in its window.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F

from tricklab.checks import as_pair
from tricklab.nn.base import Layer, Shape, layers
from tricklab.nn.convolutional import (
    Padding,
    Pair,
    image_shape,
    same_padding,
    window_output,
)


class _Pooling2D(Layer):
    """Window, strides and padding plan shared by max and average pooling.

    PyTorch pads symmetrically, so an uneven Keras `"same"` padding is built
    without copying the input: PyTorch's `ceil_mode` lets the last window run
    past the bottom or right edge, which adds the missing window for strides
    of 2 and more (and PyTorch's pooling, like TensorFlow's, then ignores the
    cells outside the image, also in the average's divisor). With stride 1 the
    larger padding is used on both sides and the first output row or column,
    one window too early, is dropped.
    """

    recipe_name: ClassVar[str]

    def __init__(
        self, pool_size: Pair = 2, strides: Pair | None = None, padding: Padding = "valid"
    ) -> None:
        super().__init__()
        self.pool_size = as_pair(pool_size)
        self.strides = self.pool_size if strides is None else as_pair(strides)
        self.padding = padding

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        height, width = window_output(
            self.recipe_name, input_shape, self.pool_size, self.strides, self.padding, "pool"
        )
        return height, width, input_shape[-1]

    def build(self, input_shape: Shape) -> None:
        """Work out PyTorch's padding for Keras's, for images of `input_shape`.

        Args:
            input_shape: Shape of one input sample, `(height, width, channels)`.

        Raises:
            UserInputError: When the input is not an image or a `"valid"` output would be empty.
        """
        self.compute_output_shape(input_shape)
        padding, starts = [0, 0], [0, 0]
        if self.padding == "same":
            for axis, (size, window, stride) in enumerate(
                zip(input_shape[:2], self.pool_size, self.strides, strict=True)
            ):
                before, after = same_padding(size, window, stride)
                one_early = stride == 1 and after > before
                padding[axis] = after if one_early else before
                starts[axis] = int(one_early)
        self._padding = tuple(padding)
        self._ceil_mode = self.padding == "same"
        self._crop = (
            None if starts == [0, 0] else (..., slice(starts[0], None), slice(starts[1], None))
        )
        super().build(input_shape)

    def _cropped(self, y: torch.Tensor) -> torch.Tensor:
        return y if self._crop is None else y[self._crop]


@layers.register(
    "max_pool2d",
    description="Maximum over each pool_size window of each channel.",
    reference="LeCun et al. 1998; Ranzato et al. 2007",
    keras_name="MaxPooling2D",
)
class MaxPooling2D(_Pooling2D):
    """2-D max pooling (Keras `MaxPooling2D`), channels-last in recipes.

    `y[n, c, i, j] = max_{u, v} x[n, c, s·i + u − p_top, s·j + v − p_left]`
    over the window's cells inside the image, with `p_top`, `p_left` Keras's
    padding: none with `"valid"`, `same_padding` with `"same"` (cells outside
    count as −∞, as in TensorFlow). Subsampling layers go back to LeCun et al.
    (1998); the maximum to Ranzato et al. (2007).

    PyTorch equivalent: `torch.nn.MaxPool2d(pool_size, strides)` with `"valid"`;
    `"same"` needs an `F.pad(x, ..., value=-inf)` when uneven.

    Args:
        pool_size: `(height, width)` of the window, one int for both. Defaults to `2`.
        strides: Steps of the window, one int for both axes; `None` is
            `pool_size`. Defaults to `None`.
        padding: `"valid"` (none) or `"same"` (Keras's). Defaults to `"valid"`.
    """

    recipe_name = "max_pool2d"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._cropped(
            F.max_pool2d(x, self.pool_size, self.strides, self._padding, 1, self._ceil_mode)
        )


@layers.register(
    "avg_pool2d",
    description="Mean over each pool_size window of each channel.",
    reference="LeCun et al. 1998",
    keras_name="AveragePooling2D",
)
class AveragePooling2D(_Pooling2D):
    """2-D average pooling (Keras `AveragePooling2D`), channels-last in recipes.

    `y[n, c, i, j] = mean_{u, v} x[n, c, s·i + u − p_top, s·j + v − p_left]`
    over the window's cells inside the image, with `p_top`, `p_left` Keras's
    padding (none with `"valid"`, `same_padding` with `"same"`): as in
    TensorFlow, a window overlapping the padding is divided by its number of
    real cells, not by the window's size. LeCun et al. (1998) subsample by
    averaging.

    PyTorch equivalent: `torch.nn.AvgPool2d(pool_size, strides,
    count_include_pad=False)`, with `padding` where Keras's is even.

    Args:
        pool_size: `(height, width)` of the window, one int for both. Defaults to `2`.
        strides: Steps of the window, one int for both axes; `None` is
            `pool_size`. Defaults to `None`.
        padding: `"valid"` (none) or `"same"` (Keras's). Defaults to `"valid"`.
    """

    recipe_name = "avg_pool2d"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._cropped(
            F.avg_pool2d(
                x, self.pool_size, self.strides, self._padding, self._ceil_mode, False
            )
        )


@layers.register(
    "global_avg_pool2d",
    description="Mean of each channel over the whole image.",
    reference="Lin et al. 2014 (Network in Network)",
    keras_name="GlobalAveragePooling2D",
)
class GlobalAveragePooling2D(Layer):
    """Global average pooling (Keras `GlobalAveragePooling2D`; Lin et al. 2014).

    `y[n, c] = (1 / (H·W)) Σ_i Σ_j x[n, c, i, j]`: per-sample `(H, W, C)` ->
    `(C,)`, or `(1, 1, C)` with `keepdims`. Lin et al. ("Network in Network")
    use it in place of fully connected layers on top of a convolutional network.

    PyTorch equivalent: `x.mean((2, 3))` on `[N, C, H, W]`
    (`torch.nn.AdaptiveAvgPool2d(1)` keeps the dimensions).

    Args:
        keepdims: Whether to keep the spatial dimensions, of size 1. Defaults to `False`.
    """

    def __init__(self, keepdims: bool = False) -> None:
        super().__init__()
        self.keepdims = keepdims

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        *_, channels = image_shape("global_avg_pool2d", input_shape)
        return (1, 1, channels) if self.keepdims else (channels,)

    def build(self, input_shape: Shape) -> None:
        """Check that the samples are images.

        Args:
            input_shape: Shape of one input sample, `(height, width, channels)`.

        Raises:
            UserInputError: When the input is not an image.
        """
        self.compute_output_shape(input_shape)
        super().build(input_shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean((2, 3), keepdim=self.keepdims)
