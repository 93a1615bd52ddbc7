"""Batch and layer normalization with Keras semantics and defaults."""

from __future__ import annotations

from typing import Annotated

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from tricklab.errors import UserInputError
from tricklab.nn.base import Layer, Projection, Shape, held_axis, layers
from tricklab.nn.constraints import Constraint, ConstraintSpec, constraints
from tricklab.nn.initializers import InitializerSpec, initializers
from tricklab.nn.regularizers import Regularizer, RegularizerSpec, regularizers


@layers.register(
    "batch_norm",
    description="Normalize each feature by batch statistics, then scale and shift.",
    reference="Ioffe & Szegedy 2015",
    keras_name="BatchNormalization",
)
class BatchNormalization(Layer):
    """Batch normalization (Ioffe & Szegedy 2015) with Keras 3 semantics.

    In training, each feature is normalized with the batch mean μ and the
    biased (population) batch variance σ²:
    `y = gamma · (x − μ) / sqrt(σ² + epsilon) + beta`, and the moving
    statistics are updated as Keras does,
    `moving = momentum · moving + (1 − momentum) · batch` (with the biased
    variance). In evaluation, and whenever the layer is frozen
    (`trainable = False`, as in Keras), the moving statistics are used instead.
    `moving_mean`/`moving_variance` start at 0 and 1 and are buffers; they count
    as non-trainable parameters in the summary, as Keras shows them.

    PyTorch equivalent: `torch.nn.BatchNorm1d(n, eps=epsilon, momentum=1 - momentum)`,
    except that PyTorch's momentum is the weight of the new batch and PyTorch
    updates its running variance with the unbiased batch variance.

    Args:
        axis: Feature axis of the batched tensor (not 0, the batch), as Keras
            counts it: `-1` is an image's channels. Defaults to `-1`.
        momentum: Weight of the old moving statistics, in [0, 1]. Defaults to `0.99`.
        epsilon: Added to the variance for stability, > 0. Defaults to `1e-3`.
        center: Whether to learn an offset `beta` (initialized to 0). Defaults to `True`.
        scale: Whether to learn a factor `gamma` (initialized to 1). Defaults to `True`.
    """

    def __init__(
        self,
        axis: int = -1,
        momentum: Annotated[float, Field(ge=0, le=1)] = 0.99,
        epsilon: Annotated[float, Field(gt=0)] = 1e-3,
        center: bool = True,
        scale: bool = True,
    ) -> None:
        super().__init__()
        self.axis = axis
        self.momentum = momentum
        self.epsilon = epsilon
        self.center = center
        self.scale = scale

    def build(self, input_shape: Shape) -> None:
        """Create `gamma`, `beta`, `moving_mean` and `moving_variance` for the feature axis.

        Args:
            input_shape: Shape of one input sample, without the batch dimension.

        Raises:
            UserInputError: When `axis` is the batch axis or out of range for `input_shape`.
        """
        rank = len(input_shape) + 1
        axis = self.axis + rank if self.axis < 0 else self.axis
        if not 1 <= axis < rank:
            raise UserInputError(
                f"axis {self.axis} is not a feature axis of a batch of "
                f"per-sample shape {tuple(input_shape)}"
            )
        # F.batch_norm normalizes dimension 1; any other feature axis is moved there.
        self._feature_dim = held_axis(axis, input_shape)
        features = input_shape[axis - 1]
        self.gamma = nn.Parameter(torch.ones(features)) if self.scale else None
        self.beta = nn.Parameter(torch.zeros(features)) if self.center else None
        self.register_buffer("moving_mean", torch.zeros(features))
        self.register_buffer("moving_variance", torch.ones(features))
        super().build(input_shape)

    def _deterministic_itself(self) -> bool:
        # Trainable, it normalizes by the batch's statistics; frozen, by its moving ones.
        return not self._trainable

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._feature_dim != 1:
            x = x.movedim(self._feature_dim, 1)
        if self.training and self._trainable:
            y = F.batch_norm(x, None, None, self.gamma, self.beta, True, 0.0, self.epsilon)
            self._update_moving_statistics(x)
        else:
            y = F.batch_norm(
                x,
                self.moving_mean,
                self.moving_variance,
                self.gamma,
                self.beta,
                False,
                0.0,
                self.epsilon,
            )
        return y if self._feature_dim == 1 else y.movedim(1, self._feature_dim)

    @torch.no_grad()
    def _update_moving_statistics(self, x: torch.Tensor) -> None:
        # F.batch_norm's own update uses the unbiased variance, Keras the biased one.
        # batch_norm_update_stats returns the biased one in a single fused pass,
        # an order of magnitude faster on CPU than var_mean over the batch axis.
        mean, variance = torch.batch_norm_update_stats(x, None, None, 0.0)
        # lerp_(b, 1 - m) = m·moving + (1 - m)·b in one kernel instead of two.
        self.moving_mean.lerp_(mean, 1.0 - self.momentum)
        self.moving_variance.lerp_(variance, 1.0 - self.momentum)


