"""Learning-rate range test: grow the learning rate exponentially and watch the loss.

Train for a few hundred steps while the learning rate rises from `min_lr` to
`max_lr` by a constant factor per step; the loss first falls, then flattens,
then climbs. The maximum learning rate for 1cycle is taken a decade below the
minimum of the smoothed loss: the book puts the best rate "about 10 times
lower than the turning point". The model and optimizer are restored
afterwards, so the test leaves no trace.

References:
    Smith (2017), "Cyclical Learning Rates for Training Neural Networks",
    arXiv:1506.01186, section 3.3; Géron, Hands-On ML 2nd ed., ch. 11
    ("Learning Rate Scheduling").
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch

from tricklab.train.trainer import Trainer


@dataclass
class LRFindResult:
    """Outcome of a range test.

    Args:
        learning_rates: Learning rate of each step taken.
        losses: Raw batch loss of each step.
        smoothed: Bias-corrected exponential moving average of `losses`.
        suggestion: Suggested maximum learning rate for 1cycle (a decade below
            the smoothed-loss minimum), `None` if the loss never fell.
        best_learning_rate: Learning rate at the smoothed-loss minimum.
        stopped_early: Whether the test stopped because the loss exploded.
    """

    learning_rates: list[float]
    losses: list[float]
    smoothed: list[float]
    suggestion: float | None
    best_learning_rate: float | None
    stopped_early: bool


def find_learning_rate(
    trainer: Trainer,
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int = 32,
    min_lr: float = 1e-6,
    max_lr: float = 10.0,
    steps: int = 300,
    smoothing: float = 0.98,
    explode_factor: float = 4.0,
) -> LRFindResult:
    """Run the range test with `trainer`'s model, optimizer and loss.

    The learning rate of step `i` is `min_lr · (max_lr / min_lr)^(i / (steps - 1))`;
    the test stops early once the smoothed loss exceeds `explode_factor` times
    its minimum, or is not finite.

    Args:
        trainer: Provides the model, optimizer, loss and shuffling generator.
        x: Training inputs.
        y: Training targets.
        batch_size: Samples per step. Defaults to `32`.
        min_lr: First learning rate. Defaults to `1e-6`.
        max_lr: Last learning rate. Defaults to `10.0`.
        steps: Number of steps (batches are drawn again when the data runs out).
            Defaults to `300`.
        smoothing: Weight of the past in the moving average. Defaults to `0.98`.
        explode_factor: Stop when the smoothed loss exceeds this multiple of its
            minimum. Defaults to `4.0`.
    """
    if not 0 < min_lr < max_lr:
        raise ValueError("lr-find needs 0 < min_lr < max_lr")
    if steps < 2:
        raise ValueError("lr-find needs at least 2 steps")
    model, optimizer = trainer.model, trainer.optimizer
    saved_model = copy.deepcopy(model.state_dict())
    saved_optimizer = copy.deepcopy(optimizer.state_dict())
    growth = (max_lr / min_lr) ** (1 / (steps - 1))
    learning_rates: list[float] = []
    losses: list[float] = []
    smoothed: list[float] = []
    average, best = 0.0, math.inf
    stopped_early = False
    model.train()
    x, y = x.to(trainer.device), y.to(trainer.device)
    order = torch.randperm(x.shape[0], generator=trainer.generator)
    position = 0
    for step in range(steps):
        if position + batch_size > x.shape[0]:
            order, position = torch.randperm(x.shape[0], generator=trainer.generator), 0
        index = order[position : position + batch_size]
        position += batch_size
        learning_rate = min_lr * growth**step
        for group in optimizer.param_groups:
            group["lr"] = learning_rate
        loss, _, _ = trainer.compute_gradients(x[index], y[index])
        optimizer.step()
        value = float(loss)
        average = smoothing * average + (1 - smoothing) * value
        corrected = average / (1 - smoothing ** (step + 1))
        learning_rates.append(learning_rate)
        losses.append(value)
        smoothed.append(corrected)
        if not math.isfinite(corrected) or corrected > explode_factor * best:
            stopped_early = True
            break
        best = min(best, corrected)
    model.load_state_dict(saved_model)
    optimizer.load_state_dict(saved_optimizer)
    finite = [(loss, lr) for loss, lr in zip(smoothed, learning_rates, strict=True)
              if math.isfinite(loss)]
    best_lr = min(finite)[1] if finite and min(finite)[0] < smoothed[0] else None
    return LRFindResult(
        learning_rates=learning_rates,
        losses=losses,
        smoothed=smoothed,
        suggestion=None if best_lr is None else best_lr / 10,
        best_learning_rate=best_lr,
        stopped_early=stopped_early,
    )
