"""Activation functions as shape-preserving layers, with Keras names and defaults.

Each entry of `activations` is a `tricklab.nn.base.Layer` whose `forward` is one
fused PyTorch op, so it serves three ways: as `Dense(activation=...)`, as the
Keras `Activation` layer's function, and (registered again by
`tricklab.nn.layers`) as a layer of its own (`- leaky_relu: {}`). The leaky
ReLUs with random or learned slopes (RReLU, PReLU) live in
`tricklab.nn.rectifiers`.
"""

from __future__ import annotations

from typing import Annotated, Any

import torch
import torch.nn.functional as F
from pydantic import Field, SkipValidation
from torch import nn

from tricklab.errors import UserInputError
from tricklab.nn.base import Layer, RegistryRef, Shape, held_axis
from tricklab.registry import Registry

activations: Registry[nn.Module] = Registry("activation", base=nn.Module)

ActivationSpec = Annotated[
    str | dict[str, Any] | nn.Module, RegistryRef(activations), SkipValidation
]
"""A recipe's activation: a name, `{name: {config}}`, or an `nn.Module` instance."""


@activations.register("linear", description="Identity, f(x) = x.", keras_name="linear")
class Linear(Layer):
    """Identity, `f(x) = x` (Keras `linear`, the "no activation").

    PyTorch equivalent: `torch.nn.Identity()`.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


@activations.register(
    "relu", description="max(x, 0).", reference="Nair & Hinton 2010", keras_name="relu"
)
class ReLU(Layer):
    """Rectified linear unit, `f(x) = max(x, 0)` (Keras `relu`).

    PyTorch equivalent: `torch.nn.ReLU()`.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x)


@activations.register(
    "leaky_relu",
    description="x if x > 0 else negative_slope * x.",
    reference="Maas et al. 2013",
    keras_name="LeakyReLU",
)
class LeakyReLU(Layer):
    """Leaky ReLU, `f(x) = x if x > 0 else negative_slope · x` (Maas et al. 2013).

    The default is Keras 3's `LeakyReLU` layer's 0.3 (the function
    `keras.activations.leaky_relu` defaults to 0.2, PyTorch to 0.01).

    PyTorch equivalent: `torch.nn.LeakyReLU(negative_slope=0.3)`.

    Args:
        negative_slope: Slope for negative inputs, >= 0. Defaults to `0.3`.
    """

    def __init__(self, negative_slope: Annotated[float, Field(ge=0)] = 0.3) -> None:
        super().__init__()
        self.negative_slope = negative_slope

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(x, self.negative_slope)


@activations.register(
    "elu",
    description="x if x > 0 else alpha * (exp(x) - 1).",
    reference="Clevert et al. 2016",
    keras_name="ELU",
)
class ELU(Layer):
    """Exponential linear unit, `f(x) = x if x > 0 else alpha · (exp(x) − 1)` (Clevert et al. 2016).

    PyTorch equivalent: `torch.nn.ELU(alpha)`.

    Args:
        alpha: Saturation value for large negative inputs. Defaults to `1.0`.
    """

    def __init__(self, alpha: float = 1.0) -> None:
        super().__init__()
        self.alpha = alpha

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.elu(x, self.alpha)


