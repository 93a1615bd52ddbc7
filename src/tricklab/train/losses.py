"""Loss functions with Keras names, fused with the model's final activation when possible.

A model built by tricklab that ends in softmax (or sigmoid) exposes
`forward_logits`; the trainer then feeds those logits to `on_logits`, which uses
PyTorch's log-sum-exp kernels instead of taking the log of probabilities. Any
other model's output goes through `__call__`, which follows Keras: probabilities
are clipped to [1e-7, 1 - 1e-7] before the log unless `from_logits=True`.

Classification losses: `sparse_categorical_crossentropy` (class indices),
`categorical_crossentropy` (one-hot or probability targets, or class indices),
`binary_crossentropy` (0/1 labels). Regression losses, which compare the output
value by value with targets reshaped to it: `mse`, `mae`, `huber`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Annotated

import pydantic
import torch
import torch.nn.functional as F

from tricklab.config import Configurable
from tricklab.registry import Registry

EPSILON = 1e-7
"""Keras's `backend.epsilon()`, the clip applied to probabilities before the log."""


Fraction = Annotated[float, pydantic.Field(ge=0, le=1)]
Positive = Annotated[float, pydantic.Field(gt=0, allow_inf_nan=False)]

_ACTIVATIONS = {"softmax": lambda z: torch.softmax(z, dim=-1), "sigmoid": torch.sigmoid}


