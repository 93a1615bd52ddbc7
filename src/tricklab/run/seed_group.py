"""Seeds of one recipe trained together as one batched model, each filling its own run directory.

A study's driver hands a group of runs that differ only in their seed to
`train_seed_group` (see `tricklab.run.study`); the training itself is
`tricklab.train.batched.BatchedSeedsTrainer`, made from the recipe by
`tricklab.run.batched_recipes.batched_trainer`. Each seed's run directory then
holds what `tricklab.run.runner.train_recipe` would have left for it.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from tricklab.data import DatasetSplits, Split
from tricklab.recipe import Recipe
from tricklab.run.batched_recipes import batched_trainer, seed_group_key
from tricklab.run.best_model import best_keeper, replayed_best
from tricklab.run.rundir import RunDirectory
from tricklab.run.runner import (
    EXIT_CODES,
    RunOutcome,
    load_data,
    run_result,
    shaped_for_model,
    training_device,
    write_run,
)
from tricklab.run.tensorboard_runs import log_finished_recipe_run, logs_to_tensorboard
from tricklab.train.batched import BatchedSeedsTrainer


def train_seed_group(
    recipes: Sequence[Recipe],
    outs: Sequence[str | Path],
    overwrite: bool = False,
    splits: DatasetSplits | None = None,
    tensorboard: bool = True,
    hparams: Sequence[Mapping[str, Any]] | None = None,
) -> list[RunOutcome]:
    """Train the seeds of one recipe together as one batched model; fill each seed's run directory.

    Each directory holds what `train_recipe` leaves for that seed's recipe
    (`recipe.yaml`, `result.json`, `history.csv`, plots, `model/` with the
    seed's own weights and optimizer state), except checkpoints: a group is
    trained whole or not at all, so an interrupted group is trained again,
    and `model_best/`: the batched model keeps no weights per epoch, so
    `result.json`'s `best` names the best epoch found in the history and says
    that its model was not saved.
    `result.json` also says `batched_seeds` (the group's size), and its
    `wall_time_s` is the group's training wall time divided by that size, the
    share of each seed, so a study's timings add up to its training time.

    Args:
        recipes: Resolved recipes that differ only in `name` and `seed`, of a kind
            `tricklab.run.batched_recipes.batchable` accepts.
        outs: Each recipe's run directory.
        overwrite: Replace runs already in those folders. Defaults to `False`.
        splits: The recipes' data, already loaded. Defaults to `None` (load it here).
        tensorboard: Write each seed's TensorBoard events (all at once, when the
            group is done) where its recipe's `train.tensorboard` allows; `False`
            writes none. Defaults to `True`.
        hparams: Each seed's hyperparameters, logged as its HParams session.
            Defaults to `None` (no session).

    Returns:
        One outcome per recipe, in order.

    Raises:
        ValueError: The recipes differ in more than name and seed, their number
            differs from the folders', or `batchable` refuses them (with its reason).
        UserInputError: A folder holds another run, or the data cannot be had.
    """
    if not recipes or len(recipes) != len(outs):
        raise ValueError(f"one folder per recipe is needed (got {len(recipes)} recipes, "
                         f"{len(outs)} folders)")
    recipe = recipes[0]
    if any(seed_group_key(other) != seed_group_key(recipe) for other in recipes[1:]):
        raise ValueError("batched seeds need recipes that differ only in name and seed")
    run_dirs = [RunDirectory(out) for out in outs]
    for run_dir in run_dirs:
        run_dir.check_usable(resume=False, overwrite=overwrite)
    splits = load_data(recipe) if splits is None else shaped_for_model(splits, recipe)
    if recipe.train.target == "inputs":
        splits = splits.as_reconstruction()
    device = training_device(recipe)
    trainer = batched_trainer(recipe, [r.seed for r in recipes], device)
    train = recipe.train
    with contextlib.ExitStack() as stack:
        for run_dir in run_dirs:
            stack.enter_context(run_dir.starting(overwrite, resume=False))
        fits = trainer.fit(
            splits.train.x, splits.train.y, epochs=train.epochs, batch_size=train.batch_size,
            validation_data=(splits.val.x, splits.val.y) if splits.val is not None else None,
            shuffle=train.shuffle,
        )
        models, optimizers = trainer.unstack(), trainer.unstacked_optimizers()
        scores: dict[str, list[dict[str, float]]] = {}
        outcomes = []
        for index, (seed_recipe, run_dir, fit) in enumerate(
            zip(recipes, run_dirs, fits, strict=True)
        ):
            seed = _GroupSeed(trainer, index, scores)
            share = dataclasses.replace(fit, wall_time_s=fit.wall_time_s / len(recipes))
            result = {**run_result(seed_recipe, models[index], device, splits, share,
                                   seed.evaluate),
                      "batched_seeds": len(recipes),
                      "best": replayed_best(best_keeper(seed_recipe, splits.val is not None),
                                            fit.history)}
            run_dir.write_recipe(seed_recipe.to_dict())
            if logs_to_tensorboard(seed_recipe.to_dict(), tensorboard):
                log_finished_recipe_run(run_dir.path, seed_recipe.to_dict(), result,
                                        None if hparams is None else hparams[index])
            # `result.json` comes last: a Ctrl-C once it is written finds the run finished.
            write_run(run_dir, seed_recipe, splits, fit, result, models[index],
                      optimizers[index], seed.predict)
            outcomes.append(RunOutcome(run_dir.path, result, EXIT_CODES[fit.status]))
    return outcomes


@dataclass
class _GroupSeed:
    """One seed of a `BatchedSeedsTrainer`, evaluated and predicting as a `Trainer` of its own.

    Args:
        trainer: The group's trainer.
        index: The seed's position in the group.
        scores: Every seed's scores by split name, shared by the group's seeds so
            that each split is evaluated once for all of them.
    """

    trainer: BatchedSeedsTrainer
    index: int
    scores: dict[str, list[dict[str, float]]]

    def evaluate(self, name: str, split: Split) -> dict[str, float]:
        if name not in self.scores:
            self.scores[name] = self.trainer.evaluate(split.x, split.y, batch_size=1024)
        return self.scores[name][self.index]

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return self.trainer.predict(x)[self.index]
