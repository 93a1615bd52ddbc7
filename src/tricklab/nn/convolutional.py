"""2-D convolution with Keras 3 names, defaults, padding and shapes; what convolutions share.

`conv2d` (Keras `Conv2D`), the window helpers and `Convolution`, the base
class of `separable_conv2d` (`SeparableConv2D`, in
`tricklab.nn.separable_convolution`) and of `conv2d_transpose`
(`Conv2DTranspose`, in `tricklab.nn.transposed_convolution`). Shapes in
recipes and in `compute_output_shape` are Keras's channels-last
`(height, width, channels)`; `forward` gets and returns the channels-first
batches `[N, C, H, W]` held inside a model (see `tricklab.nn.base.is_image`),
so each layer is one or two PyTorch convolution calls.

Kernels are stored in PyTorch layouts. Initializers see layouts whose fans
equal those of Keras's kernels, and constraints get Keras's kernel axes
translated (`Constraint.bind`), so `max_norm` with `axis: [0, 1, 2]` bounds
each filter of a `conv2d` as it does in Keras.

Keras's `"same"` padding follows TensorFlow: the total padding of an axis is
`max((ceil(n / s) − 1) · s + (k − 1) · d + 1 − n, 0)` and an odd pixel goes
to the bottom or right. PyTorch's `padding="same"` exists for stride 1 only,
so each layer works its padding out once, at build, for its input size.

The padding helpers here are shared with `tricklab.nn.pooling`.
"""

from __future__ import annotations

import functools
import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Annotated, ClassVar, Literal, TypeVar

import torch
import torch.nn.functional as F
from pydantic import AfterValidator, Field, PlainValidator
from torch import nn

from tricklab.checks import as_pair, not_with_strides, positive_pair
from tricklab.errors import UserInputError
from tricklab.nn.activations import ActivationSpec, activations
from tricklab.nn.base import Layer, Projection, Shape, build_layer, is_image, layers
from tricklab.nn.constraints import Constraint, ConstraintSpec, constraints
from tricklab.nn.initializers import InitializerSpec, initializers
from tricklab.nn.regularizers import Regularizer, RegularizerSpec, regularizers
from tricklab.registry import Registry

T = TypeVar("T")

CONV_KERAS_LAYOUT = (2, 3, 1, 0)
"""Where each axis of Keras's Conv2D kernel `(kh, kw, in, out)` lives in PyTorch's
`(out, in, kh, kw)`; also Conv2DTranspose's `(kh, kw, out, in)` in PyTorch's
`(in, out, kh, kw)`, and SeparableConv2D's pointwise kernel."""

Padding = Literal["valid", "same"]


Pair = Annotated[int | list[int], PlainValidator(positive_pair)]
"""A window size, stride or dilation: one positive int for both axes, or `[height, width]`."""

Dilation = Annotated[
    int | list[int], PlainValidator(positive_pair), AfterValidator(not_with_strides)
]
"""A dilation rate (see `Pair`); above 1 only with strides of 1, as in Keras."""


def same_padding(size: int, window: int, stride: int) -> tuple[int, int]:
    """Keras's (TensorFlow's) `"same"` padding of one axis, `(before, after)`.

    The output has `ceil(size / stride)` positions; the odd pixel of an uneven
    total goes after (bottom or right).

    Args:
        size: Length of the axis.
        window: Extent of the (dilated) window, `(k − 1) · d + 1`.
        stride: Stride along the axis.
    """
    total = max((math.ceil(size / stride) - 1) * stride + window - size, 0)
    return total // 2, total - total // 2


def output_length(size: int, window: int, stride: int, padding: Padding) -> int:
    """Keras's output length of a convolution or pooling along one axis.

    `ceil(size / stride)` with `"same"`, `floor((size − window) / stride) + 1`
    with `"valid"` (not positive when the window does not fit).

    Args:
        size: Length of the axis.
        window: Extent of the (dilated) window.
        stride: Stride along the axis.
        padding: `"valid"` or `"same"`.
    """
    if padding == "same":
        return math.ceil(size / stride)
    return (size - window) // stride + 1


