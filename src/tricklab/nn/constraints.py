"""Weight constraints with Keras 3 names, defaults and formulas, on PyTorch weight layouts.

A constraint is a projection applied to a weight after every optimizer step,
in place and without gradients (Keras applies `variable.constraint` after each
update). `Sequential.apply_constraints()` runs every constraint of a model.

Axes follow Keras: `max_norm(2, axis=0)` on a Dense kernel bounds each unit's
incoming weight vector, because Keras stores that kernel as `(in, out)` and
axis 0 runs over the inputs. tricklab stores the PyTorch layout `(out, in)`,
so each layer tells its constraints where every Keras axis lives
(`Constraint.bind(ndim, layout)`): the same recipe constrains the same
vectors as the Keras code it mirrors.

PyTorch has no constraint objects; the equivalent is rescaling
`layer.weight` under `torch.no_grad()` after `optimizer.step()`, e.g.
`w.mul_(norm.clamp(0, c) / (1e-7 + norm))` with
`norm = torch.linalg.vector_norm(w, dim=1, keepdim=True)` for a Linear layer.
"""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Annotated, Any

import torch
from pydantic import Field, SkipValidation

from tricklab.checks import not_below
from tricklab.config import Configurable, validate_config
from tricklab.errors import UserInputError
from tricklab.nn.base import Projection, RegistryRef
from tricklab.registry import Registry

EPSILON = 1e-7
"""Keras's fuzz factor (`keras.config.epsilon()`), added to norms before dividing."""

Axis = int | list[int]
"""One Keras axis or several, as Keras's norm constraints accept."""


