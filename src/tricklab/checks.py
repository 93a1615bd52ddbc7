"""Checks of single parameters, used inside signatures' `Annotated[...]`.

They hold no PyTorch, so the registry snapshot (`tricklab.recipe.snapshot`)
runs these very functions when it checks a recipe without importing the
techniques: a bad value gets the same message either way. A check that needs
a parameter declared before it reads it from pydantic's `ValidationInfo.data`.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import AfterValidator, ValidationInfo


def strictly_increasing(boundaries: list[int]) -> list[int]:
    """Accept a list whose every item is above the one before (a piecewise schedule's)."""
    if any(later <= earlier for earlier, later in itertools.pairwise(boundaries)):
        raise ValueError("boundaries must be strictly increasing")
    return boundaries


def one_more_than_boundaries(values: list[float], info: ValidationInfo) -> list[float]:
    """Accept `len(boundaries) + 1` values, one per interval the boundaries make."""
    boundaries = info.data.get("boundaries")
    if boundaries is not None and len(values) != len(boundaries) + 1:
        raise ValueError(f"needs len(boundaries) + 1 = {len(boundaries) + 1} values")
    return values


def not_above_max_momentum(value: float, info: ValidationInfo) -> float:
    """Accept a `min_momentum` no higher than `max_momentum` (1cycle's)."""
    if value > info.data.get("max_momentum", 1.0):
        raise ValueError("min_momentum must not exceed max_momentum")
    return value


def needs_warmup_target(value: int, info: ValidationInfo) -> int:
    """Accept warm-up steps only with a rate to warm up to."""
    # Keras silently ignores warmup_steps without a warmup_target; say so instead.
    if value > 0 and info.data.get("warmup_target") is None:
        raise ValueError("warmup_steps needs a warmup_target to warm up to")
    return value


def epoch_only(per: str) -> str:
    """Accept `per: epoch` only (reduce-on-plateau reads epoch-end metrics)."""
    if per != "epoch":
        raise ValueError("performance reads epoch-end metrics, so per must be 'epoch'")
    return per


def valid_target_shape(shape: list[int]) -> list[int]:
    """Accept positive sizes and at most one `-1`, the size to infer."""
    if any(size < 1 and size != -1 for size in shape):
        raise ValueError("sizes must be positive, or -1 for the one inferred")
    if shape.count(-1) > 1:
        raise ValueError("at most one size may be -1")
    return shape


def count_or_fraction(value: int | float) -> int | float:
    """Accept an integer count >= 0 or a float fraction in (0, 1), with one plain message."""
    if isinstance(value, bool) or not (
        (isinstance(value, int) and value >= 0) or (isinstance(value, float) and 0 < value < 1)
    ):
        raise ValueError("must be a count (an integer >= 0) or a fraction 0 < f < 1")
    return value


def positive_pair(value: Any) -> int | list[int]:
    """Accept a positive int or two of them (a list, or a tuple made a list)."""

    def positive(item: Any) -> bool:
        return isinstance(item, int) and not isinstance(item, bool) and item > 0

    if positive(value):
        return value
    if (
        isinstance(value, Sequence)
        and not isinstance(value, str)
        and len(value) == 2
        and all(positive(item) for item in value)
    ):
        return list(value)
    raise ValueError("expected a positive integer or a list of two, e.g. [3, 3]")


def as_pair(value: int | Sequence[int]) -> tuple[int, int]:
    """`(height, width)` of a size given as one int or as two.

    Args:
        value: An int for both axes, or a pair.
    """
    if isinstance(value, int):
        return value, value
    height, width = value
    return int(height), int(width)


def not_with_strides(value: int | list[int], info: ValidationInfo) -> int | list[int]:
    """Reject dilation > 1 with strides > 1, as Keras does (TensorFlow has no such kernel)."""
    strides = info.data.get("strides")
    if strides is not None and max(as_pair(value)) > 1 and max(as_pair(strides)) > 1:
        raise ValueError(
            f"dilation_rate > 1 cannot be combined with strides > 1 (strides {strides}), "
            "as in Keras"
        )
    return value


@dataclass(frozen=True)
class NotBelow:
    """The check of `not_below`: a value no lower than the parameter `other`."""

    other: str

    def __call__(self, value: float, info: ValidationInfo) -> float:
        bound = info.data.get(self.other)
        if bound is not None and value < bound:
            raise ValueError(f"must not be below {self.other} ({bound})")
        return value


def not_below(other: str) -> AfterValidator:
    """A pydantic validator (inside `Annotated[...]`) for a parameter that must be >= `other`.

    `other` must be declared before the annotated parameter, so the error is
    reported at the later field's own path, e.g. `model.layers.2.rrelu.upper`.

    Args:
        other: Name of the earlier parameter that bounds this one from below.
    """
    return AfterValidator(NotBelow(other))


__all__ = ["NotBelow", "as_pair", "count_or_fraction", "epoch_only", "needs_warmup_target",
           "not_above_max_momentum", "not_below", "not_with_strides", "one_more_than_boundaries",
           "positive_pair", "strictly_increasing", "valid_target_shape"]
