"""Keep the weights of the best epoch, as Keras's `ModelCheckpoint(save_best_only=True)` finds it.

`BestWeights` watches one history key; whenever it improves, the model's
weights are copied in memory (a tensor copy on the model's device, no file),
so the caller saves the best model once, when training ends, not at every
improving epoch.

A resumed run finds its best epoch again in the history its checkpoint
restores, and that epoch's weights where they are on disk: in the epoch's own
checkpoint while it is kept, and in `checkpoints/best.pt` after that. That file
is written once per best epoch, just before the trainer prunes the epoch's
checkpoint (`CheckpointManager.keep` epochs later), so a run killed at any
moment keeps its best weights, and the callback adds nothing to the
checkpoints themselves: it is not `checkpointed`, and a run resumes with or
without it.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal, TypeVar

import torch

from tricklab import atomic
from tricklab.train.callbacks import Callback
from tricklab.train.checkpoint import check_model_state
from tricklab.train.metrics import higher_is_better

if TYPE_CHECKING:
    from tricklab.train.trainer import Trainer

_Entry = TypeVar("_Entry")

BEST_FILE = "best.pt"
"""In the checkpoint folder: the best epoch's weights once its own checkpoint is pruned."""

UNLOGGED = ("lr", "time_s")
"""History keys that describe the run, not the model: left out of the best epoch's metrics."""


