"""Core layers with Keras names and defaults: Flatten, Dense, Activation.

Every entry of the `activations` registry is registered here as a layer of the
same name too, so a recipe may write `- leaky_relu: {}` as the chapter's notebook writes
`keras.layers.LeakyReLU()`. Batch normalization lives in
`tricklab.nn.normalization`, the dropout family in `tricklab.nn.dropout`.
"""

from __future__ import annotations

import math
from typing import Annotated, TypeVar

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

# `rectifiers` is imported for its registrations: RReLU and PReLU must be in
# `activations` before every activation is registered as a layer below.
from tricklab.nn import rectifiers  # noqa: F401
from tricklab.nn.activations import ActivationSpec, activations
from tricklab.nn.base import (
    Layer,
    Projection,
    Shape,
    build_layer,
    channels_first,
    channels_last,
    is_image,
    layers,
)
from tricklab.nn.constraints import ConstraintSpec, constraints
from tricklab.nn.initializers import InitializerSpec, initializers
from tricklab.nn.regularizers import Regularizer, RegularizerSpec, regularizers
from tricklab.registry import Registry

T = TypeVar("T")

DENSE_KERAS_LAYOUT = (1, 0)
"""Where each axis of Keras's Dense kernel `(in, out)` lives in PyTorch's weight `(out, in)`."""


def _register_activations_as_layers() -> None:
    """Register every activation as a layer of the same name, as Keras has `layers.ReLU`."""
    for info in activations:
        layers.register(
            info.name,
            description=info.description,
            reference=info.reference,
            keras_name=info.keras_name,
        )(info.factory)


_register_activations_as_layers()


def _optional(registry: Registry[T], spec: object, field: str) -> T | None:
    """`registry.get(spec)` reported at `Dense.<field>`, or `None` for `None`."""
    return None if spec is None else registry.get(spec, f"Dense.{field}")


@layers.register(
    "flatten", description="Flatten each sample to one dimension.", keras_name="Flatten"
)
class Flatten(Layer):
    """Flatten each sample to one dimension: per-sample `(d1, ..., dk)` -> `(d1·...·dk,)`.

    Images are flattened in Keras's channels-last order `(h, w, c)`, so a
    Dense kernel after it matches Keras's row for row.

    PyTorch equivalent: `torch.nn.Flatten()` (on `[N, H, W, C]` for images).
    """

    def build(self, input_shape: Shape) -> None:
        self._image = is_image(input_shape)
        super().build(input_shape)

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        return (math.prod(input_shape),)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (channels_last(x) if self._image else x).flatten(1)


