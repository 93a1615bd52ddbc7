"""Recipes whose seeds train together as one batched model, and the trainer they get.

`tricklab.train.batched.BatchedSeedsTrainer` takes what `tricklab.train.Trainer`
takes: models, an optimizer configuration, a loss, metrics and a schedule. This
module reads those from a recipe, says which recipes can be batched at all
(`batchable`), which recipes are seeds of one another (`seed_group_key`) and
when a study batches them unasked (`batch_seeds_by_default`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import torch

from tricklab.nn import build_model
from tricklab.nn.model import Sequential
from tricklab.optim.schedules import Performance, schedules
from tricklab.recipe import Recipe
from tricklab.train.batched import BatchedSeedsTrainer, vmap_error


def batchable(recipe: Recipe) -> tuple[bool, str]:
    """Whether the seeds of `recipe` can train together in a `BatchedSeedsTrainer`.

    Refused: callbacks (early stopping decides per run), the `performance`
    schedule (reduce-on-plateau follows each run's metric), `train.phases`,
    `model.reuse`, data augmentation, `precision` other than `fp32`, and models
    with an operation `torch.vmap` cannot batch (e.g. `rrelu`, `simple_rnn`,
    `lstm`, `gru`), found by running a two-seed batched model once on zeros.

    Args:
        recipe: A resolved recipe.

    Returns:
        `(True, "")`, or `(False, reason)` naming the recipe field that prevents it.
    """
    train = recipe.train
    if train.callbacks:
        return False, (
            "train.callbacks: callbacks such as early stopping decide for each run "
            "on its own; its seeds train separately"
        )
    if train.schedule is not None and isinstance(
        schedules.get(train.schedule, "train.schedule"), Performance
    ):
        return False, (
            "train.schedule: performance scheduling follows each run's own metric; "
            "its seeds train separately"
        )
    if train.phases is not None:
        return False, "train.phases: training in phases is not supported by batched seeds"
    if recipe.model.reuse is not None:
        return False, "model.reuse: reusing a trained model is not supported by batched seeds"
    if recipe.data.get("augment"):
        return False, "data.augment: data augmentation is not supported by batched seeds"
    if train.precision != "fp32":
        return False, (
            f"train.precision: {train.precision} is not supported by batched seeds (only fp32)"
        )
    # The probe model's weights must not move the caller's random stream.
    with torch.random.fork_rng(devices=[]):
        model = build_model(recipe.model.input_shape, recipe.model.layers)
    error = vmap_error(model)
    if error is not None:
        return False, f"model.layers: an operation cannot be batched with torch.vmap ({error})"
    return True, ""


def seed_group_key(recipe: Recipe) -> str:
    """A key equal for recipes that differ only in `name` and `seed`: seeds to batch together.

    Args:
        recipe: A resolved recipe.
    """
    plain = recipe.to_dict()
    plain.pop("name")
    plain.pop("seed")
    return json.dumps(plain, sort_keys=True)


def batch_seeds_by_default(device: torch.device | str) -> bool:
    """Whether a study should batch its batchable seeds on `device` when not told.

    On a GPU a run of a small model is bound by kernel launches and Python,
    which one batched model pays once for all seeds. On a CPU the matrix
    products already bound each run, and the study keeps every core busy with
    separate one-thread runs: `benchmarks/batched_seeds.py` measured batched
    groups in those processes slower than single runs (0.77 to 0.82 times their
    throughput; the chapter notebook's model, 20 seeds, 2 cores), where batching must reach 1.2
    to pay.

    Args:
        device: Where the runs train.
    """
    return torch.device(device).type == "cuda"


def build_seed_models(
    recipe: Recipe, seeds: Sequence[int], device: torch.device | str = "cpu"
) -> list[Sequential]:
    """Build the recipe's model once per seed, each with the initial weights of its separate run.

    Like `tricklab.run.runner.build`, each model is built right after
    `torch.manual_seed(seed)`.

    Args:
        recipe: A resolved recipe that `batchable` accepts.
        seeds: One seed per model.
        device: Where the models go. Defaults to `"cpu"`.
    """
    models = []
    for seed in seeds:
        torch.manual_seed(seed)
        models.append(build_model(recipe.model.input_shape, recipe.model.layers).to(device))
    return models


def batched_trainer(
    recipe: Recipe, seeds: Sequence[int], device: torch.device | str = "cpu"
) -> BatchedSeedsTrainer:
    """The trainer a recipe's separate runs with `seeds` would each have, batched.

    Args:
        recipe: A resolved recipe that `batchable` accepts (its own `seed` is ignored).
        seeds: The seeds to train.
        device: Where to train, e.g. `tricklab.run.runner.training_device(recipe)`.
            Defaults to `"cpu"`.

    Raises:
        ValueError: When `batchable` refuses the recipe, with its reason.
    """
    ok, reason = batchable(recipe)
    if not ok:
        raise ValueError(reason)
    train = recipe.train
    return BatchedSeedsTrainer(
        build_seed_models(recipe, seeds, device),
        dict(train.optimizer),
        seeds,
        loss=train.loss,
        metrics=train.metrics,
        schedule=train.schedule,
    )
