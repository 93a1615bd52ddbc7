"""Many seeds of one architecture trained at once, as one batched model.

A study runs each variant with several seeds. When the seeds share an
architecture, their models can be trained together: the S models' weights are
stacked into tensors with a leading seed dimension
(`torch.func.stack_module_state`), one forward pass runs every seed's model on
its own batch (`torch.vmap` over `torch.func.functional_call`), and one
optimizer updates the stacked tensors. This is PyTorch's model-ensembling
recipe (the torch.func tutorial "Model ensembling"), extended to training.

Each seed's run is the run it would have been on its own:

- its initial weights are those of its separate run (the caller builds each
  model right after `torch.manual_seed(seed)`, as a separate run builds it);
- its batches come from its own shuffling generator seeded with `seed`, drawn
  exactly as `tricklab.train.Trainer` draws them;
- its loss is its own batch mean; the seeds' losses are summed for
  `backward()`, so each seed's gradient is its own;
- the optimizer's update rules are elementwise (SGD, Adam, Nadam, RMSprop,
  Adagrad, Adamax, AdamW, FTRL, decoupled weight decay, `clipvalue`), so on the
  stacked tensors they act on each seed as separate optimizers would;
  `clipnorm` and `global_clipnorm` are not elementwise and are applied per seed
  here instead of by the optimizer;
- weight penalties and constraints are computed per seed (vmapped);
- batch normalization keeps per-seed moving statistics (stacked buffers);
- dropout draws an independent mask per seed (`vmap(randomness="different")`),
  so results equal separate runs in distribution, not bit for bit: the masks
  come from the global generator in another order than separate runs draw them.

Without randomness in the model, the trained weights equal those of separate
`Trainer` runs up to floating-point rounding (the batched matrix products sum
in another order).

What a run decides on its own (early stopping, reduce-on-plateau) cannot be
batched, nor can an operation without a `torch.vmap` batching rule
(`vmap_error(model)` names it).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, stack_module_state

from tricklab.nn.base import Layer
from tricklab.nn.model import Sequential
from tricklab.nn.normalization import BatchNormalization
from tricklab.optim import KerasOptimizer, make_optimizer
from tricklab.optim.schedules import Performance, Schedule
from tricklab.train import inputs
from tricklab.train.inputs import ArrayLike
from tricklab.train.losses import Loss
from tricklab.train.losses import losses as loss_registry
from tricklab.train.metrics import EpochMetrics, Metric, metric_name
from tricklab.train.metrics import metrics as metric_registry
from tricklab.train.scheduling import LearningRateScheduler
from tricklab.train.trainer import FitResult, Status

PROBE_SAMPLES = 2
"""Samples of the zero batch a `BatchedSeedsTrainer` trains on once, without a trace, when built."""


class _Heads(nn.Module):
    """Calls a model's `forward` or `forward_logits`: `functional_call` only calls `forward`."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, logits: bool) -> torch.Tensor:
        return self.model.forward_logits(x) if logits else self.model(x)


class _StackedBatchNormalization(BatchNormalization):
    """`BatchNormalization` whose moving-statistics update has `torch.vmap` batching rules.

    `torch.batch_norm_update_stats` and `lerp_` have none, so under vmap they
    would run once per seed; `var_mean`, `lerp` and `copy_` run once for all
    seeds. Same statistics (biased variance) and the same lerp.
    """

    @torch.no_grad()
    def _update_moving_statistics(self, x: torch.Tensor) -> None:
        dims = [dim for dim in range(x.ndim) if dim != 1]
        variance, mean = torch.var_mean(x, dim=dims, correction=0)
        self.moving_mean.copy_(torch.lerp(self.moving_mean, mean, 1.0 - self.momentum))
        self.moving_variance.copy_(
            torch.lerp(self.moving_variance, variance, 1.0 - self.momentum)
        )


