"""Callbacks: hooks the trainer calls at the start and end of training and of each epoch.

Every callback keeps its state in `state_dict()` so a checkpoint can restore
it and a resumed run behaves as if it had never stopped.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Annotated, Any, Literal

import pydantic
import torch

from tricklab.config import Configurable
from tricklab.errors import UserInputError
from tricklab.registry import Registry
from tricklab.train.metrics import higher_is_better

if TYPE_CHECKING:
    from tricklab.train.trainer import Trainer


class Callback(Configurable):
    """Base class; every hook does nothing unless a subclass overrides it.

    Attributes:
        checkpointed: Whether checkpoints hold this callback's state. A callback
            that only observes training (nothing to restore) sets it to `False`,
            so a run may be resumed with or without it.
    """

    checkpointed: bool = True

    def on_train_begin(self, trainer: Trainer) -> None:
        """Called once before the first epoch (also on resume)."""

    def on_epoch_begin(self, trainer: Trainer, epoch: int) -> None:
        """Called before epoch `epoch` (0-based)."""

    def on_batch_begin(self, trainer: Trainer, step: int) -> None:
        """Called before optimizer step `step` (0-based, counted over the whole run).

        The trainer calls the batch hooks only on callbacks that override them,
        so callbacks without per-step work cost nothing on the hot path.
        """

    def on_batch_end(self, trainer: Trainer, step: int) -> None:
        """Called after optimizer step `step` (0-based, counted over the whole run).

        `trainer.batch_loss` holds that batch's loss as a 0-d tensor (penalties
        included); reading it with `float()` waits for the device, so keep it a tensor.
        """

    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: dict[str, float]) -> None:
        """Called after epoch `epoch` with its metrics (`loss`, `val_loss`, ...)."""

    def on_train_end(self, trainer: Trainer) -> None:
        """Called once after the last epoch, also when training stopped early."""

    def state_dict(self) -> dict[str, Any]:
        """State to checkpoint (tensors and plain Python values only)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict` returned."""


callbacks: Registry[Callback] = Registry("callback", base=Callback)


@callbacks.register(
    "early_stopping",
    description="Stop when a monitored metric stops improving; can restore the best weights.",
    reference="Prechelt 1998, 'Early Stopping - But When?'",
    keras_name="EarlyStopping",
)
class EarlyStopping(Callback):
    """Stop training when `monitor` has not improved for `patience` epochs (Keras semantics).

    An epoch improves when `current < best - min_delta` (mode `min`) or `current > best
    + min_delta` (mode `max`); `auto` picks `max` for a metric where higher is better
    (`val_accuracy`, `val_auc`, `val_recall`; see
    `tricklab.train.metrics.higher_is_better`), `min` for losses and errors (`val_loss`,
    `val_mae`), and for other names `max` when they contain "acc". Training stops once
    `patience` epochs in a row have not improved. With `restore_best_weights`, the
    weights of the best epoch are put back when the callback stops training; as in
    Keras, a run that reaches its last epoch without stopping keeps its final weights.

    Args:
        monitor: History key to watch. Defaults to `"val_loss"`.
        min_delta: Smallest change that counts as an improvement. Defaults to `0.0`.
        patience: Epochs without improvement before stopping. Defaults to `0`.
        mode: `"auto"`, `"min"` or `"max"`. Defaults to `"auto"`.
        baseline: Value the metric must beat for the patience counter to reset.
            Defaults to `None`.
        restore_best_weights: Restore the best epoch's weights at the end. Defaults to `False`.
        start_from_epoch: Epochs to wait before watching at all. Defaults to `0`.
    """

    def __init__(
        self,
        monitor: str = "val_loss",
        min_delta: Annotated[float, pydantic.Field(ge=0)] = 0.0,
        patience: Annotated[int, pydantic.Field(ge=0)] = 0,
        mode: Literal["auto", "min", "max"] = "auto",
        baseline: float | None = None,
        restore_best_weights: bool = False,
        start_from_epoch: Annotated[int, pydantic.Field(ge=0)] = 0,
    ) -> None:
        self.monitor = monitor
        self.min_delta = abs(min_delta)
        self.patience = patience
        self.mode = mode
        if mode == "auto":
            higher = higher_is_better(monitor)
            self.mode = ("max" if "acc" in monitor else "min") if higher is None else (
                "max" if higher else "min")
        self.baseline = baseline
        self.restore_best_weights = restore_best_weights
        self.start_from_epoch = start_from_epoch
        self.wait = 0
        self.best = -math.inf if self.mode == "max" else math.inf
        self.best_epoch = -1
        self.stopped_epoch = -1
        self.best_weights: dict[str, torch.Tensor] | None = None

    def _improves(self, value: float, reference: float) -> bool:
        if self.mode == "max":
            return value - self.min_delta > reference
        return value + self.min_delta < reference

    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: dict[str, float]) -> None:
        if epoch < self.start_from_epoch:
            return
        if self.monitor not in logs:
            raise UserInputError(
                f"early_stopping.monitor: '{self.monitor}' is not in the history; "
                f"available: {', '.join(sorted(logs))}"
            )
        current = logs[self.monitor]
        self.wait += 1
        if self._improves(current, self.best):
            self.best, self.best_epoch = current, epoch
            if self.restore_best_weights:
                self.best_weights = {
                    key: value.detach().clone() for key, value in trainer.model.state_dict().items()
                }
            if self.baseline is None or self._improves(current, self.baseline):
                self.wait = 0
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            trainer.stop_training = True
            if self.restore_best_weights and self.best_weights is not None:
                trainer.model.load_state_dict(self.best_weights)

    def state_dict(self) -> dict[str, Any]:
        return {
            "wait": self.wait,
            "best": self.best,
            "best_epoch": self.best_epoch,
            "stopped_epoch": self.stopped_epoch,
            "best_weights": self.best_weights,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.wait = state["wait"]
        self.best = state["best"]
        self.best_epoch = state["best_epoch"]
        self.stopped_epoch = state["stopped_epoch"]
        self.best_weights = state["best_weights"]
