"""Before anything is written or trained: does the model's output fit its loss and its targets?

A model that does not fit its data (5 outputs for 10 classes, one sigmoid unit
under `sparse_categorical_crossentropy`, a `dense` layer straight on `[28, 28]`
images, an autoencoder whose output is not its input's shape) passes every
check of the recipe's own fields, since each is valid alone, and would crash in
the first training step, or worse train on nonsense (`binary_crossentropy` on
labels 0..9). `check_fits` compares the built model's per-sample output with
what the loss needs for this data and says which field to change, in one line.

Then, as the net under those rules, it runs the model, the loss and the
metrics once on a few real samples (the largest class id among them), exactly
as the trainer will, and turns any failure into one line. That run is in
inference mode without gradients, and every layer's mode and the random
generators are put back afterwards, so training is bit-identical with or
without the check.

What each built-in loss accepts (`tricklab.train.losses`):

- `sparse_categorical_crossentropy`: integer labels `[N]` and a vector of at
  least one score per class, `[classes]` (more outputs than classes train,
  the extra ones never being the label).
- `categorical_crossentropy`: one-hot or probability rows `[N, classes]` and
  exactly one output per class; or integer labels, one-hot encoded to the
  output's width, which then needs at least one output per class, as above.
- `binary_crossentropy`: the targets are reshaped to the output, so as many
  values per sample as the targets hold: 1 output for 0/1 labels, or one per
  value of one-hot, multi-label or image targets, all between 0 and 1.
- `mse`, `mae`, `huber`: the targets are reshaped to the output, so as many
  values per sample as the targets hold (class ids count as one number each:
  a class label regressed as a number needs one output).
- An autoencoder (`train.target: inputs`) must output as many values per
  sample as its inputs hold: `[28, 28]`, or `[784]` (the loss reshapes its
  targets, and the reconstructions are drawn from the values alike).

What each built-in metric accepts (`tricklab.train.metrics`):

- `accuracy`, `precision`, `recall`, `top_k_accuracy`, `auc` compare classes:
  they need class labels, 0/1 values or one-hot (probability) rows, never an
  autoencoder's inputs or a regression's values. With one output they
  threshold it into 0/1 predictions, so the data must have 2 classes (0/1);
  `auc` needs that one output; `top_k_accuracy` needs one score per class and
  `k` below the number of classes; `class_id` must be one of the output's
  classes. With several outputs they read one class per sample (the argmax),
  which a multi-label model (`binary_crossentropy` on several outputs) lacks.
- `mae`, `mse`, `rmse` compare the output value by value with the targets, as
  the regression losses do: as many values per sample. Keras would broadcast
  one class label against ten softmax scores and report a number that means
  nothing; here that is refused, while one output regressing class ids as
  numbers is accepted.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TypeVar

import torch

from tricklab.data import DatasetSplits, Split
from tricklab.errors import UserInputError, is_environment_failure
from tricklab.nn import Sequential
from tricklab.nn import layers as layer_registry
from tricklab.recipe import Recipe
from tricklab.train.losses import (
    BinaryCrossentropy,
    CategoricalCrossentropy,
    Huber,
    MeanAbsoluteError,
    MeanSquaredError,
    SparseCategoricalCrossentropy,
    losses,
)
from tricklab.train.metrics import (
    AUC,
    Accuracy,
    ErrorMetric,
    Metric,
    Precision,
    Recall,
    TopKAccuracy,
)
from tricklab.train.metrics import metrics as metric_registry

T = TypeVar("T")

RECURRENT = frozenset({"simple_rnn", "lstm", "gru"})
"""Layers reading a sequence `[steps, features]`: a dense layer after one is per step on purpose."""

REGRESSION_LOSSES = (MeanSquaredError, MeanAbsoluteError, Huber)
"""Losses that compare the output value by value with targets reshaped to it."""

CLASS_METRICS = {
    Accuracy: "compares predicted classes with class labels",
    TopKAccuracy: "compares the highest-scored classes with class labels",
    Precision: "counts predicted classes against class labels",
    Recall: "counts predicted classes against class labels",
    AUC: "ranks one output's scores against 0/1 labels",
}
"""Metrics that score classes, and what each does, as a message says it."""


@dataclass(frozen=True)
class Targets:
    """What the loss is compared against, over every split.

    Args:
        shape: Per-sample target shape (`()` for labels).
        labels: Whether the targets are integer class labels, one per sample.
        classes: Number of classes (labels only; the dataset's, or the largest id + 1).
        low: Smallest target value.
        high: Largest target value.
        what: How a message names the targets.
        binary: Whether every target is 0 or 1 (computed for targets that are not labels).
    """

    shape: tuple[int, ...]
    labels: bool
    classes: int
    low: float
    high: float
    what: str
    binary: bool = False

    @property
    def class_like(self) -> bool:
        """Whether classes can be read from the targets: labels, 0/1 values or probability rows."""
        rows = len(self.shape) == 1 and self.shape[0] > 1 and self.low >= 0 and self.high <= 1
        return self.labels or (len(self.shape) <= 1 and self.binary) or rows

    @property
    def class_count(self) -> int:
        """The number of classes: the labels', or the width of one-hot rows (2 for 0/1 values)."""
        if self.labels:
            return self.classes
        return self.shape[0] if self.shape and self.shape[0] > 1 else 2


def check_fits(recipe: Recipe, model: torch.nn.Module, splits: DatasetSplits) -> None:
    """Refuse a model whose per-sample output does not fit the loss and the targets.

    Call it after the model is built and before anything is written: it reads
    the data and runs the model once, changing nothing (see the module docstring).

    Args:
        recipe: The resolved recipe the model was built from.
        model: The built model (any `nn.Module`; a tricklab `Sequential` gets
            messages that name its layers).
        splits: The recipe's data (`load_data`); for an autoencoder the inputs are the
            targets whether or not `as_reconstruction` was applied.

    Raises:
        UserInputError: One line naming the field to change, e.g.
            `model.layers.2.dense.units: the model outputs 5 values per sample, but the
            data has 10 classes (sparse_categorical_crossentropy needs 10 outputs, one per
            class)`, or `model: the model does not fit the data and loss: <first line of
            the error>` when running them fails another way.
    """
    loss = losses.get(recipe.train.loss, "train.loss")
    name = losses.split(recipe.train.loss)[0]
    autoencoder = recipe.train.target == "inputs"
    targets = _targets(splits, autoencoder)
    x, y = _sample(splits, autoencoder)
    # As the trainer does: a final activation the loss can fuse is left to the loss.
    activation = getattr(model, "final_activation", None)
    fused = activation is not None and activation == loss.fusable_activation
    forward = model.forward_logits if fused else model
    device = _device(model)
    x, y = x.to(device), y.to(device)
    with _inference(model, device):
        output = _attempt(lambda: forward(x))
    shape = tuple(output.shape[1:])
    if isinstance(loss, SparseCategoricalCrossentropy):
        _check_classes(recipe, model, name, shape, targets)
    elif isinstance(loss, CategoricalCrossentropy):
        _check_distributions(recipe, model, name, shape, targets, autoencoder)
    elif isinstance(loss, BinaryCrossentropy):
        _check_binary(recipe, model, name, shape, targets, autoencoder)
    elif isinstance(loss, REGRESSION_LOSSES):
        _check_values(recipe, model, name, shape, targets, autoencoder)
    scorers = {
        f"train.metrics.{index}.{metric_registry.split(spec)[0]}":
            metric_registry.get(spec, "train.metrics")
        for index, spec in enumerate(recipe.train.metrics)
    }
    # Binary cross-entropy on several outputs scores each one on its own: multi-label.
    multi_label = isinstance(loss, BinaryCrossentropy) and math.prod(shape) > 1
    for field, metric in scorers.items():
        _check_metric(field, metric, shape, targets, autoencoder, multi_label)
    loss_fn = loss.on_logits if fused else loss
    # The metrics see what the trainer gives them: logits, with the activation they lack.
    metric_activation = loss.fusable_activation if fused else None
    with _inference(model, device):
        _attempt(lambda: loss_fn(output, y))
        for field, metric in scorers.items():
            _attempt(lambda metric=metric: metric.compute(output, y, metric_activation), field,
                     "the metric does not fit the model's output and targets")


def _attempt(
    step: Callable[[], T],
    field: str = "model",
    what: str = "the model does not fit the data and loss",
) -> T:
    """Run `step()`; a failure (not the machine's) becomes one line: `field: what: <error>`."""
    try:
        return step()
    except UserInputError:
        raise
    except Exception as error:  # any failure of the model or the loss on real data is a misfit
        if is_environment_failure(error):
            raise
        lines = str(error).strip().splitlines()
        first = lines[0] if lines else type(error).__name__
        raise UserInputError(f"{field}: {what}: {first}") from None


# --- the rules of the built-in losses ------------------------------------------------------


def _check_classes(
    recipe: Recipe, model: torch.nn.Module, name: str, shape: tuple[int, ...], targets: Targets
) -> None:
    """`sparse_categorical_crossentropy`: integer labels and at least one score per class."""
    if not targets.labels:
        use = "mse or binary_crossentropy" if recipe.train.target == "inputs" else "mse"
        raise UserInputError(
            f"train.loss: {name} needs integer class labels, but the targets are "
            f"{targets.what}; use {use}"
        )
    needed = (targets.classes,)
    if len(shape) != 1:
        raise _shape_error(recipe, model, name, shape, needed)
    if shape[0] < targets.classes:
        raise UserInputError(
            f"{_width_path(recipe, model)}: the model outputs {_values(shape[0])} per sample, "
            f"but the data has {targets.classes} classes ({name} needs {targets.classes} "
            "outputs, one per class)"
        )


def _check_distributions(
    recipe: Recipe, model: torch.nn.Module, name: str, shape: tuple[int, ...], targets: Targets,
    autoencoder: bool,
) -> None:
    """`categorical_crossentropy`: labels as for the sparse loss, or one output per column."""
    if targets.labels:
        _check_classes(recipe, model, name, shape, targets)
        return
    if autoencoder or not (len(targets.shape) == 1 and targets.low >= 0 and targets.high <= 1):
        use = "mse or binary_crossentropy" if autoencoder else "mse"
        raise UserInputError(
            f"train.loss: {name} needs class labels or one-hot (probability) rows, but the "
            f"targets are {targets.what}; use {use}"
        )
    classes = targets.shape[0]
    if len(shape) != 1:
        raise _shape_error(recipe, model, name, shape, (classes,))
    if shape[0] != classes:
        raise UserInputError(
            f"{_width_path(recipe, model)}: the model outputs {_values(shape[0])} per sample, "
            f"but the targets are one-hot rows of {classes} classes ({name} needs {classes} "
            "outputs, one per class)"
        )


def _check_binary(
    recipe: Recipe, model: torch.nn.Module, name: str, shape: tuple[int, ...], targets: Targets,
    autoencoder: bool,
) -> None:
    """`binary_crossentropy`: targets between 0 and 1, as many values as the output."""
    if targets.labels and (targets.classes > 2 or targets.low < 0):
        raise UserInputError(
            f"train.loss: {name} needs 0/1 labels (2 classes, 1 output) or one-hot or "
            f"multi-label targets (one output per class), but the data has {targets.classes} "
            f"classes labelled {targets.low:g} to {targets.high:g}; use "
            f"sparse_categorical_crossentropy with {targets.classes} outputs"
        )
    if not targets.labels and (targets.low < 0 or targets.high > 1):
        scale = ", or data.scale: unit" if autoencoder else ""
        raise UserInputError(
            f"train.loss: {name} needs targets between 0 and 1, but {targets.what} range from "
            f"{targets.low:g} to {targets.high:g}; use mse{scale}"
        )
    if targets.labels:
        _check_one_per_label(recipe, model, name, shape, targets)
    else:
        _check_same_values(recipe, model, name, shape, targets, autoencoder)


def _check_values(
    recipe: Recipe, model: torch.nn.Module, name: str, shape: tuple[int, ...], targets: Targets,
    autoencoder: bool,
) -> None:
    """`mse`: as many output values per sample as the targets hold (reshaped to the output)."""
    if targets.labels:
        _check_one_per_label(recipe, model, name, shape, targets)
    else:
        _check_same_values(recipe, model, name, shape, targets, autoencoder)


def _check_one_per_label(
    recipe: Recipe, model: torch.nn.Module, name: str, shape: tuple[int, ...], targets: Targets
) -> None:
    """A loss that reshapes one class label per sample to the output needs one output value."""
    if math.prod(shape) == 1:
        return
    if len(shape) == 1:
        # A vector of scores, one per class: the loss, not the model, is what to change.
        raise UserInputError(
            f"train.loss: {name} compares the model's output, shape {_listed(shape)} per "
            f"sample, with the targets, shape [] (one class label per sample), and cannot "
            f"reshape one into the other; for {targets.classes} classes use "
            "sparse_categorical_crossentropy, or end the model with 1 unit"
        )
    raise _shape_error(recipe, model, name, shape, (1,))


def _check_same_values(
    recipe: Recipe, model: torch.nn.Module, name: str, shape: tuple[int, ...], targets: Targets,
    autoencoder: bool,
) -> None:
    """Value targets (a regression's or an autoencoder's): as many values per sample.

    The loss reshapes the targets to the output, so a dense autoencoder may end
    in 784 values for `[28, 28]` images (its reconstructions are drawn from the
    values alike); a different count cannot be compared.
    """
    values = math.prod(targets.shape)
    if math.prod(shape) == values:
        return
    path = _width_path(recipe, model) if len(shape) == 1 else "model.layers"
    if autoencoder:
        raise UserInputError(
            f"{path}: the model outputs shape {_listed(shape)} per sample, but an autoencoder "
            f"(train.target: inputs) reconstructs its inputs, shape {_listed(targets.shape)}: "
            f"it needs {_values(values)} per sample"
        )
    if len(shape) == 1 and len(targets.shape) <= 1:
        raise UserInputError(
            f"{path}: the model outputs {_values(shape[0])} per sample, but {name} compares "
            f"them one by one with targets of shape {_listed(targets.shape)} "
            f"({_values(values)} each)"
        )
    raise _shape_error(recipe, model, name, shape, targets.shape or (1,))


def _shape_error(
    recipe: Recipe, model: torch.nn.Module, name: str, shape: tuple[int, ...],
    needed: tuple[int, ...],
) -> UserInputError:
    """An output of the wrong shape, with a flatten to add where a dense layer saw many axes."""
    return UserInputError(
        f"model.layers: the model outputs shape {_listed(shape)} per sample, but {name} needs "
        f"{_listed(needed)}{_flatten_hint(recipe, model, shape, needed)}"
    )


# --- the rules of the built-in metrics ------------------------------------------------------


def _check_metric(
    field: str, metric: Metric, shape: tuple[int, ...], targets: Targets, autoencoder: bool,
    multi_label: bool,
) -> None:
    """A metric that cannot score this model's output against these targets, in one line."""
    name = field.rsplit(".", 1)[-1]
    width = math.prod(shape)
    if isinstance(metric, ErrorMetric):
        values = 1 if targets.labels else math.prod(targets.shape)
        if width == values:
            return
        compared = (
            "one class label per sample" if targets.labels
            else f"targets of shape {_listed(targets.shape)} ({_values(values)} each)"
        )
        use = "; use accuracy, or end the model with 1 unit" if targets.labels else ""
        raise UserInputError(
            f"{field}: {name} compares the model's output, shape {_listed(shape)} per sample, "
            f"value by value with {compared}{use}"
        )
    does = next((what for kind, what in CLASS_METRICS.items() if isinstance(metric, kind)), None)
    if does is None:
        return
    if autoencoder:
        raise UserInputError(
            f"{field}: {name} {does}, but an autoencoder's targets are its inputs "
            "(train.target: inputs); remove it"
        )
    if not targets.class_like:
        raise UserInputError(
            f"{field}: {name} {does}, but the targets are {targets.what}; use mae, mse or rmse"
        )
    if multi_label:
        raise UserInputError(
            f"{field}: {name} reads one class per sample from several outputs (their argmax), "
            f"but binary_crossentropy scores each of the {_values(math.prod(shape))} on its own "
            "(multi-label); remove it, or use categorical_crossentropy for one class per sample"
        )
    classes = targets.class_count
    if width == 1 and (classes > 2 or targets.low < 0):
        raise UserInputError(
            f"{field}: {name} of one output thresholds it into 0/1 predictions, but the data "
            f"has {classes} classes labelled {targets.low:g} to {targets.high:g}; end the "
            f"model with {classes} softmax units"
        )
    if isinstance(metric, AUC) and width != 1:
        raise UserInputError(
            f"{field}: auc is the ROC area of one output (a sigmoid unit) against 0/1 labels, "
            f"but the model outputs {_values(width)} per sample; accepted: 1 output with 2 "
            "classes (binary_crossentropy), or use precision, recall or top_k_accuracy"
        )
    if isinstance(metric, TopKAccuracy):
        if width == 1:
            raise UserInputError(
                f"{field}: top_k_accuracy needs one score per class, but the model outputs "
                "1 value per sample; use accuracy, precision, recall or auc"
            )
        if metric.k >= classes:
            raise UserInputError(
                f"{field}.k: {metric.k} with {classes} classes counts every sample as a hit; "
                f"accepted: 1 to {classes - 1}"
            )
    if isinstance(metric, Precision | Recall) and metric.class_id is not None:
        count = 1 if width == 1 else shape[-1]
        if metric.class_id >= count:
            accepted = "0 (the positive class of one output)" if count == 1 else (
                f"0 to {count - 1}, one of the model's {count} classes")
            raise UserInputError(f"{field}.class_id: {metric.class_id}; accepted: {accepted}")


# --- where in the recipe ------------------------------------------------------------------


def _layer_names(model: torch.nn.Module) -> list[str | None]:
    """The registry name of each layer of a tricklab model (`None` for a foreign module)."""
    names = {info.factory: info.name for info in layer_registry}
    return [names.get(type(module)) for module in model]


def _recipe_path(recipe: Recipe, model: Sequential, position: int) -> str:
    """The dotted recipe path of the model's layer at `position` (reused ones: model.reuse)."""
    reused = len(model) - len(recipe.model.layers)
    if position < reused:
        return "model.reuse.layers"
    ((name, _config),) = recipe.model.layers[position - reused].items()
    return f"model.layers.{position - reused}.{name}"


def _width_path(recipe: Recipe, model: torch.nn.Module) -> str:
    """The field that sets the output's width: the `units` of the last layer that changes it.

    Layers that keep their input's shape (activations, dropout, normalization) are
    passed over, so `dense: {units: 5}` followed by `softmax` is still named.
    """
    if not isinstance(model, Sequential) or not len(model):
        return "model.layers"
    for position in reversed(range(len(model))):
        if model.input_shape_at(position) == model.input_shape_at(position + 1):
            continue
        path = _recipe_path(recipe, model, position)
        if path == "model.reuse.layers":
            return path
        index = position - (len(model) - len(recipe.model.layers))
        ((_name, config),) = recipe.model.layers[index].items()
        return f"{path}.units" if "units" in config else path
    return "model.layers"


def _flatten_hint(
    recipe: Recipe, model: torch.nn.Module, shape: tuple[int, ...], needed: tuple[int, ...]
) -> str:
    """`; add a flatten layer before ...` when a dense layer met a sample of many axes.

    A dense layer applies on the last axis only, so on `[28, 28]` images it gives
    `[28, units]` per sample. After a recurrent layer that is a per-step output
    by design, so no flatten is suggested there.
    """
    if not isinstance(model, Sequential) or len(shape) <= len(needed):
        return ""
    names = _layer_names(model)
    dense = [position for position, name in enumerate(names) if name == "dense"]
    for position in dense:
        if any(name in RECURRENT for name in names[:position]):
            return ""
        if len(model.input_shape_at(position)) > 1:
            where = (
                "the first dense layer" if position == dense[0]
                else _recipe_path(recipe, model, position)
            )
            return f"; add a flatten layer before {where}"
    return ""


# --- the data and the trial run -------------------------------------------------------------


def _targets(splits: DatasetSplits, autoencoder: bool) -> Targets:
    parts = [split for split in (splits.train, splits.val, splits.test) if split is not None]
    values = [split.x if autoencoder else split.y for split in parts]
    first = values[0]
    labels = not autoencoder and first.ndim == 1 and not (
        first.is_floating_point() or first.is_complex() or first.dtype == torch.bool
    )
    low = min(float(value.min()) for value in values if value.numel())
    high = max(float(value.max()) for value in values if value.numel())
    if autoencoder:
        what = "the inputs (train.target: inputs)"
    elif labels:
        what = f"the class labels of {splits.name}"
    else:
        dtype = str(first.dtype).removeprefix("torch.")
        what = f"the {dtype} values of {splits.name} (shape {_listed(first.shape[1:])} each)"
    classes = max(splits.num_classes, int(high) + 1) if labels else 0
    # Only a regression's or a one-hot's values are read again: an autoencoder's never are.
    binary = not (labels or autoencoder) and all(
        bool(((value == 0) | (value == 1)).all()) for value in values
    )
    return Targets(tuple(first.shape[1:]), labels, classes, low, high, what, binary)


def _sample(splits: DatasetSplits, autoencoder: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Two training samples and the one with the largest class id of any split (2 to 3)."""
    parts: list[Split] = [s for s in (splits.train, splits.val, splits.test) if s is not None]
    train = splits.train
    xs, ys = [train.x[:2]], [train.y[:2]]
    if not autoencoder and train.y.ndim == 1 and not train.y.is_floating_point():
        part = max((s for s in parts if len(s)), key=lambda s: int(s.y.max()))
        index = int(part.y.argmax())
        xs.append(part.x[index : index + 1])
        ys.append(part.y[index : index + 1])
    x = torch.cat(xs)
    return x, (x if autoencoder else torch.cat(ys))


def _device(model: torch.nn.Module) -> torch.device:
    reference = next(model.parameters(), None)
    return reference.device if reference is not None else torch.device("cpu")


@contextlib.contextmanager
def _inference(model: torch.nn.Module, device: torch.device) -> Iterator[None]:
    """Inference mode without gradients; each module's mode and the generators put back after.

    Each module's own flag is restored (not `model.train(...)` for all), so a layer
    kept in inference mode on purpose stays so; the random generators are forked,
    so a layer that samples at inference (MC dropout) draws nothing from training's.
    """
    modes = [(module, module.training) for module in model.modules()]
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices), torch.no_grad():
        model.eval()
        try:
            yield
        finally:
            for module, training in modes:
                module.training = training


def _listed(shape: Sequence[int]) -> str:
    return str([int(size) for size in shape])


def _values(count: int) -> str:
    return f"{count} value" if count == 1 else f"{count} values"