class NotAnImageError(UserInputError):
    """A layer that needs images, `(height, width, channels)`, got samples of another shape.

    The message says what the layer expects and got; what to do about it
    depends on where the samples come from, which the layer does not know:
    `tricklab.nn.builder` adds it (see `image_advice`).

    Args:
        layer: The layer's recipe name, e.g. `conv2d`.
        input_shape: The shape it got, without the batch dimension.
    """

    def __init__(self, layer: str, input_shape: Shape) -> None:
        self.layer = layer
        self.input_shape = tuple(input_shape)
        super().__init__(
            f"{layer} expects samples of shape (height, width, channels), "
            f"got {self.input_shape}"
        )

    def __reduce__(self) -> tuple[type, tuple[str, Shape]]:
        # Rebuilt from its arguments, not its message: errors cross process boundaries.
        return type(self), (self.layer, self.input_shape)


def image_shape(layer: str, input_shape: Shape) -> tuple[int, int, int]:
    """Check that `input_shape` is an image, `(height, width, channels)`, and return it.

    Args:
        layer: The layer's recipe name, for the message.
        input_shape: Shape of one input sample, without the batch dimension.

    Raises:
        NotAnImageError: When the shape is not of rank 3.
    """
    if not is_image(input_shape):
        raise NotAnImageError(layer, input_shape)
    height, width, channels = input_shape
    return height, width, channels


def window_output(
    layer: str,
    input_shape: Shape,
    window: tuple[int, int],
    strides: tuple[int, int],
    padding: Padding,
    window_name: str,
) -> tuple[int, int]:
    """`(height, width)` out of a sliding window over images of `input_shape`, Keras's formulas.

    Args:
        layer: The layer's recipe name, for the message.
        input_shape: Shape of one input sample, `(height, width, channels)`.
        window: `(height, width)` extent of the (dilated) window.
        strides: `(height, width)` strides.
        padding: `"valid"` or `"same"`.
        window_name: What the window is called in the message, e.g. `"dilated kernel"`.

    Raises:
        UserInputError: When the input is not an image or a `"valid"` output would be empty.
    """
    height, width, _ = image_shape(layer, input_shape)
    out = tuple(
        output_length(size, extent, stride, padding)
        for size, extent, stride in zip((height, width), window, strides, strict=True)
    )
    if min(out) < 1:
        raise UserInputError(
            f"{layer} with padding 'valid' gives an empty output for samples of shape "
            f"{tuple(input_shape)}: the {window[0]}×{window[1]} {window_name} does not fit in "
            f"the {height}×{width} image; use padding 'same' or a smaller window"
        )
    return out[0], out[1]


def _project_viewed(
    weight: torch.Tensor, shape: tuple[int, ...], projection: Projection
) -> torch.Tensor:
    """Apply `projection` in place to `weight` viewed as `shape`; return `weight`."""
    projection(weight.view(shape))
    return weight


