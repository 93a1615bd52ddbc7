"""Resolve a structurally valid recipe: every named technique checked and every default written.

The result is the "fully resolved" recipe that the run directory stores: a
reader sees exactly which initializer, momentum or epsilon a run used, even
where the author relied on a default.
"""

from __future__ import annotations

from typing import Any

from tricklab.data import AUTO_OPTIONS, INPUT_SHAPES, datasets
from tricklab.data.augment import augmentations
from tricklab.errors import UserInputError, did_you_mean
from tricklab.nn import resolve_layers
from tricklab.optim import optimizers
from tricklab.optim.schedules import schedules
from tricklab.recipe.reported import has_validation, logged_keys, unlisted_metric
from tricklab.recipe.schema import PhaseSection, Recipe
from tricklab.registry import Registry
from tricklab.train.callbacks import callbacks
from tricklab.train.losses import losses
from tricklab.train.metrics import metrics
from tricklab.transfer.reuse import parse_layer_slice


def resolve_named(registry: Registry, spec: Any, path: str) -> dict[str, dict[str, Any]]:
    """`name` or `{name: config}` -> `{name: full_config}`."""
    name, config = registry.resolve(spec, path)
    return {name: config}


def resolve_optimizer(spec: Any, path: str = "train.optimizer") -> dict[str, Any]:
    """`name` or `{name: ..., **hyperparameters}` -> `{name: ..., **all_hyperparameters}`."""
    if isinstance(spec, str):
        spec = {"name": spec}
    if not isinstance(spec, dict) or "name" not in spec:
        raise UserInputError(
            f"{path}: expected an optimizer name or a mapping with 'name' and its "
            f"hyperparameters, got {spec!r}; known: {', '.join(optimizers.names())}"
        )
    hyperparameters = {key: value for key, value in spec.items() if key != "name"}
    name = spec["name"]
    return {"name": name, **optimizers.validate(name, hyperparameters, path, f"{path}.name")}


def resolve_data(spec: dict[str, Any], path: str = "data") -> dict[str, Any]:
    """`{dataset: name, augment: [...], **options}` -> the same with every option's default.

    `augment` is the trainer's (applied to training batches), the rest the loader's.
    An option the dataset decides from its files (`scale: auto`, see
    `tricklab.data.AUTO_OPTIONS`) is resolved to the choice made.
    """
    options = dict(spec)
    name = options.pop("dataset", "fashion_mnist")
    augment = options.pop("augment", [])
    if not isinstance(augment, list):
        raise UserInputError(
            f"{path}.augment: expected a list such as [random_flip, {{random_rotation: "
            f"{{factor: 0.05}}}}], got {augment!r}; known: {', '.join(augmentations.names())}"
        )
    resolved = {"dataset": name, **datasets.validate(name, options, path, f"{path}.dataset")}
    if name in AUTO_OPTIONS:
        resolved.update(AUTO_OPTIONS[name](resolved))
    resolved["augment"] = [
        resolve_named(augmentations, entry, f"{path}.augment.{index}")
        for index, entry in enumerate(augment)
    ]
    return resolved


def _resolve_phase(phase: PhaseSection, index: int, optimizer: Any, reuses: bool) -> PhaseSection:
    """One phase with its optimizer (the recipe's by default) and schedule fully resolved."""
    path = f"train.phases.{index}"
    trainable = phase.trainable
    if trainable == "new" and not reuses:
        raise UserInputError(f"{path}.trainable: 'new' means the layers after model.reuse's, "
                             "but the model reuses none; use all or a slice such as '-1:'")
    if trainable not in (None, "all", "new"):
        parse_layer_slice(trainable, f"{path}.trainable")
    return phase.model_copy(update={
        "optimizer": resolve_optimizer(
            phase.optimizer if phase.optimizer is not None else optimizer, f"{path}.optimizer"
        ),
        "schedule": (
            None if phase.schedule is None
            else resolve_named(schedules, phase.schedule, f"{path}.schedule")
        ),
    })


def resolve(recipe: Recipe) -> Recipe:
    """Check every named entry of `recipe` against its registry and fill in all defaults.

    Raises:
        UserInputError: Naming the dotted path of the first problem found.
    """
    data = resolve_data(recipe.data)
    train = recipe.train
    resolved_callbacks = [
        resolve_named(callbacks, spec, f"train.callbacks.{index}")
        for index, spec in enumerate(train.callbacks)
    ]
    schedule = None
    if train.schedule is not None:
        schedule = resolve_named(schedules, train.schedule, "train.schedule")
    phases = None
    if train.phases is not None:
        phases = [
            _resolve_phase(phase, index, train.optimizer, recipe.model.reuse is not None)
            for index, phase in enumerate(train.phases)
        ]
    input_shape = recipe.model.input_shape or list(INPUT_SHAPES[data["dataset"]](data))
    layers = resolve_layers(recipe.model.layers, "model.layers") if recipe.model.layers else []
    if recipe.model.reuse is not None:
        parse_layer_slice(recipe.model.reuse.layers, "model.reuse.layers")
    model = recipe.model.model_copy(update={"input_shape": input_shape, "layers": layers})
    train = train.model_copy(
        update={
            "optimizer": resolve_optimizer(train.optimizer),
            "loss": resolve_named(losses, train.loss, "train.loss"),
            "metrics": [
                resolve_named(metrics, spec, f"train.metrics.{index}")
                for index, spec in enumerate(train.metrics)
            ],
            "callbacks": resolved_callbacks,
            "schedule": schedule,
            "phases": phases,
        }
    )
    resolved = recipe.model_copy(update={"data": data, "model": model, "train": train})
    check_monitors(resolved)
    return resolved


def check_monitors(recipe: Recipe) -> None:
    """Check that every callback's and schedule's `monitor` is a key the run logs per epoch.

    Without this, a typo such as `val_acuracy` trains a whole epoch before the
    callback finds nothing to watch.

    Args:
        recipe: A resolved recipe.

    Raises:
        UserInputError: Naming the monitor's dotted path, e.g.
            `train.callbacks.0.early_stopping.monitor: 'val_acuracy' is not logged by this
            run; did you mean 'val_accuracy'? Logged: loss, accuracy, val_loss, val_accuracy`.
    """
    train = recipe.train
    watchers = {f"train.callbacks.{i}": entry for i, entry in enumerate(train.callbacks)}
    watchers["train.schedule"] = train.schedule or {}
    for index, phase in enumerate(train.phases or []):
        watchers[f"train.phases.{index}.schedule"] = phase.schedule or {}
    logged = logged_keys(recipe)
    for path, entry in watchers.items():
        for name, config in entry.items():
            if not isinstance(config, dict) or "monitor" not in config:
                continue
            monitor = str(config["monitor"])
            if monitor in logged:
                continue
            where = f"{path}.{name}.monitor"
            # A validation key of a run without validation: say what is missing, not "typo".
            if monitor.startswith("val_") and monitor[4:] in logged and not has_validation(recipe):
                raise UserInputError(
                    f"{where}: '{monitor}' needs a validation set, but data.validation is 0"
                )
            unlisted = unlisted_metric(monitor, recipe, logged)
            suggestion = (
                f", as train.metrics does not list {unlisted}" if unlisted
                else did_you_mean(monitor, logged)
            )
            listing = f" Logged: {', '.join(logged)}" if suggestion.endswith("?") else (
                f"; logged: {', '.join(logged)}"
            )
            raise UserInputError(
                f"{where}: '{monitor}' is not logged by this run{suggestion}{listing}"
            )
