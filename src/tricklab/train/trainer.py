"""The training loop: `fit`, `evaluate` and `predict` on in-memory tensors, for any `nn.Module`.

Batches are slices of one `randperm` per epoch drawn from the trainer's own
generator (no DataLoader on the hot path). Loss and metrics accumulate as
tensors and are read when the progress bar refreshes or the epoch ends, so a
step never waits on the host. A model that ends in the activation its loss can
fuse (softmax with cross-entropy) is trained on its logits for numerical
stability.

`fit`, `evaluate` and `predict` take NumPy arrays, torch tensors and anything
`torch.as_tensor` takes, as Keras's do; each call converts its data once, at
its start (`tricklab.train.inputs` holds the rules), and moves it to the model's
device; each step then indexes it there. `precision` runs the forward pass
and loss under `torch.autocast` (bfloat16 or float16, weights and optimizer
state staying float32), with dynamic loss scaling for float16.

A frozen, deterministic bottom of a tricklab `Sequential` runs once per `fit`
(`tricklab.train.feature_cache`). Training in phases (the book's "freeze the
reused layers, then unfreeze them at a lower learning rate") is `compile` with
a new optimizer between `fit` calls, `fit(initial_epoch=...)`, as in Keras.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from tricklab.train import inputs
from tricklab.train.callbacks import Callback, EarlyStopping
from tricklab.train.callbacks import callbacks as callback_registry
from tricklab.train.checkpoint import (
    CHECKPOINT_FORMAT,
    CheckpointManager,
    RunObjects,
    random_states,
    restore_checkpoint,
)
from tricklab.train.feature_cache import cache_frozen_bottom
from tricklab.train.inputs import ArrayLike
from tricklab.train.losses import Loss, losses
from tricklab.train.metrics import EpochMetrics, Metric, metric_name
from tricklab.train.metrics import metrics as metric_registry
from tricklab.train.progress import ProgressMode, ProgressReporter

Status = Literal["completed", "stopped_early", "diverged", "interrupted"]
Precision = Literal["fp32", "bf16", "fp16"]

AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
"""The reduced precision of each `precision` that autocasts; fp32 runs as it is."""


@dataclass
class FitResult:
    """What `Trainer.fit` returns.

    Args:
        history: Per-epoch lists (`loss`, `accuracy`, `val_loss`, `val_accuracy`, `lr`, `time_s`).
        status: `completed`, `stopped_early`, `diverged` or `interrupted`.
        epochs_run: Epochs finished, counting those before a resume.
        best_epoch: 1-based epoch with the best monitored value, `None` before any epoch.
        wall_time_s: Seconds spent in this call of `fit`.
        resumed_from: Epochs already done when this call started (0 without a resume).
        cached_layers: Leading frozen layers whose outputs were cached (0: none).
    """

    history: dict[str, list[float]]
    status: Status
    epochs_run: int
    best_epoch: int | None
    wall_time_s: float
    resumed_from: int = 0
    cached_layers: int = 0


class Trainer:
    """Trains a PyTorch module Keras-style.

    Args:
        model: Any `nn.Module`. If it has `final_activation` and `forward_logits`
            (as tricklab-built models do) and the loss can fuse that activation,
            training uses the logits.
        optimizer: A `torch.optim.Optimizer` over the model's parameters.
        loss: Loss name, `{name: config}` or `Loss` instance. Defaults to
            `"sparse_categorical_crossentropy"`.
        metrics: Metric names or instances. Defaults to `("accuracy",)`.
        callbacks: Callback instances or `{name: config}` mappings. Defaults to `()`.
        seed: Seed of the generator that shuffles batches. Defaults to `0`.
        checkpoint_dir: Folder for epoch-end checkpoints; `None` disables them.
            Defaults to `None`.
        progress: `"auto"`, `"bar"`, `"lines"` or `"none"`. Defaults to `"auto"`.
        divergence_check_every: Steps between checks of the running loss for
            NaN/Inf (each check reads one number from the device). Defaults to `50`.
        cache_frozen_features: Compute the outputs of a frozen, deterministic bottom
            of the model once per `fit` and train the layers above on them (never
            with `augment`, which changes the inputs every step). Defaults to `True`.
        augment: Applied to each training batch, `augment(batch_x, generator)`, with
            the shuffling generator, so augmented runs are reproducible and resumable
            (e.g. `tricklab.data.augment.Pipeline`). Defaults to `None`.
        precision: `fp32`; `bf16` (forward and loss under `torch.autocast` in
            bfloat16, which has float32's range, so no loss scaling); or `fp16`
            (autocast in float16 with `torch.amp.GradScaler`'s dynamic loss
            scaling (Micikevicius et al. 2018), which skips a step whose gradients
            overflowed and reads that flag on the host once per step).
            Parameters, gradients and optimizer states stay float32. Defaults to `"fp32"`.
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        loss: str | dict | Loss = "sparse_categorical_crossentropy",
        metrics: Sequence[str | dict | Metric] = ("accuracy",),
        callbacks: Sequence[str | dict | Callback] = (),
        seed: int = 0,
        checkpoint_dir: str | Path | None = None,
        progress: ProgressMode = "auto",
        divergence_check_every: int = 50,
        cache_frozen_features: bool = True,
        augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None,
        precision: Precision = "fp32",
    ) -> None:
        if precision not in ("fp32", *AUTOCAST_DTYPES):
            raise ValueError(f"precision must be fp32, bf16 or fp16, got {precision!r}")
        self.model = model
        reference = next(model.parameters(), None)
        self.device = reference.device if reference is not None else torch.device("cpu")
        self.precision = precision
        self._autocast = AUTOCAST_DTYPES.get(precision)
        self._scaler = (
            torch.amp.GradScaler(self.device.type) if precision == "fp16" else None
        )
        self.loss = losses.get(loss, "train.loss")
        self.metrics = [metric_registry.get(m, "train.metrics") for m in metrics]
        self.metric_names = [metric_name(m) for m in self.metrics]
        self.generator = torch.Generator().manual_seed(seed)
        self.checkpoints = CheckpointManager(checkpoint_dir) if checkpoint_dir else None
        self.progress = ProgressReporter(progress)
        self.divergence_check_every = divergence_check_every
        self.cache_frozen_features = cache_frozen_features and augment is None
        self.augment = augment
        self.phase = -1
        self.stop_training = False
        self.history: dict[str, list[float]] = {}
        self.global_step = 0
        self.batch_loss: torch.Tensor | None = None
        self.epochs = 0
        self.steps_per_epoch = 0
        self.compile(optimizer, callbacks)
        # Duck-typed so any module can opt in; tricklab's Sequential provides these.
        self._regularized = bool(getattr(model, "has_regularizers", False))
        self._closed_form = self._regularized and getattr(
            model, "regularizers_have_closed_form", False
        )
        self._constrained = bool(getattr(model, "has_constraints", False))
        fusable = getattr(model, "final_activation", None)
        self._fused = fusable is not None and fusable == self.loss.fusable_activation
        self._forward = self._full_forward = model.forward_logits if self._fused else model
        self._loss_fn = self.loss.on_logits if self._fused else self.loss
        # What the metrics must apply to the logits the fused loss leaves them.
        self._metric_activation = self.loss.fusable_activation if self._fused else None
        self._cached_layers = 0

    def compile(
        self, optimizer: torch.optim.Optimizer, callbacks: Sequence[str | dict | Callback] = ()
    ) -> None:
        """Start a training phase with `optimizer` and `callbacks`; history and step count go on.

        Keras's advice after changing which layers are trainable: compile again,
        then `fit(..., initial_epoch=epochs_done)`. Checkpoints record the phase,
        so a resume restores the optimizer and callback states only into the
        phase that saved them (an earlier phase's checkpoint gives the weights,
        history and random states).

        Args:
            optimizer: A `torch.optim.Optimizer` over the parameters to train now.
            callbacks: Callback instances or `{name: config}` mappings. Defaults to `()`.
        """
        self.optimizer = optimizer
        self.callbacks = [callback_registry.get(c, "train.callbacks") for c in callbacks]
        self._batch_begin = [c for c in self.callbacks if _overrides(c, "on_batch_begin")]
        self._batch_end = [c for c in self.callbacks if _overrides(c, "on_batch_end")]
        self.phase += 1

    def fit(
        self,
        x: ArrayLike,
        y: ArrayLike,
        epochs: int = 1,
        batch_size: int = 32,
        validation_data: tuple[ArrayLike, ArrayLike] | None = None,
        shuffle: bool = True,
        resume: bool = False,
        initial_epoch: int = 0,
        validation_split: float = 0.0,
    ) -> FitResult:
        """Train up to epoch `epochs` (in total, counting those done before, as Keras counts).

        Data comes as Keras takes it (NumPy arrays, torch tensors, nested lists,
        any numeric dtype), converted once when the call starts, never per step,
        by the rules of `tricklab.train.inputs`: inputs become the model's
        floating dtype (integers keep their values: uint8 images are not divided
        by 255); `sparse_categorical_crossentropy` targets become int64 class
        indices, `mse` and `binary_crossentropy` targets the floating dtype; a
        float32 CPU tensor or native-order float32 NumPy array is used without a copy.

        Args:
            x: Inputs, first dimension the samples.
            y: Targets, same first dimension.
            epochs: Total number of epochs. Defaults to `1`.
            batch_size: Samples per step; the last batch may be smaller. Defaults to `32`.
            validation_data: `(x_val, y_val)` evaluated after each epoch, converted
                like `x` and `y`. It overrides `validation_split`, as in Keras.
                Defaults to `None`.
            shuffle: Draw a new permutation each epoch. Defaults to `True`.
            resume: Continue from the newest readable checkpoint in `checkpoint_dir`;
                with none there, training starts from the beginning, and a progress
                note says so. Defaults to `False`.
            initial_epoch: Epochs already done, e.g. by an earlier phase of this
                trainer (Keras's `initial_epoch`). Defaults to `0`.
            validation_split: Fraction in [0, 1) of the samples held out as
                validation data, as Keras defines it: the last ones, taken before
                any shuffling; training keeps the first `int(N * (1 - validation_split))`
                of the `N` samples. `0` holds out none; ignored when
                `validation_data` is given. Defaults to `0.0`.

        Returns:
            The history, status and epoch counts of the run.

        Raises:
            UserInputError: Before anything is trained or restored, on data that is
                not numbers (strings, objects, ragged lists, complex numbers), that has
                no samples, `x` and `y` (or the parts of `validation_data`) of different
                lengths, class indices that are not whole numbers >= 0, a
                `validation_data` that is not a pair, or a `validation_split` outside
                [0, 1) or leaving either side empty.
        """
        start = time.perf_counter()
        x, y, validation_data = inputs.fit_data(
            x, y, validation_data, validation_split, self.loss, self._float_dtype(), self.device
        )
        self.epochs = epochs
        self.steps_per_epoch = math.ceil(x.shape[0] / batch_size)
        first_epoch = self._restore() if resume else None
        first_epoch = initial_epoch if first_epoch is None else first_epoch
        self._cached_layers = 0
        if self.cache_frozen_features and first_epoch < epochs:
            x, validation_data = self._use_frozen_features(x, validation_data)
        status: Status = "stopped_early" if self.stop_training else "completed"
        for callback in self.callbacks:
            callback.on_train_begin(self)
        self.progress.train_begin(epochs)
        try:
            for epoch in range(first_epoch, epochs):
                if self.stop_training:
                    break
                for callback in self.callbacks:
                    callback.on_epoch_begin(self, epoch)
                epoch_start = time.perf_counter()
                logs, finite = self._train_epoch(x, y, batch_size, shuffle, epoch)
                if finite and validation_data is not None:
                    scores = self._evaluate(*validation_data, batch_size, self._forward)
                    logs.update({f"val_{key}": value for key, value in scores.items()})
                logs["lr"] = float(self.optimizer.param_groups[0]["lr"])
                logs["time_s"] = time.perf_counter() - epoch_start
                for key, value in logs.items():
                    self.history.setdefault(key, []).append(value)
                self.progress.epoch_end(epoch, logs, logs["time_s"])
                if not finite:
                    status = "diverged"
                    break
                for callback in self.callbacks:
                    callback.on_epoch_end(self, epoch, logs)
                if self.stop_training:
                    status = "stopped_early"
                if self.checkpoints is not None:
                    self.checkpoints.save(epoch + 1, self._state(epoch + 1, status))
        except KeyboardInterrupt:
            status = "interrupted"
        finally:
            self.progress.close()
            self._forward = self._full_forward
        if status != "interrupted":
            for callback in self.callbacks:
                callback.on_train_end(self)
        return FitResult(
            history={k: list(v) for k, v in self.history.items()},
            status=status,
            epochs_run=len(self.history.get("loss", [])),
            best_epoch=self._best_epoch(),
            wall_time_s=time.perf_counter() - start,
            resumed_from=first_epoch,
            cached_layers=self._cached_layers,
        )

    def _float_dtype(self) -> torch.dtype:
        """The floating dtype the model computes in now (`.double()` may have changed it)."""
        return inputs.float_dtype(self.model.parameters())

    def _use_frozen_features(
        self, x: torch.Tensor, validation_data: tuple[torch.Tensor, torch.Tensor] | None
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor] | None]:
        """Run a frozen, deterministic bottom once and point the step at the layers above it."""
        cache = cache_frozen_bottom(self.model, x, validation_data)
        if cache is None:
            return x, validation_data
        self._cached_layers = cache.layers
        self._forward = cache.top.forward_logits if self._fused else cache.top
        self.progress.note(
            f"caching the outputs of the {cache.layers} frozen bottom layers "
            f"(shape {cache.bottom_shape}); the layers above train on them"
        )
        return cache.x, cache.validation

    def _train_epoch(
        self, x: torch.Tensor, y: torch.Tensor, batch_size: int, shuffle: bool, epoch: int
    ) -> tuple[dict[str, float], bool]:
        model, optimizer, compute_gradients = self.model, self.optimizer, self.compute_gradients
        constrain = model.apply_constraints if self._constrained else None
        model.train()
        count = x.shape[0]
        # Drawn on the CPU generator, so a seed shuffles alike on every device.
        order = torch.randperm(count, generator=self.generator) if shuffle else torch.arange(count)
        order = order.to(x.device, non_blocking=True)
        steps = math.ceil(count / batch_size)
        loss_sum = torch.zeros((), dtype=torch.float64, device=x.device)
        penalty_sum = torch.zeros((), dtype=torch.float64, device=x.device)
        scores = EpochMetrics(self.metrics, self._metric_activation, y[order])
        self.progress.epoch_begin(epoch, steps)
        seen = 0
        batch_begin, batch_end = self._batch_begin, self._batch_end
        augment, generator = self.augment, self.generator
        for step in range(steps):
            for callback in batch_begin:
                callback.on_batch_begin(self, self.global_step)
            index = order[step * batch_size : (step + 1) * batch_size]
            batch_y = y[index]
            batch_x = x[index] if augment is None else augment(x[index], generator)
            batch_loss, output, penalty = compute_gradients(batch_x, batch_y)
            self.batch_loss = batch_loss  # for per-batch callbacks; a tensor, read without sync
            if self._scaler is None:
                optimizer.step()
            else:
                self._scaler.step(optimizer)
                self._scaler.update()
            if constrain is not None:
                constrain()
            for callback in batch_end:
                callback.on_batch_end(self, self.global_step)
            self.global_step += 1
            size = index.shape[0]
            loss_sum.add_(batch_loss, alpha=size)
            if penalty is not None:
                penalty_sum.add_(penalty, alpha=size)
            scores.add(output, seen, batch_y)
            seen += size
            if (step + 1) % self.divergence_check_every == 0 and not torch.isfinite(loss_sum):
                return self._logs(loss_sum, scores.values(seen), seen, penalty_sum), False
            if self.progress.wants_update():
                logs = self._logs(loss_sum, scores.values(seen), seen, penalty_sum)
                self.progress.step(step + 1, logs)
        logs = self._logs(loss_sum, scores.values(seen), seen, penalty_sum)
        return logs, math.isfinite(logs["loss"])

    def compute_gradients(
        self, batch_x: torch.Tensor, batch_y: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Fill the parameters' `.grad` for one batch; the optimizer step is the caller's.

        As in Keras, the loss includes the weight penalties (`l2(a)` adds
        `a·Σw²`). Built-in l1/l2 penalties have their gradient added in closed
        form after `backward()` (`add_regularization_gradients`); any other
        penalty joins the loss before `backward()`.

        Returns:
            The loss with penalties, the output it came from (the logits when
            the loss is fused with the final activation) and the penalty alone
            (`None` without regularizers), all detached.
        """
        self.optimizer.zero_grad(set_to_none=True)
        with self._precision():
            output = self._forward(batch_x)
            loss = self._loss_fn(output, batch_y)
        penalty = None
        if self._regularized and not self._closed_form:
            penalty = self.model.regularization_loss()
            loss = loss + penalty
        if self._scaler is None:
            loss.backward()
        else:
            self._scaler.scale(loss).backward()
            # True gradients from here on: penalties, clipping and the step see them.
            self._scaler.unscale_(self.optimizer)
        if self._closed_form:
            penalty = self.model.add_regularization_gradients()
            loss = loss.detach() + penalty
        return loss.detach(), output.detach(), None if penalty is None else penalty.detach()

    def _precision(self) -> torch.autocast | contextlib.nullcontext:
        """The autocast region of `precision` (`fp32`: none)."""
        if self._autocast is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self._autocast)

    def _logs(
        self,
        loss_sum: torch.Tensor,
        metric_values: list[torch.Tensor],
        seen: int,
        penalty_sum: torch.Tensor | None = None,
    ) -> dict:
        logs = {"loss": float(loss_sum) / seen}
        if self._regularized and penalty_sum is not None:
            logs["regularization_loss"] = float(penalty_sum) / seen
        for name, value in zip(self.metric_names, metric_values, strict=True):
            logs[name] = float(value)
        return logs

    @torch.no_grad()
    def evaluate(
        self, x: ArrayLike, y: ArrayLike, batch_size: int = 32
    ) -> dict[str, float]:
        """Loss and metrics of the model in inference mode over `(x, y)`.

        Args:
            x: Inputs: a NumPy array, a tensor or anything `torch.as_tensor` takes,
                converted once as `fit` converts them (integers keep their values).
            y: Targets, converted as `fit` converts them.
            batch_size: Samples per forward pass; evaluation uses at least 1024
                since results do not depend on it. Defaults to `32`.

        Returns:
            `loss` averaged over the samples, and each metric by name over all of them.

        Raises:
            UserInputError: On data `fit` refuses, or `x` and `y` of different lengths.
        """
        x, y = inputs.data_pair(x, y, self.loss, self._float_dtype(), self.device)
        return self._evaluate(x, y, batch_size, self._full_forward)

    @torch.no_grad()
    def _evaluate(
        self, x: torch.Tensor, y: torch.Tensor, batch_size: int, forward: Any
    ) -> dict[str, float]:
        was_training = self.model.training
        self.model.eval()
        loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        scores = EpochMetrics(self.metrics, self._metric_activation, y)
        # Keras's evaluate reports the loss with the weight penalties, as training does.
        penalty = self.model.regularization_loss() if self._regularized else None
        chunk = max(batch_size, 1024)
        for begin in range(0, x.shape[0], chunk):
            batch_x, batch_y = x[begin : begin + chunk], y[begin : begin + chunk]
            with self._precision():
                output = forward(batch_x)
                batch_loss = self._loss_fn(output, batch_y)
            if penalty is not None:
                batch_loss = batch_loss + penalty
            loss_sum.add_(batch_loss, alpha=batch_x.shape[0])
            scores.add(output, begin, batch_y)
        self.model.train(was_training)
        return self._logs(loss_sum, scores.values(x.shape[0]), x.shape[0])

    @torch.no_grad()
    def predict(self, x: ArrayLike, batch_size: int = 1024) -> torch.Tensor | np.ndarray:
        """The model's outputs (probabilities for a softmax model) in inference mode.

        Args:
            x: Inputs: a NumPy array, a tensor or anything `torch.as_tensor` takes,
                converted once to the model's float dtype as `fit` converts them
                (integers keep their values: uint8 images are not divided by 255).
                Each batch moves to the model's device in turn.
            batch_size: Samples per forward pass. Defaults to `1024`.

        Returns:
            For a tensor, a CPU tensor; for anything else a NumPy array, as Keras
            returns.

        Raises:
            UserInputError: On inputs `fit` refuses.
        """
        data = inputs.prediction_inputs(x, self._float_dtype())
        was_training = self.model.training
        self.model.eval()
        outputs = []
        for begin in range(0, data.shape[0], batch_size):
            with self._precision():
                output = self.model(data[begin : begin + batch_size].to(self.device))
            outputs.append((output.float() if self._autocast else output).cpu())
        self.model.train(was_training)
        result = torch.cat(outputs)
        return result if isinstance(x, torch.Tensor) else result.numpy()

    def _best_epoch(self) -> int | None:
        stopper = next((c for c in self.callbacks if isinstance(c, EarlyStopping)), None)
        if stopper is not None:
            monitor, maximize = stopper.monitor, stopper.mode == "max"
        else:
            monitor, maximize = ("val_loss" if "val_loss" in self.history else "loss"), False
        best = None
        for index, value in enumerate(self.history.get(monitor, [])):
            better = best is None or (value > best[0] if maximize else value < best[0])
            if math.isfinite(value) and better:
                best = (value, index)
        return None if best is None else best[1] + 1

    def _state(self, epochs_done: int, status: Status) -> dict[str, Any]:
        return {
            "format": CHECKPOINT_FORMAT,
            "epoch": epochs_done,
            "phase": self.phase,
            "status": status,
            "stop_training": self.stop_training,
            "global_step": self.global_step,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "callbacks": [callback.state_dict() for callback in self._checkpointed()],
            "history": self.history,
            "rng": random_states(self.generator, self.device),
            **({"grad_scaler": self._scaler.state_dict()} if self._scaler is not None else {}),
        }

    def _checkpointed(self) -> list[Callback]:
        return [callback for callback in self.callbacks if callback.checkpointed]

    def _restore(self) -> int | None:
        """Restore the newest checkpoint that fits this run; return its epoch, or `None`.

        A newest checkpoint that is unreadable or does not fit (another model's
        keys or shapes, another optimizer's parameters, damaged contents) is
        skipped with a warning for the one before it (see
        `CheckpointManager.load_latest`); `None` means training starts over.
        Optimizer and callback states are restored only into the phase that saved
        them: another phase's optimizer may train other parameters.
        """
        if self.checkpoints is None:
            return None
        if not self.checkpoints.paths():
            # Never silently: asked to resume, the run says it starts over.
            self.progress.note(f"resume: no checkpoint in {self.checkpoints.directory}; "
                               "training starts from the beginning")
            return None
        state = self.checkpoints.load_latest(self._restore_from)
        return None if state is None else state["epoch"]

    def _restore_from(self, state: dict[str, Any]) -> None:
        """Restore `state`, or raise `CheckpointMismatch` leaving the run untouched.

        `restore_checkpoint` checks everything before it restores the live
        objects; the trainer's own counters follow.
        """
        restore_checkpoint(state, RunObjects(
            model=self.model, optimizer=self.optimizer, generator=self.generator,
            phase=self.phase, callbacks=self._checkpointed(), device=self.device,
            scaler=self._scaler,
        ))
        self.history = {key: list(values) for key, values in state["history"].items()}
        self.stop_training = state["stop_training"]
        self.global_step = state["global_step"]


def _overrides(callback: Callback, hook: str) -> bool:
    return getattr(type(callback), hook) is not getattr(Callback, hook)