class BestWeights(Callback):
    """Copy the model's weights whenever `monitor` improves (Keras's `save_best_only`).

    An epoch improves when its value is finite and below the best so far
    (`min`) or above it (`max`), strictly, as Keras's `ModelCheckpoint`
    decides; `auto` takes the direction from the metric
    (`tricklab.train.metrics.higher_is_better`; unknown names: `max` when they
    contain "acc"), as `EarlyStopping` does. An epoch whose logs lack `monitor`
    (no validation data for a `val_` key) never improves; Keras warns and saves
    nothing then.

    Put it before early stopping in the trainer's callbacks (`keeper_first`):
    with `restore_best_weights`, early stopping replaces the weights at the
    epoch it stops, and the copy must be of that epoch's own.

    Attributes:
        best: The best value so far (infinite before any).
        best_epoch: Its 1-based epoch, `None` before any.
        best_logs: That epoch's logs, without `lr` and `time_s`.
        weights: That epoch's parameters and buffers; `None` before any, or
            when a resumed run found them nowhere (a warning says so).

    Args:
        monitor: History key to watch. Defaults to `"val_loss"`.
        mode: `"auto"`, `"min"` or `"max"`. Defaults to `"auto"`.
        min_delta: Smallest change that counts as an improvement; Keras's
            `ModelCheckpoint` has none (`0`). Give early stopping's own to pick
            the epoch it restores. Defaults to `0.0`.
        start_from_epoch: Epochs (0-based count) before which nothing is
            watched, as early stopping's. Defaults to `0`.
    """

    checkpointed = False

    def __init__(
        self,
        monitor: str = "val_loss",
        mode: Literal["auto", "min", "max"] = "auto",
        min_delta: float = 0.0,
        start_from_epoch: int = 0,
    ) -> None:
        self.monitor = monitor
        if mode == "auto":
            higher = higher_is_better(monitor)
            mode = ("max" if "acc" in monitor else "min") if higher is None else (
                "max" if higher else "min")
        self.mode = mode
        self.min_delta = abs(min_delta)
        self.start_from_epoch = start_from_epoch
        self.best = -math.inf if mode == "max" else math.inf
        self.best_epoch: int | None = None
        self.best_logs: dict[str, float] = {}
        self.weights: dict[str, torch.Tensor] | None = None
        self._epochs_seen = 0
        self._spilled: int | None = None  # the best epoch whose weights `best.pt` holds

    def _improves(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        if self.mode == "max":
            return value - self.min_delta > self.best
        return value + self.min_delta < self.best

    def observe(self, epoch: int, logs: Mapping[str, float]) -> bool:
        """Take epoch `epoch`'s (0-based) logs; return whether it is the new best.

        The weights are the caller's to copy: `on_epoch_end` copies the model's,
        and replaying a history finds its best epoch alone.
        """
        self._epochs_seen = epoch + 1
        value = logs.get(self.monitor)
        if epoch < self.start_from_epoch or value is None or not self._improves(value):
            return False
        self.best, self.best_epoch = float(value), epoch + 1
        self.best_logs = {key: float(v) for key, v in logs.items() if key not in UNLOGGED}
        return True

    def on_train_begin(self, trainer: Trainer) -> None:
        done = len(trainer.history.get("loss", []))
        if self._epochs_seen >= done:
            return
        # Resumed: the epochs before come from the checkpoint's history, not from this callback.
        for epoch in range(self._epochs_seen, done):
            self.observe(epoch, {key: values[epoch] for key, values in trainer.history.items()
                                 if epoch < len(values)})
        if self.best_epoch is not None:
            self.weights = self._stored_weights(trainer, done)

    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: dict[str, float]) -> None:
        if self.observe(epoch, logs):
            self.weights = {key: value.detach().clone()
                            for key, value in trainer.model.state_dict().items()}
        keep = trainer.checkpoints.keep if trainer.checkpoints is not None else None
        if keep is not None and self.best_epoch is not None and epoch + 1 - self.best_epoch >= keep:
            # The checkpoint saved after this epoch prunes the best epoch's own.
            self._spill(trainer)

    def on_train_end(self, trainer: Trainer) -> None:
        if trainer.stop_training and self.best_epoch == self._epochs_seen:
            # The checkpoint of the epoch that stopped may hold the weights early
            # stopping restored, not that epoch's.
            self._spill(trainer)

    def _spill(self, trainer: Trainer) -> None:
        """Write the best weights to `best.pt` beside the checkpoints, once per best epoch."""
        if trainer.checkpoints is None or self.weights is None or (
            self._spilled == self.best_epoch
        ):
            return
        state = {"epoch": self.best_epoch, "monitor": self.monitor, "model": self.weights}
        atomic.write_with(trainer.checkpoints.directory / BEST_FILE,
                          lambda file: torch.save(state, file))
        self._spilled = self.best_epoch

    def _stored_weights(self, trainer: Trainer, done: int) -> dict[str, torch.Tensor] | None:
        """The best epoch's weights after a resume: the model's, `best.pt`'s or its checkpoint's."""
        epoch = self.best_epoch
        if epoch == done and not trainer.stop_training:
            return {key: value.detach().clone()
                    for key, value in trainer.model.state_dict().items()}
        if trainer.checkpoints is not None:
            folder = trainer.checkpoints.directory
            spilled = _read(folder / BEST_FILE, epoch, self.monitor, trainer.model)
            if spilled is not None:
                self._spilled = epoch
                return spilled
            own = _read(folder / f"epoch_{epoch:04d}.pt", epoch, None, trainer.model)
            if own is not None:
                return own
        warnings.warn(
            f"the weights of epoch {epoch}, the best by {self.monitor}, are not on disk any "
            "more (the run was killed before it kept them); the best model is kept from the "
            "next epoch that improves on it",
            RuntimeWarning, stacklevel=2,
        )
        return None


def _read(
    path: Path, epoch: int | None, monitor: str | None, model: torch.nn.Module
) -> dict[str, torch.Tensor] | None:
    """The weights a `best.pt` (with `monitor`) or an epoch's checkpoint holds for `epoch`, if any.

    A checkpoint saved when training stopped is passed over: early stopping may
    have restored other weights into it.
    """
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        fits = (isinstance(state, dict) and state.get("epoch") == epoch
                and not state.get("stop_training", False)
                and (monitor is None or state.get("monitor") == monitor))
        if fits:
            check_model_state(state["model"], model)
    except Exception:  # an unreadable or misfit file is no source: the caller warns
        return None
    return state["model"] if fits else None


def keeper_first(callbacks: Sequence[_Entry]) -> list[_Entry]:
    """`callbacks` with each `BestWeights` moved to the front, the others in their order."""
    keepers = [callback for callback in callbacks if isinstance(callback, BestWeights)]
    others = [callback for callback in callbacks if not isinstance(callback, BestWeights)]
    return [*keepers, *others]
