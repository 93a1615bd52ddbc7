"""Transposed 2-D convolution with Keras 3 names, defaults, padding and output sizes.

`conv2d_transpose` (Keras `Conv2DTranspose`), the gradient (adjoint) of a
`conv2d`, for upsampling; its arithmetic follows Dumoulin & Visin 2016. It
extends `Conv2D` and uses the window helpers of `tricklab.nn.convolutional`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from tricklab.nn.base import Shape, layers
from tricklab.nn.convolutional import CONV_KERAS_LAYOUT, Conv2D, image_shape, same_padding


@layers.register(
    "conv2d_transpose",
    description="Transposed 2-D convolution (upsampling), Keras output sizes.",
    reference="Dumoulin & Visin 2016",
    keras_name="Conv2DTranspose",
)
class Conv2DTranspose(Conv2D):
    """Transposed 2-D convolution (Keras `Conv2DTranspose`), the gradient of a `conv2d`.

    Each input pixel scatters a copy of the kernel, weighted by its value,
    into the output, `s` pixels apart (arithmetic in Dumoulin & Visin 2016):
    `ỹ[n, o, s·i + d·u, s·j + d·v] += Σ_c W[c, o, u, v] · x[n, c, i, j]`, on a
    canvas of `(n − 1)·s + (k − 1)·d + 1` pixels per axis, then
    `y = activation(b[o] + crop(ỹ))`. The output sizes are Keras's (with
    `output_padding` unset): `"valid"` gives `(n − 1)·s + max((k − 1)·d + 1, s)`
    per axis (zeros past the canvas when the stride exceeds the kernel), and
    `"same"` gives `n·s`, cropping the canvas as TensorFlow's `conv2d_transpose`
    does: from the top/left by `same_padding(n·s, (k − 1)·d + 1, s)[0]`, the odd
    pixel of an uneven crop at the bottom or right. So the layer is the exact
    adjoint of a `conv2d` with the same kernel, strides and padding whose
    input has this layer's output size.

    `weight` is stored in PyTorch layout `(in, filters, kh, kw)`, whose fans
    equal those of Keras's kernel `(kh, kw, filters, in)` (`fan_in = kh·kw·filters`);
    constraints get Keras's axes translated (`axis: [0, 1, 2]` is each input
    channel's kernels, as in Keras).

    PyTorch equivalent: `torch.nn.ConvTranspose2d(in, filters, kernel_size,
    strides, padding=p, output_padding=q, dilation=dilation_rate)` with `p` the
    top/left crop above (0 with `"valid"`) and `q = max(s − (k − 1)·d − 1, 0)`,
    then a one-pixel crop at the bottom/right where the `"same"` crop is uneven.

    Args:
        filters: Number of output channels, > 0.
        kernel_size: `(height, width)` of the kernel, one int for both.
        strides: Upsampling factors, one int for both axes. Defaults to `1`.
        padding: `"valid"` or `"same"` (Keras's). Defaults to `"valid"`.
        dilation_rate: Spacing between kernel taps; above 1 only with strides 1.
            Defaults to `1`.
        activation: Activation applied to the output; `None` is linear. Defaults to `None`.
        use_bias: Whether to add a bias per filter. Defaults to `True`.
        kernel_initializer: Initializer of `weight`. Defaults to `"glorot_uniform"`.
        bias_initializer: Initializer of `bias`. Defaults to `"zeros"`.
        kernel_regularizer: Penalty on `weight` added to the loss. Defaults to `None`.
        bias_regularizer: Penalty on `bias` added to the loss. Defaults to `None`.
        kernel_constraint: Projection of `weight` after each step, with Keras's axes.
            Defaults to `None`.
        bias_constraint: Projection of `bias` after each step. Defaults to `None`.
    """

    recipe_name = "conv2d_transpose"

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        height, width, _ = image_shape(self.recipe_name, input_shape)
        if self.padding == "same":
            return height * self.strides[0], width * self.strides[1], self.filters
        sizes = (
            (size - 1) * stride + max(extent, stride)
            for size, extent, stride in zip(
                (height, width), self.dilated_kernel_size, self.strides, strict=True
            )
        )
        return (*sizes, self.filters)

    def build(self, input_shape: Shape) -> None:
        """Create `weight` `(in, filters, kh, kw)`, `bias` `(filters,)` and the cropping plan.

        Args:
            input_shape: Shape of one input sample, `(height, width, channels)`.

        Raises:
            UserInputError: When the input is not an image.
        """
        out_height, out_width, _ = self.compute_output_shape(input_shape)
        weight = torch.empty(input_shape[-1], self.filters, *self.kernel_size)
        self.weight = nn.Parameter(self.kernel_initializer(weight))
        # F.conv_transpose2d crops `padding` from both ends of the canvas, then
        # extends it by `output_padding` at the end (with zeros past the canvas).
        # An uneven "same" crop takes `before` from both ends and one more pixel
        # at the end below.
        padding, extension, uneven = [], [], False
        for size, extent, stride in zip(
            input_shape[:2], self.dilated_kernel_size, self.strides, strict=True
        ):
            before, after = (
                same_padding(size * stride, extent, stride) if self.padding == "same" else (0, 0)
            )
            padding.append(before)
            extension.append(max(stride - extent, 0))
            uneven = uneven or after > before
        self._padding, self._output_padding = tuple(padding), tuple(extension)
        self._crop = (out_height, out_width) if uneven else None
        self._build_bias_and_rules(input_shape, [("weight", "kernel", CONV_KERAS_LAYOUT, None)])

    def _convolve(self, x: torch.Tensor) -> torch.Tensor:
        y = F.conv_transpose2d(
            x,
            self.weight,
            self.bias,
            self.strides,
            self._padding,
            self._output_padding,
            1,
            self.dilation_rate,
        )
        if self._crop is not None:
            y = y[:, :, : self._crop[0], : self._crop[1]]
        return y
