"""Leaky ReLUs whose negative slope is drawn at random (RReLU) or learned (PReLU).

Both register in `activations`, so they serve as `Dense(activation=...)`, as
the `Activation` layer's function and as layers of their own
(`- prelu: {}`), like every activation. A PReLU used as a Dense layer's
activation is a submodule of that layer: its slopes are the Dense layer's
parameters (`activation.alpha`), counted, frozen and regularized with it.
"""

from __future__ import annotations

from typing import Annotated

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from tricklab.checks import not_below
from tricklab.errors import UserInputError
from tricklab.nn.activations import activations
from tricklab.nn.base import Layer, Projection, Shape, is_image
from tricklab.nn.constraints import ConstraintSpec, constraints
from tricklab.nn.initializers import InitializerSpec, initializers
from tricklab.nn.regularizers import Regularizer, RegularizerSpec, regularizers

Slope = Annotated[float, Field(ge=0, le=1)]
IMAGE_ALPHA_LAYOUT = (1, 2, 0)
"""Where each axis of Keras's image slopes `(h, w, c)` is held: `(c, h, w)`."""

KerasAxis = Annotated[int, Field(ge=1)]
"""An axis of the batched input counted as Keras counts it: 1 is the first per-sample axis."""


@activations.register(
    "rrelu",
    description="Leaky ReLU with a random slope U(lower, upper) while training, the mean after.",
    reference="Xu et al. 2015",
)
class RReLU(Layer):
    """Randomized leaky ReLU (Xu et al. 2015, arXiv:1505.00853); Keras has none.

    `f(x) = x if x >= 0 else a · x`. In training each element draws its own
    slope `a ~ U(lower, upper)` at every call; in evaluation `a` is the mean
    slope `(lower + upper) / 2`, deterministic, as the paper averages the
    training slopes at test time.

    The defaults 1/8 and 1/3 are PyTorch's, the reciprocals of the paper's
    setting (the Kaggle NDSB winner's), which divides negative inputs by a
    divisor drawn from U(3, 8). The paper's test-time divisor (3 + 8) / 2
    gives slope 2/11 ≈ 0.182, while the mean slope used here (PyTorch's
    semantics) is 11/48 ≈ 0.229.

    PyTorch equivalent: `torch.nn.RReLU(lower, upper)`.

    Args:
        lower: Smallest slope, in [0, 1]. Defaults to `1/8`.
        upper: Largest slope, in [0, 1], not below `lower`. Defaults to `1/3`.
    """

    def __init__(
        self, lower: Slope = 1 / 8, upper: Annotated[Slope, not_below("lower")] = 1 / 3
    ) -> None:
        super().__init__()
        self.lower = lower
        self.upper = upper

    def _deterministic_itself(self) -> bool:
        return self.lower == self.upper

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.rrelu(x, self.lower, self.upper, self.training)


@activations.register(
    "prelu",
    description="Leaky ReLU whose slope alpha is learned per unit (initialized to 0).",
    reference="He et al. 2015",
    keras_name="PReLU",
)
class PReLU(Layer):
    """Parametric ReLU with learned slopes (He et al. 2015; Keras `PReLU`).

    `f(x) = max(x, 0) + alpha · min(x, 0)`, with one slope per element of a
    sample (`alpha` has the per-sample shape) unless `shared_axes` shares it.
    `alpha` starts at 0, so the layer is a ReLU until it learns otherwise;
    the gradient reaching it is `Σ min(x, 0) · upstream` over the batch and the
    shared axes.

    PyTorch equivalent: `torch.nn.PReLU(num_parameters=n, init=0.0)` when the
    slope is per unit of a flat sample (PyTorch shares it along every other
    axis); otherwise `torch.relu(x) - alpha * torch.relu(-x)` with an
    `nn.Parameter` alpha of the broadcast shape.

    Args:
        alpha_initializer: Initializer of `alpha`. Defaults to `"zeros"`.
        alpha_regularizer: Penalty on `alpha`, added to the loss. Defaults to `None`.
        alpha_constraint: Projection of `alpha` after each step. Defaults to `None`.
        shared_axes: Axis or axes along which one slope is shared, counted as
            Keras counts them: 1 is the first per-sample axis (after the batch
            axis). E.g. `[1, 2]` gives one slope per channel of `(h, w, c)` samples.
            Defaults to `None` (no sharing).
    """

    def __init__(
        self,
        alpha_initializer: InitializerSpec = "zeros",
        alpha_regularizer: RegularizerSpec | None = None,
        alpha_constraint: ConstraintSpec | None = None,
        shared_axes: KerasAxis | list[KerasAxis] | None = None,
    ) -> None:
        super().__init__()
        self.alpha_initializer = initializers.get(alpha_initializer, "PReLU.alpha_initializer")
        self.alpha_regularizer = (
            None
            if alpha_regularizer is None
            else regularizers.get(alpha_regularizer, "PReLU.alpha_regularizer")
        )
        self.alpha_constraint = (
            None
            if alpha_constraint is None
            else constraints.get(alpha_constraint, "PReLU.alpha_constraint")
        )
        if shared_axes is None:
            shared_axes = []
        self.shared_axes = [shared_axes] if isinstance(shared_axes, int) else list(shared_axes)
        self._projection: Projection | None = None

    def build(self, input_shape: Shape) -> None:
        """Create `alpha` with the per-sample shape, size 1 along the shared axes.

        Args:
            input_shape: Shape of one input sample, without the batch dimension.

        Raises:
            UserInputError: When a shared axis is beyond the sample's axes.
        """
        for axis in self.shared_axes:
            if axis > len(input_shape):
                raise UserInputError(
                    f"shared_axes: axis {axis} is out of range for samples of shape "
                    f"{tuple(input_shape)} (accepted: 1 to {len(input_shape)}, as Keras counts "
                    "after the batch axis)"
                )
        shape = [
            1 if axis in self.shared_axes else size for axis, size in enumerate(input_shape, 1)
        ]
        alpha = self.alpha_initializer(torch.empty(shape))
        # An image's slopes are held channels-first, as the images are inside a model.
        self.alpha = nn.Parameter(alpha.movedim(-1, 0).contiguous() if is_image(shape) else alpha)
        # F.prelu is one fused kernel but takes slopes along dimension 1 only:
        # exactly the case of flat samples, the common one after a Dense layer.
        self._per_unit = len(input_shape) == 1
        self._projection = (
            None
            if self.alpha_constraint is None
            else self.alpha_constraint.bind(
                len(shape), IMAGE_ALPHA_LAYOUT if is_image(shape) else None, "alpha_constraint"
            )
        )
        super().build(input_shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._per_unit:
            return F.prelu(x, self.alpha)
        return torch.addcmul(x.clamp_min(0), self.alpha, x.clamp_max(0))

    def weight_regularizers(self) -> dict[str, Regularizer]:
        """`{"alpha": alpha_regularizer}`, or nothing without one."""
        return {} if self.alpha_regularizer is None else {"alpha": self.alpha_regularizer}

    def weight_constraints(self) -> dict[str, Projection]:
        """`{"alpha": projection}` bound at build time, or nothing without a constraint."""
        return {} if self._projection is None else {"alpha": self._projection}