@layers.register(
    "layer_norm",
    description="Normalize each sample over the given axes, then scale and shift.",
    reference="Ba et al. 2016",
    keras_name="LayerNormalization",
)
class LayerNormalization(Layer):
    """Layer normalization (Ba et al. 2016) with Keras 3 semantics.

    Each sample is normalized on its own, with the mean μ and the biased
    variance σ² taken over `axis`:
    `y = gamma · (x − μ) / sqrt(σ² + epsilon) + beta`. No batch statistic is
    involved, so training and evaluation compute the same function.

    `gamma` and `beta` have one entry per position of the normalized axes.
    Their initializers see Keras's shape (the sizes of the axes in increasing
    order); they are then held in the order the model holds those axes
    (channels first for images), as `torch.nn.LayerNorm` would hold them, and
    constraints get their Keras axes translated.

    PyTorch equivalent: `torch.nn.LayerNorm(normalized_shape, eps=epsilon)` when the
    normalized axes are the trailing ones of the held tensor.

    Args:
        axis: Axis or axes of the batched tensor normalized over, as Keras
            counts them (not 0, the batch): `-1` is an image's channels.
            Defaults to `-1`.
        epsilon: Added to the variance for stability, > 0. Defaults to `1e-3`.
        center: Whether to learn an offset `beta`. Defaults to `True`.
        scale: Whether to learn a factor `gamma`. Defaults to `True`.
        beta_initializer: Initializer of `beta`. Defaults to `"zeros"`.
        gamma_initializer: Initializer of `gamma`. Defaults to `"ones"`.
        beta_regularizer: Penalty on `beta` added to the loss. Defaults to `None`.
        gamma_regularizer: Penalty on `gamma` added to the loss. Defaults to `None`.
        beta_constraint: Projection of `beta` after each step. Defaults to `None`.
        gamma_constraint: Projection of `gamma` after each step. Defaults to `None`.
    """

    def __init__(
        self,
        axis: int | list[int] = -1,
        epsilon: Annotated[float, Field(gt=0)] = 1e-3,
        center: bool = True,
        scale: bool = True,
        beta_initializer: InitializerSpec = "zeros",
        gamma_initializer: InitializerSpec = "ones",
        beta_regularizer: RegularizerSpec | None = None,
        gamma_regularizer: RegularizerSpec | None = None,
        beta_constraint: ConstraintSpec | None = None,
        gamma_constraint: ConstraintSpec | None = None,
    ) -> None:
        super().__init__()
        self.axis = axis
        self.epsilon = epsilon
        self.center = center
        self.scale = scale
        self.beta_initializer = initializers.get(
            beta_initializer, "LayerNormalization.beta_initializer"
        )
        self.gamma_initializer = initializers.get(
            gamma_initializer, "LayerNormalization.gamma_initializer"
        )
        # As in Keras, the regularizer or constraint of a parameter left out is ignored.
        self._regularizers: dict[str, Regularizer] = {
            name: regularizers.get(spec, f"LayerNormalization.{name}_regularizer")
            for name, spec, kept in (
                ("beta", beta_regularizer, center), ("gamma", gamma_regularizer, scale)
            )
            if spec is not None and kept
        }
        self._constraints: dict[str, Constraint] = {
            name: constraints.get(spec, f"LayerNormalization.{name}_constraint")
            for name, spec, kept in (
                ("beta", beta_constraint, center), ("gamma", gamma_constraint, scale)
            )
            if spec is not None and kept
        }
        self._projections: dict[str, Projection] = {}

    def build(self, input_shape: Shape) -> None:
        """Create `gamma` and `beta` over the normalized axes.

        Args:
            input_shape: Shape of one input sample, without the batch dimension.

        Raises:
            UserInputError: When an axis is the batch axis, out of range or repeated.
        """
        rank = len(input_shape) + 1
        given = [self.axis] if isinstance(self.axis, int) else list(self.axis)
        axes = sorted(axis + rank if axis < 0 else axis for axis in given)
        if not axes or not all(1 <= axis < rank for axis in axes) or len(set(axes)) < len(axes):
            raise UserInputError(
                f"axis {self.axis} is not one or more distinct feature axes of a batch of "
                f"per-sample shape {tuple(input_shape)} (accepted: 1 to {rank - 1}, or "
                f"{1 - rank} to -1)"
            )
        held = [held_axis(axis, input_shape) for axis in axes]
        self._dims = tuple(sorted(held))
        sizes = dict(zip(held, (input_shape[axis - 1] for axis in axes), strict=True))
        self._normalized_shape = tuple(sizes[dim] for dim in self._dims)
        # gamma and beta viewed to broadcast against a held batch.
        self._broadcast = tuple(sizes.get(dim, 1) for dim in range(1, rank))
        self._trailing = self._dims == tuple(range(rank - len(axes), rank))
        keras_shape = [input_shape[axis - 1] for axis in axes]
        to_held = sorted(range(len(axes)), key=lambda k: held[k])
        self.gamma = self.beta = None
        if self.scale:
            gamma = self.gamma_initializer(torch.empty(keras_shape))
            self.gamma = nn.Parameter(gamma.permute(to_held).contiguous())
        if self.center:
            beta = self.beta_initializer(torch.empty(keras_shape))
            self.beta = nn.Parameter(beta.permute(to_held).contiguous())
        layout = tuple(self._dims.index(dim) for dim in held)
        self._projections = {
            name: constraint.bind(len(axes), layout, f"{name}_constraint")
            for name, constraint in self._constraints.items()
        }
        super().build(input_shape)

    def weight_regularizers(self) -> dict[str, Regularizer]:
        """`gamma` and `beta` mapped to their regularizers, where set and the parameter exists."""
        return dict(self._regularizers)

    def weight_constraints(self) -> dict[str, Projection]:
        """`gamma` and `beta` mapped to their constraints, bound to the Keras layout at build."""
        return dict(self._projections)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._trailing:
            return F.layer_norm(x, self._normalized_shape, self.gamma, self.beta, self.epsilon)
        variance, mean = torch.var_mean(x, dim=self._dims, correction=0, keepdim=True)
        y = (x - mean) * torch.rsqrt(variance + self.epsilon)
        if self.gamma is not None:
            y = y * self.gamma.view(self._broadcast)
        if self.beta is not None:
            y = y + self.beta.view(self._broadcast)
        return y
