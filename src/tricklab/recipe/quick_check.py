"""The first error of a recipe file, found without importing PyTorch.

The command line runs this before it imports anything heavy, so a typo is
reported in a fraction of a second instead of after PyTorch has loaded:

- reading the file (missing, not YAML, a bad `--set`), the preset and the
  sections' structure: the very code the full load runs;
- every technique's name and parameters, from the registry snapshot
  (`tricklab.recipe.snapshot`), with the live registries' messages.

What it cannot decide it leaves to the full load that follows, which finds
everything (and, on a machine without a snapshot yet, the command writes one).

`snapshot_resolved_recipe` goes one step further for `tricklab summary`: the
recipe with its layer list resolved from the snapshot, when the full load would
resolve it to the same.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tricklab.config import split_trainable
from tricklab.errors import UserInputError
from tricklab.recipe.document import check_structure, read_document
from tricklab.recipe.load import recipe_from_dict
from tricklab.recipe.resolve import check_monitors
from tricklab.recipe.schema import Recipe
from tricklab.recipe.snapshot import Snapshot, SnapshotEntry, Undecided
from tricklab.recipe.study import load_study
from tricklab.recipe.yaml_input import shown_path


def quick_check_recipe(path: str | Path, overrides: list[str] | tuple[str, ...] = (),
                       snapshot: Snapshot | None = None) -> None:
    """Raise the first error of a recipe file that can be found without PyTorch.

    Args:
        path: The recipe YAML file.
        overrides: `PATH=VALUE` strings, as `--set` gives them. Defaults to `()`.
        snapshot: The registry snapshot. Defaults to `None`: only the file, the
            overrides and the structure are checked (and a preset, which needs the
            activations' names, is left to the full load).

    Raises:
        UserInputError: The error the full load would raise for that problem.
    """
    document = read_document(path, overrides)
    if snapshot is not None:
        recipe_from_dict(document, shown_path(path), snapshot)
    elif document.get("preset") is None:
        check_structure(document, shown_path(path))


def quick_check_study(path: str | Path, seeds: int | None = None, quick: bool = False,
                      overrides: list[str] | tuple[str, ...] = (),
                      snapshot: Snapshot | None = None) -> None:
    """Raise the first error of a study file (and its variants' recipes) found without PyTorch.

    Args:
        path: The study YAML file.
        seeds: `--seeds`. Defaults to `None`.
        quick: `--quick`. Defaults to `False`.
        overrides: `--set` values for every variant. Defaults to `()`.
        snapshot: The registry snapshot. Defaults to `None`: nothing is checked, as a
            study's recipes cannot be without it.

    Raises:
        UserInputError: The error `load_study` would raise for that problem.
    """
    if snapshot is not None:
        load_study(path, seeds, quick, overrides, snapshot)


def snapshot_resolved_recipe(path: str | Path, overrides: list[str] | tuple[str, ...] = (),
                             snapshot: Snapshot | None = None) -> Recipe | None:
    """The recipe with its layers resolved from the registry snapshot, without PyTorch.

    Its `model.layers` are `[{name: config}, ...]` with every default filled in,
    as `tricklab.nn.resolve_layers` gives them; its other sections are checked,
    not resolved (see `tricklab.recipe.resolve.resolve`).

    Args:
        path: The recipe YAML file.
        overrides: `PATH=VALUE` strings, as `--set` gives them. Defaults to `()`.
        snapshot: The registry snapshot. Defaults to `None` (then `None` is returned).

    Returns:
        The recipe, or `None` wherever the full load might differ or refuse it:
        no snapshot, a snapshot entry that cannot decide its check, an error, an
        input shape left to the dataset, `model.reuse`, a phase training a slice
        of layers, or a data option left `auto` for the dataset's files to decide.
    """
    if snapshot is None or not all(_decides(entry) for family in snapshot
                                   for entry in snapshot[family]):
        return None
    try:
        recipe = recipe_from_dict(read_document(path, overrides), shown_path(path), snapshot)
        if not _resolved_as_loaded(recipe):
            return None
        check_monitors(recipe)
        layers = _resolve_layers(snapshot, recipe.model.layers, "model.layers")
    except (UserInputError, Undecided):
        return None
    return recipe.model_copy(update={"model": recipe.model.model_copy(update={"layers": layers})})


def _decides(entry: SnapshotEntry) -> bool:
    """Whether the snapshot checks `entry` as the live registry does (nothing weakened)."""
    return entry.fields is not None and not entry.weakened


def _resolved_as_loaded(recipe: Recipe) -> bool:
    """Whether nothing of the recipe is left to what only the full load reads.

    The dataset's files (its input shape, a data option `auto`), the layers of a
    reused model and a phase's layer slice are read by code built on PyTorch.
    """
    phases = recipe.train.phases or []
    return (recipe.model.input_shape is not None and recipe.model.reuse is None
            and all(phase.trainable in (None, "all", "new") for phase in phases)
            and "auto" not in recipe.data.values())


def _resolve_layers(snapshot: Snapshot, layers: Any, path: str) -> list[dict[str, Any]]:
    """`tricklab.nn.resolve_layers` on the snapshot: each entry `{name: full config}`.

    A layer that resolves itself holds a layer list of its own, `layers` (a
    residual block), resolved the same way; any other is undecided.

    Raises:
        UserInputError: On a mistake, as the full load words it.
        Undecided: Where the snapshot cannot resolve as the full load does.
    """
    if isinstance(layers, str | bytes | dict) or not isinstance(layers, Sequence) or not layers:
        raise Undecided(path)
    registry = snapshot["layers"]
    resolved = []
    for index, item in enumerate(layers):
        item, trainable = split_trainable(item, f"{path}.{index}")
        name, config = registry.resolve(item, f"{path}.{index}")
        where = f"{path}.{index}.{name}"
        config = _resolve_references(snapshot, registry.info(name), config, where)
        if registry.info(name).resolves_itself:
            if "layers" not in config:
                raise Undecided(where)
            config = {**config, "layers": _resolve_layers(snapshot, config["layers"],
                                                          f"{where}.layers")}
        resolved.append({name: config if trainable else {**config, "trainable": False}})
    return resolved


def _resolve_references(snapshot: Snapshot, entry: SnapshotEntry, config: dict[str, Any],
                        path: str) -> dict[str, Any]:
    """`tricklab.nn.base.resolve_nested` on the snapshot: each entry a parameter names,
    `name` when it takes no parameters, else `{name: full config}`."""
    resolved = dict(config)
    for parameter, family in entry.refs.items():
        value = resolved.get(parameter)
        if value is None:
            continue
        registry = snapshot[family]
        name, full = registry.resolve(value, f"{path}.{parameter}")
        full = _resolve_references(snapshot, registry.info(name), full,
                                   f"{path}.{parameter}.{name}")
        resolved[parameter] = {name: full} if full else name
    return resolved


__all__ = ["quick_check_recipe", "quick_check_study", "snapshot_resolved_recipe"]