class BatchedSeedsTrainer:
    """Trains S models of one architecture, one per seed, as one batched model.

    Each seed gets the run a `tricklab.train.Trainer` with the same model,
    optimizer configuration, loss, metrics and `seed` would give it (see the
    module docstring for what "the same" means with dropout). The models'
    weights are copied into stacked tensors at construction; `unstack()` copies
    the trained ones back.

    Not supported (refused with an error): models of different architectures,
    the `performance` schedule, operations `torch.vmap` cannot batch. There are
    no callbacks; nothing is checkpointed and no progress is shown.

    Reference: the torch.func "Model ensembling" tutorial
    (`stack_module_state`, `functional_call`, `vmap`).

    Args:
        models: One model per seed, same architecture, all on one device; for each
            seed's separate-run initial weights, each built right after
            `torch.manual_seed(seed)`.
        optimizer: The optimizer's configuration: a registered name, `{name: config}`
            or `{"name": name, **config}` (see `tricklab.optim.make_optimizer`).
        seeds: The seed of each model; each seeds its run's shuffling generator.
        loss: Loss name, `{name: config}` or `Loss` instance. Defaults to
            `"sparse_categorical_crossentropy"`.
        metrics: Metric names or instances. Defaults to `("accuracy",)`.
        schedule: Learning-rate schedule shared by every seed (a `Schedule`, a
            name or `{name: config}`), applied as the `LearningRateScheduler`
            callback applies it. Defaults to `None` (constant).

    Raises:
        ValueError: When the models differ in architecture, their number differs
            from the seeds', or the schedule is `performance`.
        RuntimeError: When an operation of the models has no `torch.vmap`
            batching rule (`vmap_error` returns its message's first line).
    """

    def __init__(
        self,
        models: Sequence[Sequential],
        optimizer: str | dict[str, Any],
        seeds: Sequence[int],
        loss: str | dict | Loss = "sparse_categorical_crossentropy",
        metrics: Sequence[str | dict | Metric] = ("accuracy",),
        schedule: str | dict[str, Any] | Schedule | None = None,
    ) -> None:
        if len(models) != len(seeds) or not models:
            raise ValueError(
                f"one model per seed is needed (got {len(models)} models, {len(seeds)} seeds)"
            )
        if any(repr(model) != repr(models[0]) for model in models[1:]):
            raise ValueError("batched seeds need models of one architecture (their reprs differ)")
        if next(models[0].parameters(), None) is None:
            raise ValueError("batched seeds need models with parameters to train")
        self.models = list(models)
        self.seeds = list(seeds)
        self.device = next(models[0].parameters()).device
        heads = [_Heads(model) for model in models]
        self.params, self.buffers = stack_module_state(heads)
        # Untying shared weights costs a walk over the modules at every call; only a
        # model that uses one module twice needs it.
        self._tied = sum(1 for _ in heads[0].named_parameters(remove_duplicate=False)) > len(
            list(heads[0].named_parameters())
        )
        # A weightless copy to run with the stacked tensors; its batch norms (never
        # those of the models given) update their statistics in a vmap-friendly way.
        self._template = copy.deepcopy(heads[0]).to("meta")
        for module in self._template.modules():
            if type(module) is BatchNormalization:
                module.__class__ = _StackedBatchNormalization
        self._lay_out_like_gradients(models[0].input_shape)
        self._trainable = [p for p in self.params.values() if p.requires_grad]
        self.optimizer = make_optimizer(optimizer, self._trainable)
        self._clipnorm = self._global_clipnorm = None
        if isinstance(self.optimizer, KerasOptimizer):
            # Per-tensor and global norms must be per seed: clipped here before each
            # step, so the optimizer itself must not clip the stacked tensors again.
            self._clipnorm, self.optimizer.clipnorm = self.optimizer.clipnorm, None
            self._global_clipnorm = self.optimizer.global_clipnorm
            self.optimizer.global_clipnorm = None
        self.loss = loss_registry.get(loss, "train.loss")
        self.metrics = [metric_registry.get(m, "train.metrics") for m in metrics]
        self.metric_names = [metric_name(m) for m in self.metrics]
        self.scheduler = None if schedule is None else LearningRateScheduler(schedule)
        if self.scheduler is not None and isinstance(self.scheduler.schedule, Performance):
            raise ValueError(
                "schedule: performance scheduling follows each run's own metric and "
                "cannot be shared by batched seeds"
            )
        fusable = getattr(models[0], "final_activation", None)
        self._fused = fusable is not None and fusable == self.loss.fusable_activation
        self._loss_fn = self.loss.on_logits if self._fused else self.loss
        self._metric_activation = self.loss.fusable_activation if self._fused else None
        regularized, constrained = _weight_rules(heads[0])
        # As in `Sequential`: frozen weights are neither penalized nor projected, yet
        # a model with regularizers logs its (then zero) penalty.
        self._regularized = bool(regularized)
        self._penalized = [(n, rule) for n, rule in regularized if self.params[n].requires_grad]
        self._constrained = [(n, rule) for n, rule in constrained if self.params[n].requires_grad]
        self.generators = [torch.Generator().manual_seed(seed) for seed in seeds]
        self.history: list[dict[str, list[float]]] = [{} for _ in seeds]
        self.status: list[Status] = ["completed" for _ in seeds]
        self.global_step = 0
        self.epochs = 0
        self.steps_per_epoch = 0
        self._epochs_done = 0

    def _lay_out_like_gradients(self, input_shape: Sequence[int]) -> None:
        """Hold each stacked parameter in the memory layout its batched gradient comes in.

        Under vmap a Dense kernel's gradient comes out transposed in memory;
        gradient accumulation would copy it into the parameter's layout at
        every step (as much time as the matrix products on a CPU). One
        training-mode step on a zero batch finds each gradient's layout; it
        also raises at once on an operation vmap cannot batch.
        """
        reference = next(iter(self.params.values()))
        x = torch.zeros(self.num_seeds, PROBE_SAMPLES, *input_shape, dtype=reference.dtype,
                        device=reference.device)
        # The probe must leave no trace: not in the moving statistics, not in the RNG.
        buffers = {name: buffer.clone() for name, buffer in self.buffers.items()}
        devices = [reference.device] if reference.device.type == "cuda" else []
        self._template.train()
        with torch.random.fork_rng(devices=devices):
            outputs = torch.vmap(self._seed_output, in_dims=(0, 0, 0, None),
                                 randomness="different")(self.params, buffers, x, False)
        names = [name for name, param in self.params.items() if param.requires_grad]
        if not outputs.requires_grad:
            return
        grads = torch.autograd.grad(outputs.sum(), [self.params[n] for n in names],
                                    allow_unused=True)
        for name, grad in zip(names, grads, strict=True):
            if grad is not None:
                # empty_like keeps a dense tensor's strides (and makes others contiguous).
                laid_out = torch.empty_like(grad).copy_(self.params[name].detach())
                self.params[name] = laid_out.requires_grad_()

    @property
    def num_seeds(self) -> int:
        """The number of seeds S trained together."""
        return len(self.seeds)

    def _float_dtype(self) -> torch.dtype:
        """The floating dtype the stacked models compute in."""
        return inputs.float_dtype(self.params.values())

    def fit(
        self,
        x: ArrayLike,
        y: ArrayLike,
        epochs: int = 1,
        batch_size: int = 32,
        validation_data: tuple[ArrayLike, ArrayLike] | None = None,
        shuffle: bool = True,
        validation_split: float = 0.0,
    ) -> list[FitResult]:
        """Train every seed up to epoch `epochs` (in total, counting earlier `fit` calls).

        A seed whose epoch loss is not finite is `diverged`: its history ends with
        that epoch (without validation, as `Trainer` records it) while the others
        go on; its weights keep being stepped, harmlessly, as they cannot affect
        the other seeds'. `time_s` and `wall_time_s` are those of the batched
        training, the same for every seed.

        Data is taken and converted as `Trainer.fit` takes it, once, when the
        call starts (`tricklab.train.inputs`): NumPy arrays, tensors or nested
        lists; inputs become the models' floating dtype, class indices int64.

        Args:
            x: Inputs, first dimension the samples.
            y: Targets, same first dimension.
            epochs: Total number of epochs. Defaults to `1`.
            batch_size: Samples per step; the last batch may be smaller. Defaults to `32`.
            validation_data: `(x_val, y_val)` evaluated after each epoch, converted
                like `x` and `y`; it overrides `validation_split`. Defaults to `None`.
            shuffle: Draw a new permutation per seed each epoch. Defaults to `True`.
            validation_split: Fraction in [0, 1) of the samples held out as
                validation data, the last ones, as `Trainer.fit` holds them out.
                Defaults to `0.0`.

        Returns:
            One `FitResult` per seed, in the order of `seeds`.

        Raises:
            UserInputError: Before anything is trained, on data `Trainer.fit` refuses.
        """
        start = time.perf_counter()
        x, y, validation_data = inputs.fit_data(
            x, y, validation_data, validation_split, self.loss, self._float_dtype(), self.device
        )
        self.epochs = epochs
        self.steps_per_epoch = math.ceil(x.shape[0] / batch_size)
        if self.scheduler is not None:
            self.scheduler.on_train_begin(self)
        for epoch in range(self._epochs_done, epochs):
            training = [index for index, status in enumerate(self.status) if status != "diverged"]
            if not training:
                break
            if self.scheduler is not None:
                self.scheduler.on_epoch_begin(self, epoch)
            epoch_start = time.perf_counter()
            logs = self._train_epoch(x, y, batch_size, shuffle)
            finite = [math.isfinite(seed_logs["loss"]) for seed_logs in logs]
            if validation_data is not None and any(finite):
                for seed_logs, scores, ok in zip(
                    logs, self._evaluate(*validation_data, batch_size), finite, strict=True
                ):
                    if ok:
                        seed_logs.update({f"val_{key}": value for key, value in scores.items()})
            lr = float(self.optimizer.param_groups[0]["lr"])
            elapsed = time.perf_counter() - epoch_start
            for index in training:
                logs[index].update(lr=lr, time_s=elapsed)
                for key, value in logs[index].items():
                    self.history[index].setdefault(key, []).append(value)
                if not finite[index]:
                    self.status[index] = "diverged"
            self._epochs_done = epoch + 1
        wall = time.perf_counter() - start
        return [
            FitResult(
                history={key: list(values) for key, values in history.items()},
                status=status,
                epochs_run=len(history.get("loss", [])),
                best_epoch=_best_epoch(history),
                wall_time_s=wall,
            )
            for history, status in zip(self.history, self.status, strict=True)
        ]

    def _train_epoch(
        self, x: torch.Tensor, y: torch.Tensor, batch_size: int, shuffle: bool
    ) -> list[dict[str, float]]:
        count, seeds = x.shape[0], self.num_seeds
        self._template.train()
        # Each seed's permutation from its own CPU generator, as its Trainer draws it.
        orders = torch.stack([
            torch.randperm(count, generator=generator) if shuffle else torch.arange(count)
            for generator in self.generators
        ]).to(x.device, non_blocking=True)
        loss_sum = torch.zeros(seeds, dtype=torch.float64, device=x.device)
        penalty_sum = torch.zeros(seeds, dtype=torch.float64, device=x.device)
        scores = EpochMetrics(self.metrics, self._metric_activation, y[orders], stacked=True)
        train_step = torch.vmap(self._seed_scores, randomness="different")
        for step in range(self.steps_per_epoch):
            if self.scheduler is not None:
                self.scheduler.on_batch_begin(self, self.global_step)
            index = orders[:, step * batch_size : (step + 1) * batch_size]
            batch_y = y[index]
            self.optimizer.zero_grad(set_to_none=True)
            batch_losses, outputs = train_step(self.params, self.buffers, x[index], batch_y)
            penalties = self._penalties()
            if penalties is not None:
                batch_losses = batch_losses + penalties
            # Summed, each seed's loss sends its gradient to its own slice only.
            batch_losses.sum().backward()
            self._clip_per_seed()
            self.optimizer.step()
            self._apply_constraints()
            self.global_step += 1
            size = index.shape[1]
            loss_sum.add_(batch_losses.detach(), alpha=size)
            if penalties is not None:
                penalty_sum.add_(penalties.detach(), alpha=size)
            scores.add(outputs, step * batch_size, batch_y)
        return self._logs(loss_sum, scores.values(count), count, penalty_sum)

    def _seed_scores(
        self,
        params: dict[str, torch.Tensor],
        buffers: dict[str, torch.Tensor],
        x: torch.Tensor,
        y: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One seed's batch-mean loss and its detached output, for the metrics (vmapped)."""
        output = functional_call(self._template, (params, buffers), (x, self._fused),
                                 tie_weights=self._tied)
        return self._loss_fn(output, y), output.detach()

    def _seed_output(
        self,
        params: dict[str, torch.Tensor],
        buffers: dict[str, torch.Tensor],
        x: torch.Tensor,
        logits: bool,
    ) -> torch.Tensor:
        return functional_call(self._template, (params, buffers), (x, logits),
                               tie_weights=self._tied)

    def _penalties(self) -> torch.Tensor | None:
        """Each seed's weight penalty, `[S]`, carrying gradients; `None` without regularizers."""
        if not self._regularized:
            return None
        if not self._penalized:
            return torch.zeros(self.num_seeds, device=self.device)
        weights = {name: self.params[name] for name, _ in self._penalized}

        def penalty(seed_weights: dict[str, torch.Tensor]) -> torch.Tensor:
            terms = [rule(seed_weights[name]) for name, rule in self._penalized]
            return sum(terms[1:], terms[0])

        return torch.vmap(penalty)(weights)

    @torch.no_grad()
    def _clip_per_seed(self) -> None:
        """Apply `clipnorm` / `global_clipnorm` to each seed's gradients (Keras 3 formulas)."""
        if self._clipnorm is None and self._global_clipnorm is None:
            return
        grads = [p.grad for p in self._trainable if p.grad is not None]
        # One norm per seed and tensor: everything but the leading seed dimension.
        norms = [torch.linalg.vector_norm(g.flatten(1), dim=1) for g in grads]
        if self._clipnorm is not None:
            for grad, norm in zip(grads, norms, strict=True):
                grad.mul_(self._clipnorm).div_(_per_seed(norm.clamp_min(self._clipnorm), grad))
            return
        total = torch.linalg.vector_norm(torch.stack(norms), dim=0)
        # `total - total` is NaN for a non-finite norm, poisoning that seed's step as in Keras.
        scale = self._global_clipnorm / total.clamp_min(self._global_clipnorm) + (total - total)
        for grad in grads:
            grad.mul_(_per_seed(scale, grad))

    @torch.no_grad()
    def _apply_constraints(self) -> None:
        for name, projection in self._constrained:
            torch.vmap(projection)(self.params[name])

    def _logs(
        self,
        loss_sum: torch.Tensor,
        metric_values: list[torch.Tensor],
        seen: int,
        penalty_sum: torch.Tensor | None = None,
    ) -> list[dict[str, float]]:
        mean_losses = (loss_sum / seen).tolist()
        penalties = None if penalty_sum is None else (penalty_sum / seen).tolist()
        scores = [values.tolist() for values in metric_values]
        logs = []
        for index in range(self.num_seeds):
            seed_logs = {"loss": mean_losses[index]}
            if self._regularized and penalties is not None:
                seed_logs["regularization_loss"] = penalties[index]
            for name, values in zip(self.metric_names, scores, strict=True):
                seed_logs[name] = values[index]
            logs.append(seed_logs)
        return logs

    @torch.no_grad()
    def evaluate(
        self, x: ArrayLike, y: ArrayLike, batch_size: int = 32
    ) -> list[dict[str, float]]:
        """Each seed's loss (with weight penalties) and metrics in inference mode, as `Trainer`'s.

        Args:
            x: Inputs, converted once as `fit` converts them.
            y: Targets, converted as `fit` converts them.
            batch_size: Samples per forward pass; at least 1024 are used since
                results do not depend on it. Defaults to `32`.

        Raises:
            UserInputError: On data `fit` refuses, or `x` and `y` of different lengths.
        """
        x, y = inputs.data_pair(x, y, self.loss, self._float_dtype(), self.device)
        return self._evaluate(x, y, batch_size)

    @torch.no_grad()
    def _evaluate(
        self, x: torch.Tensor, y: torch.Tensor, batch_size: int
    ) -> list[dict[str, float]]:
        self._template.eval()
        scores_of = torch.vmap(self._seed_scores, in_dims=(0, 0, None, None),
                               randomness="different")
        loss_sum = torch.zeros(self.num_seeds, dtype=torch.float64, device=self.device)
        # Every seed scores the same targets: a view repeats them without a copy.
        targets = y.expand(self.num_seeds, *y.shape)
        scores = EpochMetrics(self.metrics, self._metric_activation, targets, stacked=True)
        penalties = self._penalties()
        chunk = max(batch_size, 1024)
        for begin in range(0, x.shape[0], chunk):
            batch_x, batch_y = x[begin : begin + chunk], y[begin : begin + chunk]
            batch_loss, outputs = scores_of(self.params, self.buffers, batch_x, batch_y)
            if penalties is not None:
                batch_loss = batch_loss + penalties
            loss_sum.add_(batch_loss, alpha=batch_x.shape[0])
            scores.add(outputs, begin, targets[:, begin : begin + chunk])
        self._template.train()
        return self._logs(loss_sum, scores.values(x.shape[0]), x.shape[0])

    @torch.no_grad()
    def predict(self, x: ArrayLike, batch_size: int = 1024) -> torch.Tensor | np.ndarray:
        """Every seed's outputs (probabilities for a softmax model) in inference mode.

        Args:
            x: Inputs, converted once to the models' float dtype as `fit` converts
                them; each batch moves to the models' device in turn.
            batch_size: Samples per forward pass. Defaults to `1024`.

        Returns:
            `[S, N, *output_shape]`: for a tensor, a CPU tensor; for anything else
            a NumPy array, as `Trainer.predict` returns.

        Raises:
            UserInputError: On inputs `fit` refuses.
        """
        data = inputs.prediction_inputs(x, self._float_dtype())
        self._template.eval()
        forward = torch.vmap(self._seed_output, in_dims=(0, 0, None, None), randomness="different")
        outputs = [
            forward(self.params, self.buffers, data[begin : begin + batch_size].to(self.device),
                    False).cpu()
            for begin in range(0, data.shape[0], batch_size)
        ]
        self._template.train()
        result = torch.cat(outputs, dim=1)
        return result if isinstance(x, torch.Tensor) else result.numpy()

    @torch.no_grad()
    def unstack(self) -> list[Sequential]:
        """Copy each seed's trained weights and statistics into its model and return the models.

        The models are those given at construction (changed in place), ordinary
        `Sequential`s that `tricklab.transfer.save_model` saves as a separate run's.
        """
        for index, head in enumerate(_Heads(model) for model in self.models):
            for name, tensor in (*head.named_parameters(), *head.named_buffers()):
                stacked = self.params[name] if name in self.params else self.buffers[name]
                tensor.copy_(stacked[index])
        return self.models

    def unstacked_optimizers(self) -> list[torch.optim.Optimizer]:
        """One optimizer per seed over its model's trainable parameters, holding that seed's state.

        What the seed's separate run would hold at this point (learning rate,
        step counts, moments), e.g. for `save_model(model, path, optimizer)`.
        """
        config = self.optimizer.get_config()
        state = self.optimizer.state_dict()
        optimizers = []
        for index, model in enumerate(self.models):
            optimizer = type(self.optimizer).from_config(
                config, [p for p in model.parameters() if p.requires_grad]
            )
            seed_state = {
                key: {
                    name: (value[index].clone()
                           if isinstance(value, torch.Tensor)
                           and value.shape == self._trainable[key].shape else value)
                    for name, value in entries.items()
                }
                for key, entries in state["state"].items()
            }
            optimizer.load_state_dict(
                {"state": seed_state, "param_groups": copy.deepcopy(state["param_groups"])}
            )
            optimizers.append(optimizer)
        return optimizers


def _weight_rules(
    head: _Heads,
) -> tuple[list[tuple[str, Any]], list[tuple[str, Any]]]:
    """Every regularized and constrained parameter, by its name in the stacked state."""
    regularized, constrained = [], []
    for module_name, module in head.named_modules():
        if isinstance(module, Layer):
            prefix = f"{module_name}." if module_name else ""
            regularized += [(prefix + name, rule)
                            for name, rule in module.weight_regularizers().items()]
            constrained += [(prefix + name, rule)
                            for name, rule in module.weight_constraints().items()]
    return regularized, constrained


def _per_seed(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """View `[S]` values to broadcast against a stacked tensor `[S, ...]`."""
    return values.view(-1, *([1] * (like.ndim - 1)))


def _best_epoch(history: dict[str, list[float]]) -> int | None:
    """The 1-based epoch of the lowest finite `val_loss` (or `loss`), as `Trainer` reports it."""
    values = history.get("val_loss" if "val_loss" in history else "loss", [])
    finite = [(value, index) for index, value in enumerate(values) if math.isfinite(value)]
    return None if not finite else min(finite)[1] + 1


def vmap_error(model: Sequential) -> str | None:
    """The first line of the error a two-seed batched training step of `model` raises, or `None`.

    `model` itself is left as it was, and so is the global random generator.

    Args:
        model: A model that could be one seed's in a `BatchedSeedsTrainer`.
    """
    try:
        BatchedSeedsTrainer([model, copy.deepcopy(model)], "sgd", [0, 0], metrics=())
    except RuntimeError as error:
        return str(error).splitlines()[0]
    return None
