"""TensorBoard for recipe runs and studies: which runs log, their recipe, a study's HParams.

Every run writes event files into `<run>/tensorboard/` unless its recipe says
`train.tensorboard: false` or the command was given `--no-tensorboard`
(`tricklab.train.tensorboard` says what is logged). A study's runs add an
HParams session: the variant, the seed, the recipe fields the study's runs
differ in (`train.optimizer.name`, ...) and, with a learning-rate search, the
phase; so `tensorboard --logdir runs/<study>` lists every run of the study in
its HParams dashboard with its final metrics (`final/<name>`), to sort and
filter by variant and seed.

PyTorch and TensorBoard are imported only by what trains: a study's driver
works out its hyperparameters without them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    from tricklab.recipe.study import PlannedRun
    from tricklab.train.tensorboard import ProbeReader, TensorBoardLogger

FOLDER = "tensorboard"
"""The folder of a run directory holding its event files."""

_LEFT_OUT = frozenset({"name", "seed"})
"""Top-level recipe fields that are not hyperparameters (the seed has its own)."""

def logs_to_tensorboard(recipe: Mapping[str, Any], enabled: bool = True) -> bool:
    """Whether a run logs: the command allows it (`--no-tensorboard` does not) and its recipe does.

    Args:
        recipe: The resolved recipe, as plain data.
        enabled: The command's choice. Defaults to `True`.
    """
    return enabled and bool(recipe.get("train", {}).get("tensorboard", True))


def recipe_logger(
    run_dir: Path, recipe: Mapping[str, Any], enabled: bool = True,
    probe: ProbeReader | None = None,
) -> TensorBoardLogger | None:
    """The logger of a recipe's run, writing into `<run_dir>/tensorboard`; `None` when it is off.

    Args:
        run_dir: The run directory.
        recipe: The resolved recipe, as plain data (shown in TensorBoard as YAML).
        enabled: The command's choice (`--no-tensorboard` gives `False`). Defaults to `True`.
        probe: The doctor's probe: with it, histograms are logged. Defaults to `None`.
    """
    if not logs_to_tensorboard(recipe, enabled):
        return None
    from tricklab.train.tensorboard import TensorBoardLogger

    return TensorBoardLogger(Path(run_dir) / FOLDER, _yaml(recipe), probe)


def log_finished_recipe_run(
    run_dir: Path, recipe: Mapping[str, Any], result: Mapping[str, Any],
    hparams: Mapping[str, Any] | None = None,
) -> None:
    """Write the events of a run that trained without a logger (a batched seed), from its result.

    Args:
        run_dir: The run directory.
        recipe: Its resolved recipe, as plain data.
        result: The content of its `result.json`.
        hparams: Its hyperparameters (a study's, see `StudyHParams`). Defaults to `None`.
    """
    from tricklab.train.tensorboard import log_finished_run

    log_finished_run(Path(run_dir) / FOLDER, result, _yaml(recipe), hparams)


def _yaml(recipe: Mapping[str, Any]) -> str:
    return yaml.safe_dump(dict(recipe), sort_keys=False)


def _leaves(value: Any, path: str, out: dict[str, Any], lengths: Mapping[str, int | None]) -> None:
    """`value`'s fields by dotted path; a list is one field unless every recipe's has one length."""
    if isinstance(value, dict) and value:
        for key, item in value.items():
            _leaves(item, f"{path}.{key}" if path else str(key), out, lengths)
    elif isinstance(value, list) and lengths.get(path) is not None and any(
            isinstance(item, dict | list) for item in value):
        for index, item in enumerate(value):
            _leaves(item, f"{path}.{index}", out, lengths)
    else:
        out[path] = value


def _list_lengths(value: Any, path: str, lengths: dict[str, int | None]) -> None:
    """Record each list's length by path; `None` where two recipes' lengths differ."""
    if isinstance(value, dict):
        for key, item in value.items():
            _list_lengths(item, f"{path}.{key}" if path else str(key), lengths)
    elif isinstance(value, list):
        seen = lengths.get(path, len(value))
        lengths[path] = len(value) if seen == len(value) else None
        for index, item in enumerate(value):
            _list_lengths(item, f"{path}.{index}", lengths)


def differing_fields(recipes: Iterable[Mapping[str, Any]]) -> list[str]:
    """The dotted fields whose values are not the same in every recipe, in document order.

    Names and seeds are left out. Lists of settings (the model's layers) are
    compared entry by entry where every recipe's list has the same length, and
    as a whole where they differ (a variant that adds a layer). A field that
    only some recipes have counts as differing.

    Args:
        recipes: Resolved recipes, as plain data.
    """
    documents = [{k: v for k, v in recipe.items() if k not in _LEFT_OUT} for recipe in recipes]
    lengths: dict[str, int | None] = {}
    for document in documents:
        _list_lengths(document, "", lengths)
    flat: list[dict[str, Any]] = []
    for document in documents:
        leaves: dict[str, Any] = {}
        _leaves(document, "", leaves, lengths)
        flat.append(leaves)
    order = list(dict.fromkeys(path for leaves in flat for path in leaves))
    return [path for path in order if len({
        json.dumps(leaves[path], sort_keys=True, default=str) if path in leaves else None
        for leaves in flat}) > 1]


def field_value(recipe: Mapping[str, Any], path: str) -> Any:
    """A dotted field of a recipe (list entries by index); `None` when the recipe has none."""
    value: Any = recipe
    for key in path.split("."):
        if isinstance(value, dict) and key in value:
            value = value[key]
        elif isinstance(value, list) and key.isdigit() and int(key) < len(value):
            value = value[int(key)]
        else:
            return None
    return value


@dataclass(frozen=True)
class StudyHParams:
    """What a study's runs log as their HParams session: plain data, so it travels to workers.

    Args:
        fields: The recipe fields the study's runs differ in (`differing_fields`).
        phases: Whether the study searches learning rates: its runs then say their
            phase (`main` or `lr_search`). Defaults to `False`.
    """

    fields: tuple[str, ...]
    phases: bool = False

    @classmethod
    def of(cls, runs: Iterable[PlannedRun]) -> StudyHParams:
        """The hyperparameters of a study whose runs (main and search) are `runs`."""
        runs = list(runs)
        return cls(tuple(differing_fields(run.recipe for run in runs)),
                   any(run.phase != "main" for run in runs))

    def of_run(self, planned: PlannedRun) -> dict[str, Any]:
        """One run's hyperparameters: `variant`, `seed`, the differing fields, maybe `phase`."""
        values: dict[str, Any] = {"variant": planned.variant, "seed": planned.seed}
        if self.phases:
            values["phase"] = planned.phase
        for path in self.fields:
            values[path] = _shown(field_value(planned.recipe, path))
        return values


def _shown(value: Any) -> Any:
    """A list of named entries (layers, callbacks) by their names, in order: `flatten, dense`.

    Such a list is an hyperparameter when the study's runs have lists of other
    lengths; its names tell them apart where its whole JSON would be cut short.
    """
    if not isinstance(value, list) or not all(
            isinstance(item, str) or (isinstance(item, dict) and len(item) == 1)
            for item in value):
        return value
    return ", ".join(item if isinstance(item, str) else next(iter(item)) for item in value) or (
        "none")