class Loss(Configurable, ABC):
    """Base class: a batch-mean loss that can also be computed from pre-activation logits."""

    fusable_activation: str | None = None
    """Final activation whose logits `on_logits` accepts (`"softmax"`, `"sigmoid"` or `None`)."""

    @abstractmethod
    def __call__(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The batch-mean loss of the model's output against `target`."""

    def on_logits(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The same loss, given the input of the model's `fusable_activation`.

        Subclasses override this with a fused, numerically stable kernel; this
        fallback applies the activation and calls the loss.
        """
        activation = _ACTIVATIONS.get(self.fusable_activation or "")
        return self(activation(logits) if activation else logits, target)


losses: Registry[Loss] = Registry("loss", base=Loss)


@losses.register(
    "sparse_categorical_crossentropy",
    description="Cross-entropy between integer class labels and class scores.",
    keras_name="SparseCategoricalCrossentropy",
)
class SparseCategoricalCrossentropy(Loss):
    """Cross-entropy for integer labels: `-log p[y]` averaged over the batch.

    With `from_logits=False` (Keras's default) the output is a probability
    vector: it is renormalised to sum 1 and clipped to [1e-7, 1 - 1e-7] as Keras
    does. A tricklab model ending in softmax is fused instead and computed as
    `F.cross_entropy(logits, y)` (PyTorch's `nn.CrossEntropyLoss`).

    Args:
        from_logits: Whether `output` holds unnormalised scores. Defaults to `False`.
    """

    fusable_activation = "softmax"

    def __init__(self, from_logits: bool = False) -> None:
        self.from_logits = from_logits

    def __call__(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.from_logits:
            return F.cross_entropy(output, target)
        probabilities = output / output.sum(dim=-1, keepdim=True)
        return F.nll_loss(torch.log(probabilities.clamp(EPSILON, 1 - EPSILON)), target)

    def on_logits(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, target)


@losses.register(
    "categorical_crossentropy",
    description="Cross-entropy between one-hot (or probability) targets and class scores.",
    reference="Szegedy et al. 2016, Rethinking the Inception Architecture (label smoothing)",
    keras_name="CategoricalCrossentropy",
)
class CategoricalCrossentropy(Loss):
    """Cross-entropy `-sum_c y_c log p_c` of target distributions, averaged over the batch.

    Targets are one-hot or probability rows `[N, C]`, as Keras takes them; since
    tricklab's datasets yield class indices, integer labels `[N]` are accepted
    too and one-hot encoded to the output's `C` columns. With `label_smoothing`
    `ls` the targets become Keras's `y * (1 - ls) + ls / C`. With
    `from_logits=False` (Keras's default) the output is a probability vector,
    renormalised to sum 1 and clipped to [1e-7, 1 - 1e-7] before the log, as
    Keras does. A tricklab model ending in softmax is fused instead and computed
    as `F.cross_entropy(logits, y, label_smoothing=ls)` (PyTorch's
    `nn.CrossEntropyLoss`, whose smoothing is the same formula).

    Reference: Keras 3 `keras.losses.CategoricalCrossentropy`; label smoothing
    from Szegedy et al. 2016, "Rethinking the Inception Architecture for
    Computer Vision".

    Args:
        from_logits: Whether `output` holds unnormalised scores. Defaults to `False`.
        label_smoothing: `ls` in [0, 1]; 0 leaves the targets as they are. Defaults to `0.0`.
    """

    fusable_activation = "softmax"

    def __init__(self, from_logits: bool = False, label_smoothing: Fraction = 0.0) -> None:
        self.from_logits = from_logits
        self.label_smoothing = label_smoothing

    def __call__(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.from_logits:
            return self.on_logits(output, target)
        target = self._smoothed(self._distributions(output, target))
        probabilities = output / output.sum(dim=-1, keepdim=True)
        log_p = torch.log(probabilities.clamp(EPSILON, 1 - EPSILON))
        return -(target * log_p).sum(dim=-1).mean()

    def on_logits(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if target.ndim < logits.ndim:
            return F.cross_entropy(logits, target.long(), label_smoothing=self.label_smoothing)
        return F.cross_entropy(logits, target.to(logits.dtype),
                               label_smoothing=self.label_smoothing)

    @staticmethod
    def _distributions(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Targets as rows of the output's width: class indices one-hot, others as given."""
        if target.ndim < output.ndim:
            return F.one_hot(target.long(), output.shape[-1]).to(output.dtype)
        return target.to(output.dtype)

    def _smoothed(self, target: torch.Tensor) -> torch.Tensor:
        if not self.label_smoothing:
            return target
        return target * (1 - self.label_smoothing) + self.label_smoothing / target.shape[-1]


@losses.register(
    "binary_crossentropy",
    description="Cross-entropy between 0/1 labels and one probability per sample.",
    keras_name="BinaryCrossentropy",
)
class BinaryCrossentropy(Loss):
    """Binary cross-entropy `-(y log p + (1 - y) log(1 - p))` averaged over all elements.

    Labels are cast to the output's dtype and reshaped to its shape, so `[N]`
    labels work with `[N, 1]` outputs. A model ending in sigmoid is fused as
    `F.binary_cross_entropy_with_logits` (PyTorch's `nn.BCEWithLogitsLoss`).

    Args:
        from_logits: Whether `output` holds unnormalised scores. Defaults to `False`.
    """

    fusable_activation = "sigmoid"

    def __init__(self, from_logits: bool = False) -> None:
        self.from_logits = from_logits

    def __call__(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        target = target.to(output.dtype).reshape(output.shape)
        if self.from_logits:
            return F.binary_cross_entropy_with_logits(output, target)
        return F.binary_cross_entropy(output.clamp(EPSILON, 1 - EPSILON), target)

    def on_logits(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        target = target.to(logits.dtype).reshape(logits.shape)
        return F.binary_cross_entropy_with_logits(logits, target)


@losses.register(
    "mse",
    description="Mean squared error between output and target.",
    keras_name="MeanSquaredError",
)
class MeanSquaredError(Loss):
    """Mean squared error `mean((output - target)²)` (PyTorch's `nn.MSELoss`)."""

    def __call__(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(output, target.to(output.dtype).reshape(output.shape))


@losses.register(
    "mae",
    description="Mean absolute error between output and target.",
    keras_name="MeanAbsoluteError",
)
class MeanAbsoluteError(Loss):
    """Mean absolute error `mean(|output - target|)` (PyTorch's `nn.L1Loss`).

    Targets are reshaped to the output, as for `mse`. Reference: Keras 3
    `keras.losses.MeanAbsoluteError`.
    """

    def __call__(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.l1_loss(output, target.to(output.dtype).reshape(output.shape))


@losses.register(
    "huber",
    description="Huber loss: squared error for small errors, absolute error beyond delta.",
    reference="Huber 1964, Robust Estimation of a Location Parameter",
    keras_name="Huber",
)
class Huber(Loss):
    """Huber loss of each error `x = output - target`, averaged over all values.

    `0.5 x²` where `|x| <= delta`, and `delta (|x| - 0.5 delta)` beyond, so it
    is quadratic near 0 and grows linearly for outliers, with a continuous
    gradient. Targets are reshaped to the output, as for `mse`. Same as Keras 3's
    `keras.losses.Huber` and PyTorch's `nn.HuberLoss` (used here).

    Reference: Huber 1964, "Robust Estimation of a Location Parameter", Annals
    of Mathematical Statistics 35(1).

    Args:
        delta: Where the loss turns from quadratic to linear, > 0. Defaults to `1.0`.
    """

    def __init__(self, delta: Positive = 1.0) -> None:
        self.delta = delta

    def __call__(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        target = target.to(output.dtype).reshape(output.shape)
        return F.huber_loss(output, target, delta=self.delta)
