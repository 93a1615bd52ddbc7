"""The dropout family: dropout, alpha dropout for SELU networks, and Monte Carlo dropout.

Plain and alpha dropout act in training only (`model.train()`) and are the
identity in evaluation. Their Monte Carlo variants stay active in evaluation
too, so averaging many stochastic predictions of a trained model estimates
its uncertainty (Gal & Ghahramani 2016), as the book's `MCDropout` and
`MCAlphaDropout` subclasses do with `training=True`. Meanwhile every other
layer follows the model's mode: batch normalization keeps using its moving
statistics in `model.eval()`, as in Keras, where only the dropout layer is
forced into training mode.

Keras's `noise_shape` and `seed` arguments are not supported: masks are drawn
per element from the global torch RNG (`torch.manual_seed` makes them
reproducible).
"""

from __future__ import annotations

from typing import Annotated

import torch
import torch.nn.functional as F
from pydantic import Field

from tricklab.nn.base import Layer, layers

Rate = Annotated[float, Field(ge=0, lt=1)]
"""A drop probability, in [0, 1)."""


@layers.register(
    "dropout",
    description="Zero each input with probability rate during training.",
    reference="Srivastava et al. 2014",
    keras_name="Dropout",
)
class Dropout(Layer):
    """Inverted dropout (Srivastava et al. 2014; Keras `Dropout`).

    In training each input is zeroed with probability `rate` and the survivors
    are scaled by `1 / (1 − rate)`, so evaluation is the identity.

    PyTorch equivalent: `torch.nn.Dropout(p=rate)`.

    Args:
        rate: Probability of dropping an input, in [0, 1).
    """

    def __init__(self, rate: Rate) -> None:
        super().__init__()
        self.rate = rate

    def _deterministic_itself(self) -> bool:
        return self.rate == 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.dropout(x, self.rate, self.training)


@layers.register(
    "alpha_dropout",
    description="Dropout that keeps SELU activations at mean 0 and variance 1.",
    reference="Klambauer et al. 2017",
    keras_name="AlphaDropout",
)
class AlphaDropout(Layer):
    """Alpha dropout (Klambauer et al. 2017; Keras `AlphaDropout`), for self-normalizing nets.

    In training each input is set, with probability `rate`, to SELU's negative
    saturation value `α' = −scale · alpha ≈ −1.7580993408473766` instead of 0,
    then everything goes through the affine map `a · x + b` with
    `a = ((1 − rate) · (1 + rate · α'²))^(−1/2)` and `b = −a · α' · rate`,
    which restores mean 0 and variance 1 for inputs of mean 0 and variance 1.
    Evaluation is the identity. Keras 3 and PyTorch compute the same formula.

    PyTorch equivalent: `torch.nn.AlphaDropout(p=rate)`.

    Args:
        rate: Probability of dropping an input, in [0, 1).
    """

    def __init__(self, rate: Rate) -> None:
        super().__init__()
        self.rate = rate

    def _deterministic_itself(self) -> bool:
        return self.rate == 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.alpha_dropout(x, self.rate, self.training)


@layers.register(
    "mc_dropout",
    description="Dropout that stays active in evaluation (Monte Carlo dropout).",
    reference="Gal & Ghahramani 2016",
)
class MCDropout(Dropout):
    """Monte Carlo dropout (Gal & Ghahramani 2016): `dropout` that is active in evaluation too.

    The book's `class MCDropout(keras.layers.Dropout)` calling the parent with
    `training=True`. Other layers keep following the model's mode, so batch
    normalization uses its moving statistics under `model.eval()`.

    PyTorch equivalent: `F.dropout(x, rate, training=True)`.

    Args:
        rate: Probability of dropping an input, in [0, 1).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.dropout(x, self.rate, True)


@layers.register(
    "mc_alpha_dropout",
    description="Alpha dropout that stays active in evaluation (Monte Carlo dropout for SELU).",
    reference="Gal & Ghahramani 2016; Klambauer et al. 2017",
)
class MCAlphaDropout(AlphaDropout):
    """Monte Carlo alpha dropout: `alpha_dropout` that is active in evaluation too.

    The book's `MCAlphaDropout(keras.layers.AlphaDropout)` for self-normalizing
    (SELU) networks; otherwise as `mc_dropout`.

    PyTorch equivalent: `F.alpha_dropout(x, rate, training=True)`.

    Args:
        rate: Probability of dropping an input, in [0, 1).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.alpha_dropout(x, self.rate, True)
