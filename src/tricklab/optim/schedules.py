"""Learning-rate schedules of the chapter, with Keras 3 names and defaults, as pure closed forms.

`learning_rate(t, base, total)` is the rate at unit `t` (a step or an epoch, as
`per` says) of a run of `total` units, with `base` the optimizer's configured
learning rate. `tricklab.train.scheduling.LearningRateScheduler` applies them
during training. `performance` (reduce on plateau) follows a monitored metric,
so it keeps a little state instead of having a closed form.
"""

from __future__ import annotations

import bisect
import functools
import inspect
import math
from abc import ABC, abstractmethod
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field

from tricklab.checks import (
    epoch_only,
    needs_warmup_target,
    not_above_max_momentum,
    one_more_than_boundaries,
    strictly_increasing,
)
from tricklab.config import Configurable, validate_config
from tricklab.errors import UserInputError
from tricklab.registry import Registry

Per = Literal["step", "epoch"]
Rate = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Positive = Annotated[float, Field(gt=0, allow_inf_nan=False)]
Fraction = Annotated[float, Field(ge=0, le=1)]
Count = Annotated[int, Field(ge=0)]


class Schedule(Configurable, ABC):
    """Base of every schedule: typed keyword hyperparameters, validated on construction.

    Subclasses declare their hyperparameters as a typed `__init__` signature
    (always with `per`); building one checks the arguments as a recipe entry is
    checked, so a bad value raises `UserInputError` naming the field.
    """

    per: Per

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        init = cls.__dict__.get("__init__")
        if init is None:
            return
        signature = inspect.signature(init)

        @functools.wraps(init)
        def validating_init(self: Schedule, *args: Any, **kw: Any) -> None:
            bound = signature.bind_partial(self, *args, **kw)
            given = {key: value for key, value in bound.arguments.items() if key != "self"}
            init(self, **validate_config(cls, given, cls.__name__))

        cls.__init__ = validating_init  # type: ignore[method-assign]

    @abstractmethod
    def learning_rate(self, t: int, base: float, total: int) -> float:
        """The learning rate at unit `t` (0-based) of a run of `total` units, from rate `base`."""

    def momentum(self, t: int, total: int) -> float | None:
        """The momentum (or Adam's beta_1) at unit `t`, or `None` to leave it alone."""
        return None

    def state_dict(self) -> dict[str, Any]:
        """State to checkpoint; closed forms have none."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict` returned."""


schedules: Registry[Schedule] = Registry("schedule", base=Schedule)


@schedules.register(
    "power",
    description="η0 / (1 + t/s)^c: drops fast, then more and more slowly",
    reference="Géron, Hands-On ML ch. 11 (power scheduling); Keras InverseTimeDecay for c = 1",
    keras_name="InverseTimeDecay",
)
class Power(Schedule):
    """Power scheduling: the rate drops quickly at first, then more and more slowly.

        η(t) = η0 / (1 + t / s)^c

    With c = 1 this is Keras's `InverseTimeDecay(η0, decay_steps=s, decay_rate=1.0)`,
    and the legacy Keras optimizer argument `decay=d` was this schedule with
    c = 1 and s = 1/d steps (the book's `decay=1e-4` is s = 10 000). Reference:
    Géron, Hands-On ML ch. 11, "Power scheduling"; Keras `InverseTimeDecay`.

    Args:
        decay_steps: s, units after which the rate is η0 / 2^c; > 0.
        power: c, the exponent; > 0. Defaults to `1.0` (the book: "c is typically set to 1").
        per: What t counts, "step" or "epoch". Defaults to `"step"` (Keras counts steps).
    """

    def __init__(self, decay_steps: Positive, power: Positive = 1.0, per: Per = "step") -> None:
        self.decay_steps, self.power, self.per = decay_steps, power, per

    def learning_rate(self, t: int, base: float, total: int) -> float:
        return base / (1 + t / self.decay_steps) ** self.power


