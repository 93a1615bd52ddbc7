"""Batch normalization with Keras semantics (momentum, epsilon, moving statistics)."""

from __future__ import annotations

from typing import Annotated

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from tricklab.errors import UserInputError
from tricklab.nn.base import Layer, Shape, held_axis, layers


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
