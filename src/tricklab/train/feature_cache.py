"""Cached frozen features: run a frozen, deterministic bottom of a model once, not every step.

When the first layers of a tricklab `Sequential` hold no trainable weight and
compute the same output for a sample every time (`Sequential.frozen_prefix_length`:
no dropout, no random slopes, batch normalization frozen and so in inference
mode), training the layers above on their precomputed outputs gives the same
losses as running the whole model each step, for the cost of one pass. The
book's transfer-learning recipe freezes the reused layers for the first
epochs, which is exactly this case.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

CHUNK = 4096
"""Samples per forward pass while caching (memory, not results, depends on it)."""


@dataclass
class FrozenFeatures:
    """The cached outputs of a model's frozen bottom and the part of the model above it.

    Args:
        layers: How many leading layers were run once.
        bottom_shape: Per-sample shape of their output.
        top: The layers above, sharing the model's parameters.
        x: The training inputs passed through the bottom.
        validation: The validation inputs passed through it, with their targets.
    """

    layers: int
    bottom_shape: tuple[int, ...]
    top: nn.Module
    x: torch.Tensor
    validation: tuple[torch.Tensor, torch.Tensor] | None


def cache_frozen_bottom(
    model: nn.Module,
    x: torch.Tensor,
    validation_data: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> FrozenFeatures | None:
    """Pass `x` (and the validation inputs) through the model's frozen, deterministic bottom.

    Args:
        model: Any module; only one with `frozen_prefix_length` (tricklab's
            `Sequential`) can have a bottom to cache.
        x: Training inputs.
        validation_data: `(inputs, targets)`. Defaults to `None`.

    Returns:
        The cached features, or `None` when there is no such bottom.
    """
    length = model.frozen_prefix_length() if hasattr(model, "frozen_prefix_length") else 0
    if not length:
        return None
    bottom, top = model[:length], model[length:]
    if validation_data is not None:
        validation_data = (_forward_chunks(bottom, validation_data[0]), validation_data[1])
    # Deterministic layers compute the same in either mode, so the model's mode is kept.
    return FrozenFeatures(length, tuple(bottom.output_shape), top, _forward_chunks(bottom, x),
                          validation_data)


@torch.no_grad()
def _forward_chunks(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return torch.cat([module(x[begin : begin + CHUNK]) for begin in range(0, x.shape[0], CHUNK)])