@schedules.register(
    "exponential",
    description="η0 · r^(t/s): divides the rate by 1/r every s units",
    reference="Géron, Hands-On ML ch. 11 (exponential scheduling); Keras ExponentialDecay",
    keras_name="ExponentialDecay",
)
class Exponential(Schedule):
    """Exponential scheduling: the rate is multiplied by `decay_rate` every `decay_steps` units.

        η(t) = η0 · r^(t / s)          (staircase: η0 · r^floor(t / s))

    As Keras's `ExponentialDecay(η0, decay_steps=s, decay_rate=r, staircase)`.
    Reference: Géron, Hands-On ML ch. 11, "Exponential scheduling".

    Args:
        decay_steps: s, units per factor r; > 0.
        decay_rate: r, > 0. Defaults to `0.1` (the book's form, η0 · 0.1^(t/s);
            Keras has no default).
        staircase: Decay in whole steps of s units. Defaults to `False`.
        per: What t counts, "step" or "epoch". Defaults to `"step"` (Keras counts steps).
    """

    def __init__(
        self,
        decay_steps: Positive,
        decay_rate: Positive = 0.1,
        staircase: bool = False,
        per: Per = "step",
    ) -> None:
        self.decay_steps, self.decay_rate = decay_steps, decay_rate
        self.staircase, self.per = staircase, per

    def learning_rate(self, t: int, base: float, total: int) -> float:
        exponent = t / self.decay_steps
        return base * self.decay_rate ** (math.floor(exponent) if self.staircase else exponent)


@schedules.register(
    "piecewise_constant",
    description="Constant rates between boundaries: values[i] up to and including boundaries[i]",
    reference="Géron, Hands-On ML ch. 11 (piecewise constant); Keras PiecewiseConstantDecay",
    keras_name="PiecewiseConstantDecay",
)
class PiecewiseConstant(Schedule):
    """Piecewise constant scheduling; the rates are absolute, `base` is ignored.

        η(t) = values[0]   for t <= boundaries[0]
               values[i]   for boundaries[i-1] < t <= boundaries[i]
               values[-1]  for t > boundaries[-1]

    As Keras's `PiecewiseConstantDecay(boundaries, values)`: a unit equal to a
    boundary still gets the earlier value. Reference: Géron, Hands-On ML ch. 11,
    "Piecewise constant scheduling".

    Args:
        boundaries: Strictly increasing units where the rate changes.
        values: Learning rates, one more than `boundaries`.
        per: What t counts, "step" or "epoch". Defaults to `"step"` (Keras counts
            steps; the book's example counts epochs).
    """

    def __init__(
        self,
        boundaries: Annotated[list[Count], AfterValidator(strictly_increasing)],
        values: Annotated[list[Rate], AfterValidator(one_more_than_boundaries)],
        per: Per = "step",
    ) -> None:
        self.boundaries, self.values, self.per = list(boundaries), list(values), per

    def learning_rate(self, t: int, base: float, total: int) -> float:
        return self.values[bisect.bisect_left(self.boundaries, t)]


def _line(t: float, t0: float, t1: float, y0: float, y1: float) -> float:
    """Linear interpolation from (t0, y0) to (t1, y1); a segment of zero length is at its end."""
    return y1 if t1 <= t0 else y0 + (y1 - y0) * (t - t0) / (t1 - t0)


