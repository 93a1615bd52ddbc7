"""Depthwise separable 2-D convolution with Keras 3 names, defaults, padding and shapes.

`separable_conv2d` (Keras `SeparableConv2D`; Chollet 2017, "Xception"): a
depthwise convolution per input channel, then a 1×1 convolution mixing the
channels. The window helpers and the base class it shares with `conv2d` are in
`tricklab.nn.convolutional`.
"""

from __future__ import annotations

from typing import Annotated

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from tricklab.nn.activations import ActivationSpec
from tricklab.nn.base import Shape, layers
from tricklab.nn.constraints import ConstraintSpec, constraints
from tricklab.nn.convolutional import (
    CONV_KERAS_LAYOUT,
    Convolution,
    Dilation,
    Padding,
    Pair,
)
from tricklab.nn.initializers import InitializerSpec, initializers
from tricklab.nn.regularizers import RegularizerSpec, regularizers

DEPTHWISE_KERAS_LAYOUT = (2, 3, 0, 1)
"""Where each axis of Keras's depthwise kernel `(kh, kw, in, depth_multiplier)` lives in
the view `(in, depth_multiplier, kh, kw)` of PyTorch's grouped weight `(in · dm, 1, kh, kw)`."""


@layers.register(
    "separable_conv2d",
    description="Depthwise 2-D convolution per channel, then a 1×1 convolution mixing channels.",
    reference="Chollet 2017 (Xception)",
    keras_name="SeparableConv2D",
)
class SeparableConv2D(Convolution):
    """Depthwise separable 2-D convolution (Keras `SeparableConv2D`; Chollet 2017, "Xception").

    A depthwise convolution filters each input channel `c` on its own with
    `depth_multiplier` kernels, `m`:
    `z[n, c·m + k, i, j] = Σ_u Σ_v D[c·m + k, 0, u, v] · x̃[n, c, s·i + d·u, s·j + d·v]`,
    then a 1×1 (pointwise) convolution mixes the channels,
    `y[n, o, i, j] = b[o] + Σ_q P[o, q, 0, 0] · z[n, q, i, j]`, then the
    activation; `x̃` is padded as in `conv2d`. It costs about
    `1 / filters + 1 / (kh · kw)` of a `conv2d`'s multiplications.

    `depthwise_weight` is held as PyTorch's grouped-convolution weight
    `(in · m, 1, kh, kw)` (channel `c·m + k` as TensorFlow orders them) and
    `pointwise_weight` as `(filters, in · m, 1, 1)`. The depthwise kernel is
    drawn as `(m, in, kh, kw)`, whose fans are Keras's for its `(kh, kw, in, m)`
    kernel (`fan_in = kh·kw·in`, `fan_out = kh·kw·m`), then laid out. Its
    constraint sees the view `(in, m, kh, kw)`, so Keras's axes keep their
    meaning (`axis: [0, 1]` is each single-channel kernel); the pointwise
    kernel's axes are those of a `conv2d` kernel `(1, 1, in · m, filters)`.

    PyTorch equivalent: `torch.nn.Conv2d(in, in * m, kernel_size, strides,
    padding, dilation_rate, groups=in, bias=False)` followed by
    `torch.nn.Conv2d(in * m, filters, 1, bias=use_bias)`.

    Args:
        filters: Number of output channels, > 0.
        kernel_size: `(height, width)` of the depthwise kernel, one int for both.
        strides: Strides of the depthwise window, one int for both axes. Defaults to `1`.
        padding: `"valid"` (none) or `"same"` (Keras's). Defaults to `"valid"`.
        dilation_rate: Spacing between depthwise kernel taps; above 1 only with
            strides 1. Defaults to `1`.
        depth_multiplier: Depthwise output channels per input channel, > 0. Defaults to `1`.
        activation: Activation applied to the output; `None` is linear. Defaults to `None`.
        use_bias: Whether to add a bias per filter. Defaults to `True`.
        depthwise_initializer: Initializer of the depthwise kernel. Defaults to
            `"glorot_uniform"`.
        pointwise_initializer: Initializer of the pointwise kernel. Defaults to
            `"glorot_uniform"`.
        bias_initializer: Initializer of `bias`. Defaults to `"zeros"`.
        depthwise_regularizer: Penalty on the depthwise kernel. Defaults to `None`.
        pointwise_regularizer: Penalty on the pointwise kernel. Defaults to `None`.
        bias_regularizer: Penalty on `bias`. Defaults to `None`.
        depthwise_constraint: Projection of the depthwise kernel after each step,
            with Keras's axes. Defaults to `None`.
        pointwise_constraint: Projection of the pointwise kernel after each step,
            with Keras's axes. Defaults to `None`.
        bias_constraint: Projection of `bias` after each step. Defaults to `None`.
    """

    recipe_name = "separable_conv2d"

    def __init__(
        self,
        filters: Annotated[int, Field(gt=0)],
        kernel_size: Pair,
        strides: Pair = 1,
        padding: Padding = "valid",
        dilation_rate: Dilation = 1,
        depth_multiplier: Annotated[int, Field(gt=0)] = 1,
        activation: ActivationSpec | None = None,
        use_bias: bool = True,
        depthwise_initializer: InitializerSpec = "glorot_uniform",
        pointwise_initializer: InitializerSpec = "glorot_uniform",
        bias_initializer: InitializerSpec = "zeros",
        depthwise_regularizer: RegularizerSpec | None = None,
        pointwise_regularizer: RegularizerSpec | None = None,
        bias_regularizer: RegularizerSpec | None = None,
        depthwise_constraint: ConstraintSpec | None = None,
        pointwise_constraint: ConstraintSpec | None = None,
        bias_constraint: ConstraintSpec | None = None,
    ) -> None:
        super().__init__(
            filters,
            kernel_size,
            strides,
            padding,
            dilation_rate,
            activation,
            use_bias,
            bias_initializer,
            bias_regularizer,
            bias_constraint,
        )
        self.depth_multiplier = depth_multiplier
        self.depthwise_initializer = initializers.get(
            depthwise_initializer, self._path("depthwise_initializer")
        )
        self.pointwise_initializer = initializers.get(
            pointwise_initializer, self._path("pointwise_initializer")
        )
        self.depthwise_regularizer = self._optional(
            regularizers, depthwise_regularizer, "depthwise_regularizer"
        )
        self.pointwise_regularizer = self._optional(
            regularizers, pointwise_regularizer, "pointwise_regularizer"
        )
        self.depthwise_constraint = self._optional(
            constraints, depthwise_constraint, "depthwise_constraint"
        )
        self.pointwise_constraint = self._optional(
            constraints, pointwise_constraint, "pointwise_constraint"
        )

    def build(self, input_shape: Shape) -> None:
        """Create `depthwise_weight` `(in · m, 1, kh, kw)`, `pointwise_weight`
        `(filters, in · m, 1, 1)`, `bias` `(filters,)` and the padding plan.

        Args:
            input_shape: Shape of one input sample, `(height, width, channels)`.

        Raises:
            UserInputError: When the input is not an image or a `"valid"` output would be empty.
        """
        self.compute_output_shape(input_shape)
        channels, multiplier = input_shape[-1], self.depth_multiplier
        kh, kw = self.kernel_size
        # Drawn as (m, in, kh, kw) for Keras's fans, then laid out as the grouped
        # weight, whose output channel c·m + k is drawn[k, c].
        drawn = self.depthwise_initializer(torch.empty(multiplier, channels, kh, kw))
        depthwise = drawn.transpose(0, 1).reshape(channels * multiplier, 1, kh, kw)
        self.depthwise_weight = nn.Parameter(depthwise)
        pointwise = torch.empty(self.filters, channels * multiplier, 1, 1)
        self.pointwise_weight = nn.Parameter(self.pointwise_initializer(pointwise))
        self._padding, self._pad = self._conv_padding(input_shape)
        self._groups = channels
        self._build_bias_and_rules(
            input_shape,
            [
                (
                    "depthwise_weight",
                    "depthwise",
                    DEPTHWISE_KERAS_LAYOUT,
                    (channels, multiplier, kh, kw),
                ),
                ("pointwise_weight", "pointwise", CONV_KERAS_LAYOUT, None),
            ],
        )

    def _convolve(self, x: torch.Tensor) -> torch.Tensor:
        if self._pad is not None:
            x = F.pad(x, self._pad)
        z = F.conv2d(
            x,
            self.depthwise_weight,
            None,
            self.strides,
            self._padding,
            self.dilation_rate,
            self._groups,
        )
        return F.conv2d(z, self.pointwise_weight, self.bias)