@activations.register(
    "selu",
    description="Scaled ELU that self-normalizes (use lecun_normal).",
    reference="Klambauer et al. 2017",
    keras_name="selu",
)
class SELU(Layer):
    """Scaled ELU, `f(x) = scale · (x if x > 0 else alpha · (exp(x) − 1))` (Klambauer et al. 2017).

    `alpha ≈ 1.6732632423543772` and `scale ≈ 1.0507009873554805` make
    activations self-normalizing with `lecun_normal` weights and standardized
    inputs.

    PyTorch equivalent: `torch.nn.SELU()`.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.selu(x)


@activations.register(
    "gelu",
    description="x * Phi(x), Phi the standard normal CDF (or its tanh approximation).",
    reference="Hendrycks & Gimpel 2016",
    keras_name="gelu",
)
class GELU(Layer):
    """Gaussian error linear unit, `f(x) = x · Φ(x) = x/2 · (1 + erf(x / √2))`.

    Φ is the standard normal CDF (Hendrycks & Gimpel 2016). With `approximate`,
    the paper's tanh approximation `x/2 · (1 + tanh(√(2/π) · (x + 0.044715 · x³)))`.
    The default is that of Keras 3's activation `gelu`, the exact form
    (`keras.ops.gelu` defaults to the approximation).

    PyTorch equivalent: `torch.nn.GELU(approximate="tanh" if approximate else "none")`.

    Args:
        approximate: Whether to use the tanh approximation. Defaults to `False`.
    """

    def __init__(self, approximate: bool = False) -> None:
        super().__init__()
        self.approximate = approximate
        self._mode = "tanh" if approximate else "none"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(x, approximate=self._mode)


@activations.register(
    "silu",
    description="Same as swish: x * sigmoid(x).",
    reference="Elfwing et al. 2018",
    keras_name="silu",
)
@activations.register(
    "swish",
    description="x * sigmoid(x), also called SiLU.",
    reference="Ramachandran et al. 2017",
    keras_name="swish",
)
class Swish(Layer):
    """Swish / SiLU, `f(x) = x · σ(x) = x / (1 + exp(−x))` (Ramachandran et al. 2017).

    Registered under both of Keras 3's names, `swish` and `silu` (Elfwing et
    al. 2018 named it the sigmoid-weighted linear unit).

    PyTorch equivalent: `torch.nn.SiLU()`.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.silu(x)


@activations.register("sigmoid", description="1 / (1 + exp(-x)).", keras_name="sigmoid")
class Sigmoid(Layer):
    """Logistic sigmoid, `f(x) = 1 / (1 + exp(−x))` (Keras `sigmoid`).

    As a model's last operation it is reported as `output_activation`, so a
    trainer can use the fused, numerically stable binary cross-entropy on logits.

    PyTorch equivalent: `torch.nn.Sigmoid()`.
    """

    output_activation = "sigmoid"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(x)

    def forward_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Return `x` unchanged: the logits the sigmoid would squash.

        Args:
            x: A batch of inputs.
        """
        return x


@activations.register("tanh", description="Hyperbolic tangent.", keras_name="tanh")
class Tanh(Layer):
    """Hyperbolic tangent, `f(x) = (exp(x) − exp(−x)) / (exp(x) + exp(−x))` (Keras `tanh`).

    PyTorch equivalent: `torch.nn.Tanh()`.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x)


@activations.register(
    "softmax", description="exp(x) / sum(exp(x)) along axis.", keras_name="Softmax"
)
class Softmax(Layer):
    """Softmax, `f(x)_i = exp(x_i) / Σ_j exp(x_j)` along `axis` (Keras `Softmax`).

    With `axis=-1` it is reported as `output_activation`, so a trainer can use
    the fused log-softmax cross-entropy on the logits.

    PyTorch equivalent: `torch.nn.Softmax(dim=axis)`.

    Args:
        axis: Axis of the batched tensor to normalize over. Defaults to `-1`.
    """

    def __init__(self, axis: int = -1) -> None:
        super().__init__()
        self.axis = axis
        self._dim = axis
        # Cross-entropy on logits normalizes over the class axis, the last one.
        self.output_activation = "softmax" if axis == -1 else None

    def build(self, input_shape: Shape) -> None:
        """Find `axis` in the tensor held inside a model (an image's channels are dimension 1).

        Args:
            input_shape: Shape of one input sample, without the batch dimension.

        Raises:
            UserInputError: When `axis` is not an axis of the batched input.
        """
        rank = len(input_shape) + 1
        if not -rank <= self.axis < rank:
            raise UserInputError(
                f"axis {self.axis} is not an axis of a batch of samples of shape "
                f"{tuple(input_shape)} (accepted: {-rank} to {rank - 1})"
            )
        self._dim = held_axis(self.axis, input_shape)
        super().build(input_shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.softmax(x, self._dim)

    def forward_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Return `x` unchanged when softmax is the output activation, else the softmax.

        Args:
            x: A batch of inputs.
        """
        return x if self.output_activation else self(x)
