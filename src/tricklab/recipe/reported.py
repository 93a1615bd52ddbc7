"""What a run of a recipe reports: its per-epoch history keys and its final metrics.

One place answers "which names will this run produce?", so everything that
refers to one by name is checked against the same list before anything is
trained: a callback's or a schedule's `monitor` (`resolve`), and a study's
`metric`, `target.metric` and `lr_search.metric` (`load_study`).

The lists follow what the run layer writes:

- `Trainer` logs, per epoch, `loss`, `regularization_loss` (a model with weight
  regularizers), one key per metric under its registry name (`accuracy`), and
  with a validation split `val_loss` and `val_<metric>` (validation reports no
  penalty on its own). It also logs `lr` and `time_s`, which describe the run,
  not the model, and are no measure to monitor or compare.
- `result.json`'s `metrics` hold the final weights' `loss` and metrics on every
  split: `train_<key>`, `val_<key>` (with a validation split) and `test_<key>`.

An autoencoder (`train.target: inputs`) logs the same keys: its loss is the
reconstruction loss and its metrics are whatever the recipe lists.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from tricklab.recipe.schema import Recipe

SPLIT_PREFIXES = ("train", "val", "test")
"""The splits whose final scores `result.json` reports, as prefixes of its metric names."""


def metric_names(recipe: Recipe) -> list[str]:
    """The history key of each of the recipe's metrics, in order, each once.

    As `Trainer` names them: a metric given as `name` or `{name: config}` logs
    under `name`.

    Args:
        recipe: A resolved recipe.
    """
    names = [_entry_name(spec) for spec in recipe.train.metrics]
    return list(dict.fromkeys(names))


def has_validation(recipe: Recipe) -> bool:
    """Whether the run has a validation split (`data.validation` above 0)."""
    return bool(recipe.data.get("validation", 0))


def may_regularize(recipe: Recipe) -> bool:
    """Whether the model may have weight regularizers, so that training logs their penalty.

    True when a layer (or a layer inside a block) sets a `*_regularizer`, or when
    the model reuses layers of another, whose regularizers only the built model knows.

    Args:
        recipe: A resolved recipe.
    """
    return recipe.model.reuse is not None or _sets_regularizer(recipe.model.layers)


def logged_keys(recipe: Recipe) -> list[str]:
    """The per-epoch history keys a run of `recipe` logs (`lr` and `time_s` left out).

    These are the names a callback's or schedule's `monitor` and a study's
    `target.metric` may use, in the order the trainer logs them, e.g.
    `['loss', 'accuracy', 'val_loss', 'val_accuracy']`.

    Args:
        recipe: A resolved recipe.
    """
    train = ["loss", *(["regularization_loss"] if may_regularize(recipe) else [])]
    scores = ["loss", *metric_names(recipe)]
    keys = [*train, *scores[1:]]
    if has_validation(recipe):
        keys += [f"val_{key}" for key in scores]
    return keys


def result_metric_names(recipe: Recipe) -> list[str]:
    """The names `result.json`'s `metrics` holds for a finished run of `recipe`.

    `train_<k>`, `val_<k>` (with a validation split) and `test_<k>` for `k` in
    `loss` and the recipe's metrics, e.g. `['train_loss', 'train_accuracy',
    'val_loss', 'val_accuracy', 'test_loss', 'test_accuracy']`. A study's
    `metric` and `lr_search.metric` are read from there.

    Args:
        recipe: A resolved recipe.
    """
    scores = ["loss", *metric_names(recipe)]
    prefixes = [p for p in SPLIT_PREFIXES if p != "val" or has_validation(recipe)]
    return [f"{prefix}_{key}" for prefix in prefixes for key in scores]


def unlisted_metric(name: str, recipe: Recipe, produced: Sequence[str]) -> str | None:
    """The registered metric whose listing in `train.metrics` would produce `name`, else `None`.

    `val_accuracy`, `test_accuracy` or `accuracy` of a recipe without `accuracy`
    in its metrics gives `"accuracy"`, so a message can say what to add; but
    only where the run produces names of that split at all (a `val_` name of a
    run without validation needs more than a metric).

    Args:
        name: A history key or final metric name.
        recipe: A resolved recipe.
        produced: The names of that kind the run does produce, e.g. `logged_keys(recipe)`.
    """
    from tricklab.train.metrics import metrics as metric_registry

    stem = name
    for prefix in SPLIT_PREFIXES:
        stem = stem.removeprefix(f"{prefix}_")
    if stem not in metric_registry.names() or stem in metric_names(recipe):
        return None
    prefix = name[: len(name) - len(stem)]
    return stem if any(key.startswith(prefix) for key in produced) else None


def _entry_name(spec: str | Mapping[str, Any]) -> str:
    """`name` or `{name: config}` -> `name` (a resolved entry is the latter)."""
    if isinstance(spec, str):
        return spec
    (name,) = spec
    return str(name)


def _sets_regularizer(node: Any) -> bool:
    """Whether a resolved layer list (searched through nested blocks) sets any regularizer."""
    if isinstance(node, Mapping):
        return any(
            (str(key).endswith("_regularizer") and value is not None) or _sets_regularizer(value)
            for key, value in node.items()
        )
    if isinstance(node, Sequence) and not isinstance(node, str | bytes):
        return any(_sets_regularizer(item) for item in node)
    return False
