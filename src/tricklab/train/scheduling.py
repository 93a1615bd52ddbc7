"""Applying a learning-rate schedule during training: the `LearningRateScheduler` callback.

The schedules themselves are pure closed forms in `tricklab.optim.schedules`;
this callback feeds them the run's step or epoch and writes the result into
every param group of the trainer's optimizer, the place each PyTorch optimizer
reads its learning rate from at every step.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tricklab.errors import UserInputError
from tricklab.optim.schedules import Performance, Schedule, schedules
from tricklab.train.callbacks import Callback
from tricklab.train.metrics import higher_is_better

if TYPE_CHECKING:
    import torch

    from tricklab.train.trainer import Trainer

# Where optimizers keep their momentum: torch's Adam-likes in `betas[0]`, tricklab's
# Adam-likes in `beta_1`, SGD and RMSprop (torch and tricklab) in `momentum`.
MOMENTUM_KEYS = ("betas", "beta_1", "momentum")


class LearningRateScheduler(Callback):
    """Sets every param group's learning rate (and 1cycle's momentum) from a schedule.

    Per-step schedules act in `on_batch_begin` with t the run's global step and
    `total` = epochs × steps per epoch; per-epoch ones act in `on_epoch_begin`
    with t the epoch and `total` = epochs, as Keras's `LearningRateScheduler`
    does. `performance` acts in `on_epoch_end` on `logs[monitor]`, as Keras's
    `ReduceLROnPlateau` does, so the next epoch runs at the reduced rate.

    Each group's `base` rate is its learning rate when training first begins.
    It is checkpointed, so a resumed run keeps the original base rather than the
    decayed rate the optimizer's checkpoint holds; a scheduler therefore serves
    one run, and a new optimizer needs a new scheduler. Momentum goes to
    `group["betas"][0]`, `group["beta_1"]` or `group["momentum"]`, whichever the
    optimizer has (see `MOMENTUM_KEYS`).

    Args:
        schedule: A `Schedule`, a registered schedule name, or `{name: config}`.
    """

    def __init__(self, schedule: str | dict[str, Any] | Schedule) -> None:
        self.schedule = schedules.get(schedule, "schedule")
        if isinstance(self.schedule, Performance):
            self.schedule.orient(higher_is_better(self.schedule.monitor))
        self.base: list[float] | None = None
        self.total = 0

    def get_config(self) -> dict[str, Any]:
        """Return `{"schedule": {name: config}}`, which rebuilds an equal callback."""
        return {"schedule": {_registered_name(self.schedule): self.schedule.get_config()}}

    def on_train_begin(self, trainer: Trainer) -> None:
        groups = trainer.optimizer.param_groups
        if self.base is None:
            self.base = [float(group["lr"]) for group in groups]
        per_step = self.schedule.per == "step"
        self.total = trainer.epochs * trainer.steps_per_epoch if per_step else trainer.epochs
        if self.schedule.momentum(0, self.total) is not None:
            for group in groups:
                if not any(key in group for key in MOMENTUM_KEYS):
                    raise UserInputError(
                        f"{_registered_name(self.schedule)}.cycle_momentum: "
                        f"{type(trainer.optimizer).__name__} has no momentum "
                        f"({', '.join(MOMENTUM_KEYS)}); set cycle_momentum: false"
                    )

    def on_epoch_begin(self, trainer: Trainer, epoch: int) -> None:
        if self.schedule.per == "epoch" and not isinstance(self.schedule, Performance):
            self._apply(trainer.optimizer, epoch)

    def on_batch_begin(self, trainer: Trainer, step: int) -> None:
        if self.schedule.per == "step":
            self._apply(trainer.optimizer, step)

    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: dict[str, float]) -> None:
        if not isinstance(self.schedule, Performance):
            return
        monitor = self.schedule.monitor
        if monitor not in logs:
            raise UserInputError(
                f"performance.monitor: '{monitor}' is not in the epoch's logs; "
                f"available: {', '.join(sorted(logs))}"
            )
        groups = trainer.optimizer.param_groups
        # Keras has one learning rate; with several groups, reduce them all whenever
        # any of them can still go down.
        current = max(float(group["lr"]) for group in groups)
        if self.schedule.update(float(logs[monitor]), current) < current:
            for group in groups:
                group["lr"] = self.schedule.reduce(float(group["lr"]))

    def _apply(self, optimizer: torch.optim.Optimizer, t: int) -> None:
        momentum = self.schedule.momentum(t, self.total)
        for group, base in zip(optimizer.param_groups, self.base, strict=True):
            group["lr"] = self.schedule.learning_rate(t, base, self.total)
            if momentum is None:
                continue
            if "betas" in group:
                group["betas"] = (momentum, *group["betas"][1:])
            elif "beta_1" in group:
                group["beta_1"] = momentum
            else:
                group["momentum"] = momentum

    def state_dict(self) -> dict[str, Any]:
        return {"base": self.base, "schedule": self.schedule.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.base = state["base"]
        self.schedule.load_state_dict(state["schedule"])


def schedule_curve(
    schedule: str | dict[str, Any] | Schedule, base: float, total: int
) -> list[float]:
    """The learning rate at every unit 0, 1, ..., total - 1 of a run, for plots and tests.

    Args:
        schedule: A `Schedule`, a registered schedule name, or `{name: config}`.
        base: The optimizer's learning rate (η0).
        total: Units (steps or epochs, as the schedule's `per` says) in the run.

    Raises:
        UserInputError: For `performance`, whose rates depend on the metrics of a run.
    """
    schedule = schedules.get(schedule, "schedule")
    if isinstance(schedule, Performance):
        raise UserInputError(
            "schedule: performance follows a monitored metric during training; "
            "it has no curve to draw in advance"
        )
    return [schedule.learning_rate(t, base, total) for t in range(total)]


def _registered_name(schedule: Schedule) -> str:
    # A user's own Schedule subclass has no recipe name; its class name still reads well.
    found = (info.name for info in schedules if type(schedule) is info.factory)
    return next(found, type(schedule).__name__)