@schedules.register(
    "one_cycle",
    description="1cycle: rate up then down linearly, then annihilated; momentum the other way",
    reference="Smith 2018, arXiv:1803.09820; Géron, Hands-On ML ch. 11",
)
class OneCycle(Schedule):
    """Smith's 1cycle policy as the book describes it (Keras has no 1cycle).

    Reference: L. N. Smith 2018, "A disciplined approach to neural network
    hyper-parameters: Part 1", arXiv:1803.09820; Géron, Hands-On ML ch. 11.

    With η_max the peak rate, start = η_max / div_factor, final = start / final_div_factor,
    u = total - 1 the last unit, c = (1 - annihilation) · u the end of the cycle and
    p = c / 2 its peak, the rate and the momentum are piecewise linear:

        η(t): start → η_max on [0, p], η_max → start on [p, c], start → final on [c, u]
        m(t): max_momentum → min_momentum on [0, p], back to max_momentum on [p, c],
              then held at max_momentum

    Units past u keep the final values. The book starts "roughly 10 times lower"
    than η_max and drops the rate "by several orders of magnitude" over "the last
    few epochs"; its notebook's `OneCycleScheduler` ends at start / 1000 over the
    last `total // 10 + 1` iterations, and cycles momentum between 0.95 and 0.85.
    PyTorch's `OneCycleLR(three_phase=True, anneal_strategy="linear")` is close,
    with pct_start = (1 - annihilation) / 2 and slightly shifted knots.

    Args:
        max_learning_rate: η_max, > 0; `None` takes the optimizer's learning rate.
            Defaults to `None`.
        div_factor: start = η_max / div_factor; >= 1. Defaults to `10.0` (the book).
        final_div_factor: final = start / final_div_factor; >= 1. Defaults to `1000.0`
            (the book's notebook).
        annihilation: Fraction of the run after the cycle, in [0, 1). Defaults to `0.1`.
        max_momentum: Momentum at the ends of the cycle, in [0, 1]. Defaults to `0.95`.
        min_momentum: Momentum at the peak, <= max_momentum. Defaults to `0.85`.
        cycle_momentum: Whether to set the momentum (SGD `momentum`, Adam `beta_1`).
            Defaults to `True`.
        per: What t counts, "step" or "epoch". Defaults to `"step"` (Smith and the book
            update every iteration).
    """

    def __init__(
        self,
        max_learning_rate: Positive | None = None,
        div_factor: Annotated[float, Field(ge=1, allow_inf_nan=False)] = 10.0,
        final_div_factor: Annotated[float, Field(ge=1, allow_inf_nan=False)] = 1000.0,
        annihilation: Annotated[float, Field(ge=0, lt=1)] = 0.1,
        max_momentum: Fraction = 0.95,
        min_momentum: Annotated[Fraction, AfterValidator(not_above_max_momentum)] = 0.85,
        cycle_momentum: bool = True,
        per: Per = "step",
    ) -> None:
        self.max_learning_rate, self.div_factor = max_learning_rate, div_factor
        self.final_div_factor, self.annihilation = final_div_factor, annihilation
        self.max_momentum, self.min_momentum = max_momentum, min_momentum
        self.cycle_momentum, self.per = cycle_momentum, per

    def _knots(self, total: int) -> tuple[float, float, float]:
        last = max(total - 1, 0)
        end = (1 - self.annihilation) * last
        return last, end, end / 2

    def learning_rate(self, t: int, base: float, total: int) -> float:
        peak_rate = base if self.max_learning_rate is None else self.max_learning_rate
        start = peak_rate / self.div_factor
        last, end, peak = self._knots(total)
        t = min(t, last)
        if t <= peak:
            return _line(t, 0, peak, start, peak_rate)
        if t <= end:
            return _line(t, peak, end, peak_rate, start)
        return _line(t, end, last, start, start / self.final_div_factor)

    def momentum(self, t: int, total: int) -> float | None:
        if not self.cycle_momentum:
            return None
        _, end, peak = self._knots(total)
        if t <= peak:
            return _line(t, 0, peak, self.max_momentum, self.min_momentum)
        if t <= end:
            return _line(t, peak, end, self.min_momentum, self.max_momentum)
        return self.max_momentum


@schedules.register(
    "cosine_decay",
    description="Optional linear warmup, then a cosine from the rate down to alpha times it",
    reference="Loshchilov & Hutter 2017, arXiv:1608.03983; Goyal et al. 2017, arXiv:1706.02677",
    keras_name="CosineDecay",
)
class CosineDecay(Schedule):
    """Cosine decay with optional linear warmup, as Keras 3's `CosineDecay`.

    Reference: Loshchilov & Hutter 2017, "SGDR", arXiv:1608.03983 (cosine);
    Goyal et al. 2017, arXiv:1706.02677 (linear warmup).

    With η0 the optimizer's rate, w = warmup_steps, η_w = warmup_target (η0 without
    warmup), d = decay_steps and t' = min(t, w + d):

        η(t) = η0 + (η_w - η0) · t' / w                                    for t' < w
        η(t) = η_w · ((1 - alpha) · (1 + cos(π · (t' - w) / d)) / 2 + alpha)   otherwise

    Args:
        decay_steps: d, units of the cosine; > 0. Defaults to `None`: the rest of
            the run after the warmup, total - w (Keras requires it).
        alpha: Final rate as a fraction of η_w, in [0, 1]. Defaults to `0.0`.
        warmup_target: η_w, >= 0; `None` means no warmup. Defaults to `None`.
        warmup_steps: w, >= 0; needs `warmup_target` (Keras would ignore it).
            Defaults to `0`.
        per: What t counts, "step" or "epoch". Defaults to `"step"` (Keras counts steps).
    """

    def __init__(
        self,
        decay_steps: Annotated[int, Field(gt=0)] | None = None,
        alpha: Fraction = 0.0,
        warmup_target: Rate | None = None,
        warmup_steps: Annotated[Count, AfterValidator(needs_warmup_target)] = 0,
        per: Per = "step",
    ) -> None:
        self.decay_steps, self.alpha = decay_steps, alpha
        self.warmup_target, self.warmup_steps, self.per = warmup_target, warmup_steps, per

    def learning_rate(self, t: int, base: float, total: int) -> float:
        warmup, target = self.warmup_steps, self.warmup_target
        decay = total - warmup if self.decay_steps is None else self.decay_steps
        if decay <= 0:
            raise UserInputError(
                f"cosine_decay.warmup_steps: a warmup of {warmup} leaves nothing to decay "
                f"in a run of {total} {self.per}s; shorten it or set decay_steps"
            )
        t = min(t, warmup + decay)
        if t < warmup:
            return base + (target - base) * t / warmup
        cosine = 0.5 * (1 + math.cos(math.pi * (t - warmup) / decay))
        return (base if target is None else target) * ((1 - self.alpha) * cosine + self.alpha)


