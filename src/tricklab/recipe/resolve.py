"""Resolve a structurally valid recipe: every named technique checked and every default written.

The result is the "fully resolved" recipe that the run directory stores: a
reader sees exactly which initializer, momentum or epsilon a run used, even
where the author relied on a default.

The same walk runs on the registry snapshot (`tricklab.recipe.snapshot`) to
check a recipe without importing PyTorch: every name and every technique's
parameters are checked as the live registries check them, and the steps that
need the techniques themselves (a dataset's files, a layer's own resolution,
layer slices, the logged metrics) are left to the full resolution.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tricklab.config import split_trainable
from tricklab.errors import UserInputError, did_you_mean
from tricklab.recipe.schema import PhaseSection, Recipe
from tricklab.recipe.snapshot import Snapshot, Undecided
from tricklab.registry import Entries


def resolve_named(registry: Entries, spec: Any, path: str) -> dict[str, dict[str, Any]]:
    """`name` or `{name: config}` -> `{name: full_config}`."""
    name, config = registry.resolve(spec, path)
    return {name: config}


def resolve_optimizer(
    spec: Any, path: str = "train.optimizer", optimizers: Entries | None = None
) -> dict[str, Any]:
    """`name` or `{name: ..., **hyperparameters}` -> `{name: ..., **all_hyperparameters}`."""
    if optimizers is None:
        from tricklab.optim import optimizers
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


class _Walk:
    """One resolution: the registries it reads, and whether they are the live ones."""

    def __init__(self, snapshot: Snapshot | None) -> None:
        self.live = snapshot is None
        if snapshot is None:
            from tricklab.registries import REGISTRIES

            self.registries: Mapping[str, Entries] = REGISTRIES
        else:
            self.registries = snapshot.registries

    def named(self, family: str, spec: Any, path: str) -> dict[str, dict[str, Any]]:
        try:
            return resolve_named(self.registries[family], spec, path)
        except Undecided:
            return dict([self.registries[family].split(spec, path)])

    def optimizer(self, spec: Any, path: str) -> dict[str, Any]:
        try:
            return resolve_optimizer(spec, path, self.registries["optimizers"])
        except Undecided:
            return dict(spec) if isinstance(spec, dict) else {"name": spec}

    def data(self, spec: dict[str, Any], path: str = "data") -> dict[str, Any]:
        """`{dataset: name, augment: [...], **options}` -> the same with every option's default.

        `augment` is the trainer's (applied to training batches), the rest the loader's.
        An option the dataset decides from its files (`scale: auto`, see
        `tricklab.data.AUTO_OPTIONS`) is resolved to the choice made.
        """
        options = dict(spec)
        name = options.pop("dataset", "fashion_mnist")
        augment = options.pop("augment", [])
        augmentations = self.registries["augmentations"]
        if not isinstance(augment, list):
            raise UserInputError(
                f"{path}.augment: expected a list such as [random_flip, {{random_rotation: "
                f"{{factor: 0.05}}}}], got {augment!r}; known: {', '.join(augmentations.names())}"
            )
        try:
            resolved = {"dataset": name, **self.registries["datasets"].validate(
                name, options, path, f"{path}.dataset")}
        except Undecided:
            resolved = {"dataset": name, **options}
        if self.live:
            from tricklab.data import AUTO_OPTIONS

            if name in AUTO_OPTIONS:
                resolved.update(AUTO_OPTIONS[name](resolved))
        resolved["augment"] = [
            self.named("augmentations", entry, f"{path}.augment.{index}")
            for index, entry in enumerate(augment)
        ]
        return resolved

    def phase(self, phase: PhaseSection, index: int, optimizer: Any,
              reuses: bool) -> PhaseSection:
        """One phase with its optimizer (the recipe's by default) and schedule fully resolved."""
        path = f"train.phases.{index}"
        trainable = phase.trainable
        if trainable == "new" and not reuses:
            raise UserInputError(f"{path}.trainable: 'new' means the layers after model.reuse's, "
                                 "but the model reuses none; use all or a slice such as '-1:'")
        if trainable not in (None, "all", "new"):
            self.layer_slice(trainable, f"{path}.trainable")
        return phase.model_copy(update={
            "optimizer": self.optimizer(
                phase.optimizer if phase.optimizer is not None else optimizer,
                f"{path}.optimizer"),
            "schedule": (
                None if phase.schedule is None
                else self.named("schedules", phase.schedule, f"{path}.schedule")
            ),
        })

    def layer_slice(self, text: str, path: str) -> None:
        if self.live:
            from tricklab.transfer.reuse import parse_layer_slice

            parse_layer_slice(text, path)

    def input_shape(self, recipe: Recipe, data: dict[str, Any]) -> list[int] | None:
        if recipe.model.input_shape or not self.live:
            return recipe.model.input_shape
        from tricklab.data import INPUT_SHAPES

        return list(INPUT_SHAPES[data["dataset"]](data))

    def layers(self, layers: list[Any], path: str = "model.layers") -> list[Any]:
        if self.live:
            from tricklab.nn import resolve_layers

            return resolve_layers(layers, path)
        for index, item in enumerate(layers):
            item, _ = split_trainable(item, f"{path}.{index}")
            name, config = self.registries["layers"].split(item, f"{path}.{index}")
            self.references("layers", name, config, f"{path}.{index}")
        return layers

    def references(self, family: str, name: str, config: Any, path: str) -> None:
        """Check `name` with `config`, then every entry its parameters name, as the builder does.

        A technique with its own resolution step (`resolve_config`) is checked
        alone: what it nests is left to the full resolution.
        """
        registry = self.registries[family]
        try:
            full = registry.validate(name, config, f"{path}.{name}", path)
        except Undecided:
            return
        entry = registry.info(name)
        for parameter, referenced in entry.refs.items():
            value = full.get(parameter)
            if value is None or parameter not in config:
                continue  # a default names a registered entry
            where = f"{path}.{name}.{parameter}"
            inner, inner_config = self.registries[referenced].split(value, where)
            self.references(referenced, inner, inner_config, where)


def resolve(recipe: Recipe, snapshot: Snapshot | None = None) -> Recipe:
    """Check every named entry of `recipe` against its registry and fill in all defaults.

    Args:
        recipe: A recipe whose structure is valid (`tricklab.recipe.document.check_structure`).
        snapshot: Check against this registry snapshot, without importing PyTorch, instead
            of resolving; the returned recipe is then not fully resolved. Defaults to `None`.

    Raises:
        UserInputError: Naming the dotted path of the first problem found.
    """
    walk = _Walk(snapshot)
    data = walk.data(recipe.data)
    train = recipe.train
    resolved_callbacks = [
        walk.named("callbacks", spec, f"train.callbacks.{index}")
        for index, spec in enumerate(train.callbacks)
    ]
    schedule = None
    if train.schedule is not None:
        schedule = walk.named("schedules", train.schedule, "train.schedule")
    phases = None
    if train.phases is not None:
        phases = [
            walk.phase(phase, index, train.optimizer, recipe.model.reuse is not None)
            for index, phase in enumerate(train.phases)
        ]
    input_shape = walk.input_shape(recipe, data)
    layers = walk.layers(recipe.model.layers) if recipe.model.layers else []
    if recipe.model.reuse is not None:
        walk.layer_slice(recipe.model.reuse.layers, "model.reuse.layers")
    model = recipe.model.model_copy(update={"input_shape": input_shape, "layers": layers})
    train = train.model_copy(
        update={
            "optimizer": walk.optimizer(train.optimizer, "train.optimizer"),
            "loss": walk.named("losses", train.loss, "train.loss"),
            "metrics": [
                walk.named("metrics", spec, f"train.metrics.{index}")
                for index, spec in enumerate(train.metrics)
            ],
            "callbacks": resolved_callbacks,
            "schedule": schedule,
            "phases": phases,
        }
    )
    resolved = recipe.model_copy(update={"data": data, "model": model, "train": train})
    if walk.live:
        check_monitors(resolved)
    return resolved


def check_monitors(recipe: Recipe) -> None:
    """Check that every `monitor` (callbacks, schedules, `train.best_monitor`) is a logged key.

    Without this, a typo such as `val_acuracy` trains a whole epoch before the
    callback finds nothing to watch.

    Args:
        recipe: A resolved recipe.

    Raises:
        UserInputError: Naming the monitor's dotted path, e.g.
            `train.callbacks.0.early_stopping.monitor: 'val_acuracy' is not logged by this
            run; did you mean 'val_accuracy'? Logged: loss, accuracy, val_loss, val_accuracy`.
    """
    from tricklab.recipe.reported import has_validation, logged_keys, unlisted_metric

    train = recipe.train
    watchers = {f"train.callbacks.{i}": entry for i, entry in enumerate(train.callbacks)}
    watchers["train.schedule"] = train.schedule or {}
    for index, phase in enumerate(train.phases or []):
        watchers[f"train.phases.{index}.schedule"] = phase.schedule or {}
    monitors = [(f"{path}.{name}.monitor", str(config["monitor"]))
                for path, entry in watchers.items() for name, config in entry.items()
                if isinstance(config, dict) and "monitor" in config]
    # Without validation data the default `val_loss` watches `loss` (tricklab.run.best_model).
    if train.best_monitor != "val_loss" or has_validation(recipe):
        monitors.append(("train.best_monitor", train.best_monitor))
    logged = logged_keys(recipe)
    for where, monitor in monitors:
        if monitor in logged:
            continue
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