class Convolution(Layer, ABC):
    """The plumbing the three convolutions share: window, padding, bias, activation, rules.

    Subclasses create their kernels in `build` with `_build_bias_and_rules`,
    and implement `_convolve` (everything but the activation).
    """

    recipe_name: ClassVar[str]

    def __init__(
        self,
        filters: int,
        kernel_size: int | list[int],
        strides: int | list[int],
        padding: Padding,
        dilation_rate: int | list[int],
        activation: ActivationSpec | None,
        use_bias: bool,
        bias_initializer: InitializerSpec,
        bias_regularizer: RegularizerSpec | None,
        bias_constraint: ConstraintSpec | None,
    ) -> None:
        super().__init__()
        self.filters = filters
        self.kernel_size = as_pair(kernel_size)
        self.strides = as_pair(strides)
        self.padding = padding
        self.dilation_rate = as_pair(dilation_rate)
        self.use_bias = use_bias
        self.activation = (
            None if activation is None else activations.get(activation, self._path("activation"))
        )
        self.bias_initializer = initializers.get(bias_initializer, self._path("bias_initializer"))
        self.bias_regularizer = self._optional(regularizers, bias_regularizer, "bias_regularizer")
        self.bias_constraint = self._optional(constraints, bias_constraint, "bias_constraint")
        self._regularized: dict[str, Regularizer | None] = {}
        self._projections: dict[str, Projection] = {}

    def _path(self, field: str) -> str:
        return f"{type(self).__name__}.{field}"

    def _optional(self, registry: Registry[T], spec: object, field: str) -> T | None:
        """`registry.get(spec)` reported at `<Class>.<field>`, or `None` for `None`."""
        return None if spec is None else registry.get(spec, self._path(field))

    @property
    def dilated_kernel_size(self) -> tuple[int, int]:
        """Extent of the dilated kernel, `(k − 1) · d + 1` per axis."""
        return (
            (self.kernel_size[0] - 1) * self.dilation_rate[0] + 1,
            (self.kernel_size[1] - 1) * self.dilation_rate[1] + 1,
        )

    @property
    def output_activation(self) -> str | None:
        """The output activation of the wrapped activation (`"softmax"`, `"sigmoid"`) or `None`."""
        return getattr(self.activation, "output_activation", None)

    def _conv_padding(self, input_shape: Shape) -> tuple[tuple[int, int], tuple[int, ...] | None]:
        """F.conv2d's symmetric `padding`, and F.pad's `(left, right, top, bottom)` when
        Keras pads an axis unevenly (then the convolution itself pads nothing)."""
        if self.padding == "valid":
            return (0, 0), None
        (top, bottom), (left, right) = (
            same_padding(size, extent, stride)
            for size, extent, stride in zip(
                input_shape[:2], self.dilated_kernel_size, self.strides, strict=True
            )
        )
        if top == bottom and left == right:
            return (top, left), None
        return (0, 0), (left, right, top, bottom)

    def _build_bias_and_rules(
        self,
        input_shape: Shape,
        kernels: Sequence[tuple[str, str, tuple[int, ...] | None, tuple[int, ...] | None]],
    ) -> None:
        """Create `bias`, bind every constraint, build the activation, mark the layer built.

        Args:
            input_shape: Shape of one input sample, `(height, width, channels)`.
            kernels: For each kernel already created, `(parameter, role, layout, view)`:
                its parameter name; the prefix of its `<role>_regularizer` and
                `<role>_constraint`; where each axis of Keras's kernel lives in
                PyTorch's (see `Constraint.bind`); and the shape its constraint
                sees it as (`None`: as it is).
        """
        bias = self.bias_initializer(torch.empty(self.filters)) if self.use_bias else None
        self.bias = None if bias is None else nn.Parameter(bias)
        rules = list(kernels)
        # As in Keras, a bias regularizer or constraint is ignored without a bias.
        if self.use_bias:
            rules.append(("bias", "bias", None, None))
        self._regularized = {name: getattr(self, f"{role}_regularizer") for name, role, *_ in rules}
        self._projections = {}
        for name, role, layout, view in rules:
            constraint: Constraint | None = getattr(self, f"{role}_constraint")
            if constraint is None:
                continue
            ndim = len(view) if view is not None else getattr(self, name).ndim
            projection = constraint.bind(ndim, layout, f"{role}_constraint")
            self._projections[name] = (
                projection
                if view is None
                else functools.partial(_project_viewed, shape=view, projection=projection)
            )
        if self.activation is not None:
            build_layer(self.activation, self.compute_output_shape(input_shape))
        super().build(input_shape)

    def weight_regularizers(self) -> dict[str, Regularizer]:
        """Each kernel and `bias` mapped to its regularizer, where set."""
        return {name: rule for name, rule in self._regularized.items() if rule is not None}

    def weight_constraints(self) -> dict[str, Projection]:
        """Each kernel and `bias` mapped to its constraint, bound to Keras's layout at build."""
        return dict(self._projections)

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        height, width = window_output(
            self.recipe_name,
            input_shape,
            self.dilated_kernel_size,
            self.strides,
            self.padding,
            "kernel" if self.dilation_rate == (1, 1) else "dilated kernel",
        )
        return height, width, self.filters

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self._convolve(x)
        return y if self.activation is None else self.activation(y)

    @abstractmethod
    def _convolve(self, x: torch.Tensor) -> torch.Tensor:
        """Everything `forward` does but the activation, on `[N, C, H, W]`."""

    def forward_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Return the convolution without the activation when that is the output activation.

        Args:
            x: A batch of images, `[N, C, H, W]`.
        """
        if self.output_activation is None:
            return self(x)
        return self._convolve(x)


@layers.register(
    "conv2d",
    description="2-D convolution (cross-correlation) over images, Keras padding.",
    reference="LeCun et al. 1998",
    keras_name="Conv2D",
)
class Conv2D(Convolution):
    """2-D convolution layer (Keras `Conv2D`; LeCun et al. 1998), channels-last in recipes.

    `y[n, o, i, j] = b[o] + Σ_c Σ_u Σ_v W[o, c, u, v] · x̃[n, c, s·i + d·u, s·j + d·v]`
    (a cross-correlation, as in every deep-learning library), then the
    activation, where `x̃` is the input zero-padded as Keras pads it: not at
    all with `"valid"`, and with `"same"` by `same_padding` (the odd pixel at
    the bottom or right), so that the output has `ceil(n / s)` positions per axis.

    `weight` is stored in PyTorch layout `(filters, in, kh, kw)`, whose fans
    equal those of Keras's kernel `(kh, kw, in, filters)`; constraints get
    Keras's axes translated (`axis: [0, 1, 2]` is each filter).

    PyTorch equivalent: `torch.nn.Conv2d(in, filters, kernel_size, strides,
    padding, dilation_rate, bias=use_bias)` on `[N, C, H, W]`, with `padding`
    the `(top, left)` of `same_padding`, or an `F.pad` first where Keras pads unevenly.

    Args:
        filters: Number of output channels, > 0.
        kernel_size: `(height, width)` of the kernel, one int for both.
        strides: Strides of the window, one int for both axes. Defaults to `1`.
        padding: `"valid"` (none) or `"same"` (Keras's). Defaults to `"valid"`.
        dilation_rate: Spacing between kernel taps, one int for both axes; above 1
            only with strides 1. Defaults to `1`.
        activation: Activation applied to the output (name, `{name: {config}}` or
            module); `None` is linear. Defaults to `None`.
        use_bias: Whether to add a bias per filter. Defaults to `True`.
        kernel_initializer: Initializer of `weight`. Defaults to `"glorot_uniform"`.
        bias_initializer: Initializer of `bias`. Defaults to `"zeros"`.
        kernel_regularizer: Penalty on `weight` added to the loss. Defaults to `None`.
        bias_regularizer: Penalty on `bias` added to the loss. Defaults to `None`.
        kernel_constraint: Projection of `weight` after each step, with Keras's axes.
            Defaults to `None`.
        bias_constraint: Projection of `bias` after each step. Defaults to `None`.
    """

    recipe_name = "conv2d"

    def __init__(
        self,
        filters: Annotated[int, Field(gt=0)],
        kernel_size: Pair,
        strides: Pair = 1,
        padding: Padding = "valid",
        dilation_rate: Dilation = 1,
        activation: ActivationSpec | None = None,
        use_bias: bool = True,
        kernel_initializer: InitializerSpec = "glorot_uniform",
        bias_initializer: InitializerSpec = "zeros",
        kernel_regularizer: RegularizerSpec | None = None,
        bias_regularizer: RegularizerSpec | None = None,
        kernel_constraint: ConstraintSpec | None = None,
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
        self.kernel_initializer = initializers.get(
            kernel_initializer, self._path("kernel_initializer")
        )
        self.kernel_regularizer = self._optional(
            regularizers, kernel_regularizer, "kernel_regularizer"
        )
        self.kernel_constraint = self._optional(constraints, kernel_constraint, "kernel_constraint")

    def build(self, input_shape: Shape) -> None:
        """Create `weight` `(filters, in, kh, kw)`, `bias` `(filters,)` and the padding plan.

        Args:
            input_shape: Shape of one input sample, `(height, width, channels)`.

        Raises:
            UserInputError: When the input is not an image or a `"valid"` output would be empty.
        """
        self.compute_output_shape(input_shape)
        weight = torch.empty(self.filters, input_shape[-1], *self.kernel_size)
        self.weight = nn.Parameter(self.kernel_initializer(weight))
        self._padding, self._pad = self._conv_padding(input_shape)
        self._build_bias_and_rules(input_shape, [("weight", "kernel", CONV_KERAS_LAYOUT, None)])

    def _convolve(self, x: torch.Tensor) -> torch.Tensor:
        if self._pad is not None:
            x = F.pad(x, self._pad)
        return F.conv2d(x, self.weight, self.bias, self.strides, self._padding, self.dilation_rate)