@schedules.register(
    "performance",
    description="Multiply the rate by factor when a monitored metric stops improving",
    reference="Géron, Hands-On ML ch. 11 (performance scheduling); Keras ReduceLROnPlateau",
    keras_name="ReduceLROnPlateau",
)
class Performance(Schedule):
    """Performance scheduling: reduce the rate when `monitor` stops improving (Keras semantics).

    Not a closed form: `update(value, current_lr)` takes the monitored value after each
    epoch. An epoch improves when value < best - min_delta (mode "min") or value > best
    + min_delta ("max"); "auto" picks "max" for the metrics where higher is better (see
    `orient`; else for names containing "acc"). Once `patience` epochs in a row have not
    improved and lr > min_lr, the rate becomes max(lr · factor, min_lr), the count
    restarts, and the next `cooldown` epochs are not counted. Reference: Keras
    `ReduceLROnPlateau`; Géron, Hands-On ML ch. 11, "Performance scheduling".

    Args:
        monitor: Epoch log key to watch. Defaults to `"val_loss"`.
        factor: Multiplier of the rate, in (0, 1). Defaults to `0.1` (Keras; the
            book uses 0.5 with patience 5).
        patience: Epochs without improvement before a reduction. Defaults to `10`.
        mode: "auto", "min" or "max". Defaults to `"auto"`.
        min_delta: Smallest change that counts as improvement, >= 0. Defaults to `1e-4`.
        cooldown: Epochs not counted after a reduction. Defaults to `0`.
        min_lr: Lower bound of the rate. Defaults to `0.0`.
        per: Must be "epoch". Defaults to `"epoch"`.
    """

    def __init__(
        self,
        monitor: str = "val_loss",
        factor: Annotated[float, Field(gt=0, lt=1)] = 0.1,
        patience: Count = 10,
        mode: Literal["auto", "min", "max"] = "auto",
        min_delta: Rate = 1e-4,
        cooldown: Count = 0,
        min_lr: Rate = 0.0,
        per: Annotated[Per, AfterValidator(epoch_only)] = "epoch",
    ) -> None:
        self.monitor, self.factor, self.patience = monitor, factor, patience
        self.auto_mode = mode == "auto"
        self.mode = ("max" if "acc" in monitor else "min") if mode == "auto" else mode
        self.min_delta, self.cooldown, self.min_lr, self.per = min_delta, cooldown, min_lr, per
        self.wait, self.cooldown_counter = 0, 0
        self.best = -math.inf if self.mode == "max" else math.inf

    def orient(self, higher_is_better: bool | None) -> None:
        """Let an `auto` mode follow the monitored metric's known direction, before training.

        The optimizers' layer knows no metric, so the trainer's layer, which does
        (`tricklab.train.metrics.higher_is_better`), tells it: `val_auc` or
        `val_recall` is then watched with "max", `val_mae` with "min". `None`
        (an unknown name) keeps the "acc" rule; an explicit mode is kept.
        """
        if self.auto_mode and higher_is_better is not None:
            self.mode = "max" if higher_is_better else "min"
            self.best = -math.inf if self.mode == "max" else math.inf

    def learning_rate(self, t: int, base: float, total: int) -> float:
        raise TypeError("performance follows a monitored metric; feed it with update()")

    def reduce(self, lr: float) -> float:
        """One reduction of `lr`: max(lr · factor, min_lr), or `lr` itself if already <= min_lr."""
        return max(lr * self.factor, self.min_lr) if lr > self.min_lr else lr

    def update(self, value: float, current_lr: float) -> float:
        """Record one epoch's monitored `value`; return the learning rate for the next epoch."""
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.wait = 0
        if self.mode == "max":
            improved = value > self.best + self.min_delta
        else:
            improved = value < self.best - self.min_delta
        if improved:
            self.best, self.wait = value, 0
            return current_lr
        if self.cooldown_counter > 0:
            return current_lr
        self.wait += 1
        if self.wait < self.patience or current_lr <= self.min_lr:
            return current_lr
        self.wait, self.cooldown_counter = 0, self.cooldown
        return self.reduce(current_lr)

    def state_dict(self) -> dict[str, Any]:
        return {"wait": self.wait, "best": self.best, "cooldown_counter": self.cooldown_counter}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.wait, self.best = state["wait"], state["best"]
        self.cooldown_counter = state["cooldown_counter"]