@layers.register(
    "dense",
    description="Fully connected layer, y = activation(x·Wᵀ + b).",
    keras_name="Dense",
)
class Dense(Layer):
    """Fully connected layer, `y = activation(x · Wᵀ + b)` on the last axis (Keras `Dense`).

    On images, as in Keras, the last axis is the channels one: the layer is a
    1×1 convolution.

    The weight is stored in PyTorch layout `(units, in)` as `weight` and applied
    with `F.linear`; initializers see that layout, whose fans equal Keras's, and
    constraints get their Keras axes translated (`axis=0`, Keras's default,
    still means each unit's incoming weight vector).

    A parametric activation (`activation: prelu`) is built for the output and
    kept as the submodule `activation`: its parameters are this layer's
    (`activation.alpha`), counted, frozen and regularized with it.

    Regularizers and constraints cost nothing in `forward`: a model collects
    them once (`weight_regularizers`, `weight_constraints`) and the trainer adds
    the penalties to the loss and applies the constraints after each step.
    Keras's `activity_regularizer` is not supported.

    PyTorch equivalent: `torch.nn.Linear(in, units, bias=use_bias)` followed by
    the activation, with `kernel_initializer` applied to `weight`; penalties
    added to the loss and constraints applied after `optimizer.step()` by hand.

    Args:
        units: Number of output units, > 0.
        activation: Activation applied to the output (name, `{name: {config}}` or
            module); `None` is linear. Defaults to `None`.
        use_bias: Whether to add a bias vector. Defaults to `True`.
        kernel_initializer: Initializer of `weight`. Defaults to `"glorot_uniform"`.
        bias_initializer: Initializer of `bias`. Defaults to `"zeros"`.
        kernel_regularizer: Penalty on `weight` added to the loss, e.g. `l2`.
            Defaults to `None`.
        bias_regularizer: Penalty on `bias` added to the loss. Defaults to `None`.
        kernel_constraint: Projection of `weight` after each step, e.g.
            `{max_norm: {max_value: 1.0}}`, with Keras's axes. Defaults to `None`.
        bias_constraint: Projection of `bias` after each step. Defaults to `None`.
    """

    def __init__(
        self,
        units: Annotated[int, Field(gt=0)],
        activation: ActivationSpec | None = None,
        use_bias: bool = True,
        kernel_initializer: InitializerSpec = "glorot_uniform",
        bias_initializer: InitializerSpec = "zeros",
        kernel_regularizer: RegularizerSpec | None = None,
        bias_regularizer: RegularizerSpec | None = None,
        kernel_constraint: ConstraintSpec | None = None,
        bias_constraint: ConstraintSpec | None = None,
    ) -> None:
        super().__init__()
        self.units = units
        self.use_bias = use_bias
        self.kernel_initializer = initializers.get(kernel_initializer, "Dense.kernel_initializer")
        self.bias_initializer = initializers.get(bias_initializer, "Dense.bias_initializer")
        self.activation = (
            None if activation is None else activations.get(activation, "Dense.activation")
        )
        self.kernel_regularizer = _optional(regularizers, kernel_regularizer, "kernel_regularizer")
        self.bias_regularizer = _optional(regularizers, bias_regularizer, "bias_regularizer")
        self.kernel_constraint = _optional(constraints, kernel_constraint, "kernel_constraint")
        self.bias_constraint = _optional(constraints, bias_constraint, "bias_constraint")
        self._projections: dict[str, Projection] = {}

    @property
    def output_activation(self) -> str | None:
        """The output activation of the wrapped activation (`"softmax"`, `"sigmoid"`) or `None`."""
        return getattr(self.activation, "output_activation", None)

    def build(self, input_shape: Shape) -> None:
        """Create `weight` `(units, input_shape[-1])` and, with `use_bias`, `bias` `(units,)`.

        Args:
            input_shape: Shape of one input sample, without the batch dimension.
        """
        weight = torch.empty(self.units, input_shape[-1])
        self.weight = nn.Parameter(self.kernel_initializer(weight))
        bias = self.bias_initializer(torch.empty(self.units)) if self.use_bias else None
        self.bias = None if bias is None else nn.Parameter(bias)
        # As in Keras, a bias regularizer or constraint is ignored without a bias.
        constrained = (
            ("weight", self.kernel_constraint, DENSE_KERAS_LAYOUT, "kernel_constraint"),
            ("bias", self.bias_constraint if self.use_bias else None, None, "bias_constraint"),
        )
        self._projections = {
            name: constraint.bind(getattr(self, name).ndim, layout, field)
            for name, constraint, layout, field in constrained
            if constraint is not None
        }
        if self.activation is not None:
            build_layer(self.activation, self.compute_output_shape(input_shape))
        self._image = is_image(input_shape)
        super().build(input_shape)

    def weight_regularizers(self) -> dict[str, Regularizer]:
        """`weight` and `bias` mapped to `kernel_regularizer` and `bias_regularizer`, where set."""
        pairs = {"weight": self.kernel_regularizer}
        if self.use_bias:
            pairs["bias"] = self.bias_regularizer
        return {name: regularizer for name, regularizer in pairs.items() if regularizer is not None}

    def weight_constraints(self) -> dict[str, Projection]:
        """`weight` and `bias` mapped to their constraints, bound to the Keras layout at build."""
        return dict(self._projections)

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        return (*input_shape[:-1], self.units)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self._linear(x)
        return y if self.activation is None else self.activation(y)

    def _linear(self, x: torch.Tensor) -> torch.Tensor:
        if self._image:
            return channels_first(F.linear(channels_last(x), self.weight, self.bias))
        return F.linear(x, self.weight, self.bias)

    def forward_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Return `x · Wᵀ + b` when the activation is the output activation, else `self(x)`.

        Args:
            x: A batch of inputs.
        """
        if self.output_activation is None:
            return self(x)
        return self._linear(x)


@layers.register("activation", description="Apply an activation function.", keras_name="Activation")
class Activation(Layer):
    """Apply an activation function as a layer (Keras `Activation("relu")`).

    PyTorch equivalent: the activation module itself, e.g. `torch.nn.ReLU()`.

    Args:
        activation: Name, `{name: {config}}` or module of the activation.
    """

    def __init__(self, activation: ActivationSpec) -> None:
        super().__init__()
        self.function = activations.get(activation, "Activation.activation")

    @property
    def output_activation(self) -> str | None:
        """The wrapped activation's output activation (`"softmax"`, `"sigmoid"`) or `None`."""
        return getattr(self.function, "output_activation", None)

    def build(self, input_shape: Shape) -> None:
        """Build the wrapped activation (a parametric one needs the shape).

        Args:
            input_shape: Shape of one input sample, without the batch dimension.
        """
        build_layer(self.function, input_shape)
        super().build(input_shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.function(x)

    def forward_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Return the wrapped activation's `forward_logits(x)` (or `self(x)` without one).

        Args:
            x: A batch of inputs.
        """
        if isinstance(self.function, Layer):
            return self.function.forward_logits(x)
        return self(x)