class Constraint(Configurable, ABC):
    """Base class: a configured in-place projection of a weight (Keras `Constraint`).

    Subclasses store their hyperparameters, call `super().__init__()` (which
    validates them against the typed signature) and implement `_project`,
    which rewrites the weight in place given the PyTorch dimensions of the
    Keras `axis` (empty for constraints without one).
    """

    def __init__(self) -> None:
        validate_config(type(self), self._config, type(self).__name__)

    def bind(self, ndim: int, layout: Sequence[int] | None = None, path: str = "") -> Projection:
        """Translate the Keras axes once and return the in-place projection for such weights.

        Args:
            ndim: Number of dimensions of the weights the projection will get.
            layout: For each Keras axis `k`, the PyTorch dimension holding it:
                `(1, 0)` for a Dense kernel (Keras `(in, out)`, PyTorch `(out, in)`),
                `(2, 3, 1, 0)` for a 2-D convolution kernel (Keras
                `(kh, kw, in, out)`, PyTorch `(out, in, kh, kw)`). `None` when both
                layouts agree (biases, PReLU's alpha). Defaults to `None`.
            path: Where the constraint sits, for error messages. Defaults to the class name.

        Raises:
            UserInputError: When an axis is out of range for `ndim` dimensions.
        """
        # A partial of a method, not a closure, so that models holding it still pickle.
        return functools.partial(
            self.project_, dims=self._dims(ndim, layout, path or type(self).__name__)
        )

    def project_(self, weight: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
        """Project `weight` in place without recording gradients, norms over PyTorch `dims`.

        Args:
            weight: The weight, in PyTorch layout.
            dims: The PyTorch dimensions of the constraint's Keras axes (see `bind`).
        """
        if not torch.is_grad_enabled():  # already inside a model's `apply_constraints`
            return self._project(weight, dims)
        with torch.no_grad():
            return self._project(weight, dims)

    def __call__(self, weight: torch.Tensor, layout: Sequence[int] | None = None) -> torch.Tensor:
        """Project `weight` in place without recording gradients and return it.

        Args:
            weight: The weight, in PyTorch layout.
            layout: Where each Keras axis lives in `weight` (see `bind`). Defaults to `None`.
        """
        return self.bind(weight.ndim, layout)(weight)

    def _dims(self, ndim: int, layout: Sequence[int] | None, path: str) -> tuple[int, ...]:
        axis = getattr(self, "axis", None)
        if axis is None:
            return ()
        axes = [axis] if isinstance(axis, int) else list(axis)
        for value in axes:
            if not -ndim <= value < ndim:
                raise UserInputError(
                    f"{path}.axis: {value} is out of range for a weight of {ndim} Keras "
                    f"axes (accepted: {-ndim} to {ndim - 1})"
                )
        return tuple(sorted({value % ndim if layout is None else layout[value] for value in axes}))

    @abstractmethod
    def _project(self, weight: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
        """Project `weight` in place (gradients already off) with norms over `dims`."""

    def __repr__(self) -> str:
        arguments = ", ".join(f"{key}={value!r}" for key, value in self._config.items())
        return f"{type(self).__name__}({arguments})"


constraints: Registry[Constraint] = Registry("constraint", base=Constraint)

ConstraintSpec = Annotated[
    str | dict[str, Any] | Constraint, RegistryRef(constraints), SkipValidation
]
"""A recipe's constraint: a name, `{name: {config}}`, or a `Constraint` instance."""


def _norms(weight: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
    """Euclidean norms over `dims`, kept as size-1 dimensions so they broadcast back."""
    return torch.linalg.vector_norm(weight, dim=dims, keepdim=True)


@constraints.register(
    "max_norm",
    description="Rescale each unit's incoming weights to norm <= max_value after each step.",
    reference="Srebro & Shraibman 2005; Srivastava et al. 2014",
    keras_name="MaxNorm",
)
class MaxNorm(Constraint):
    """Max-norm constraint (Keras `MaxNorm` / `keras.constraints.max_norm`).

    `w ← w · clip(‖w‖, 0, max_value) / (ε + ‖w‖)`, norms taken along `axis`
    (Keras axes) and `ε = 1e-7`, exactly Keras's formula: vectors within the
    bound are left as they are up to the factor `‖w‖ / (ε + ‖w‖)`. Srivastava
    et al. (2014) pair it with dropout.

    PyTorch equivalent: under `torch.no_grad()`, for a Linear layer,
    `n = torch.linalg.vector_norm(w, dim=1, keepdim=True); w.mul_(n.clamp(0, c) / (1e-7 + n))`.

    Args:
        max_value: Largest allowed norm, > 0. Defaults to `2.0`.
        axis: Keras axis or axes the norm runs over; 0 on a Dense kernel is each
            unit's incoming weight vector, `[0, 1, 2]` on a Conv2D kernel each
            filter. Defaults to `0`.
    """

    def __init__(self, max_value: Annotated[float, Field(gt=0)] = 2.0, axis: Axis = 0) -> None:
        self.max_value = max_value
        self.axis = axis
        super().__init__()

    def _project(self, weight: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
        norms = _norms(weight, dims)
        # In place where possible: this runs after every optimizer step.
        return weight.mul_(norms.clamp(0.0, self.max_value).div_(norms.add_(EPSILON)))


@constraints.register(
    "non_neg",
    description="Set negative weights to zero after each step.",
    keras_name="NonNeg",
)
class NonNeg(Constraint):
    """Non-negativity constraint, `w ← max(w, 0)` (Keras `NonNeg` / `keras.constraints.non_neg`).

    PyTorch equivalent: `w.clamp_(min=0)` under `torch.no_grad()`.
    """

    def _project(self, weight: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
        return weight.clamp_(min=0.0)


@constraints.register(
    "unit_norm",
    description="Rescale each unit's incoming weights to norm 1 after each step.",
    keras_name="UnitNorm",
)
class UnitNorm(Constraint):
    """Unit-norm constraint, `w ← w / (ε + ‖w‖)` along `axis`, ε = 1e-7 (Keras `UnitNorm`).

    PyTorch equivalent: for a Linear layer,
    `w.div_(1e-7 + torch.linalg.vector_norm(w, dim=1, keepdim=True))` under `torch.no_grad()`.

    Args:
        axis: Keras axis or axes the norm runs over (see `max_norm`). Defaults to `0`.
    """

    def __init__(self, axis: Axis = 0) -> None:
        self.axis = axis
        super().__init__()

    def _project(self, weight: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
        return weight.div_(EPSILON + _norms(weight, dims))


@constraints.register(
    "min_max_norm",
    description="Move each unit's incoming-weight norm between min_value and max_value each step.",
    keras_name="MinMaxNorm",
)
class MinMaxNorm(Constraint):
    """Min-max-norm constraint (Keras `MinMaxNorm` / `keras.constraints.min_max_norm`).

    `w ← w · d / (ε + ‖w‖)` with the desired norm
    `d = rate · clip(‖w‖, min_value, max_value) + (1 − rate) · ‖w‖`, norms along
    `axis`, ε = 1e-7: `rate = 1` enforces the bounds at once, a smaller rate
    moves the norm towards them a fraction per step.

    PyTorch equivalent: under `torch.no_grad()`, with `n` the norms as for `max_norm`,
    `w.mul_((rate * n.clamp(lo, hi) + (1 - rate) * n) / (1e-7 + n))`.

    Args:
        min_value: Smallest allowed norm, >= 0. Defaults to `0.0`.
        max_value: Largest allowed norm, not below `min_value`. Defaults to `1.0`.
        rate: Fraction of the way to the bounds per application, in [0, 1]. Defaults to `1.0`.
        axis: Keras axis or axes the norm runs over (see `max_norm`). Defaults to `0`.
    """

    def __init__(
        self,
        min_value: Annotated[float, Field(ge=0)] = 0.0,
        max_value: Annotated[float, Field(ge=0), not_below("min_value")] = 1.0,
        rate: Annotated[float, Field(ge=0, le=1)] = 1.0,
        axis: Axis = 0,
    ) -> None:
        self.min_value = min_value
        self.max_value = max_value
        self.rate = rate
        self.axis = axis
        super().__init__()

    def _project(self, weight: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
        norms = _norms(weight, dims)
        desired = (
            self.rate * norms.clamp(self.min_value, self.max_value) + (1.0 - self.rate) * norms
        )
        return weight.mul_(desired / (EPSILON + norms))
