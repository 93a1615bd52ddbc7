"""`tricklab lr-find`: a recipe's learning-rate range test in its own run directory."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from tricklab import atomic
from tricklab.data import DatasetSplits
from tricklab.recipe import Recipe
from tricklab.report import plot_lr_find
from tricklab.run.rundir import RunDirectory
from tricklab.run.runner import build, check_before_data, check_built, load_data
from tricklab.train import Trainer
from tricklab.train.lr_finder import find_learning_rate


def lr_find_recipe(
    recipe: Recipe,
    out: str | Path | None = None,
    overwrite: bool = False,
    steps: int = 300,
    min_lr: float = 1e-6,
    max_lr: float = 10.0,
    splits: DatasetSplits | None = None,
) -> tuple[Path, dict[str, Any]]:
    """Run the range test on the recipe's model, optimizer, loss and training data.

    Writes `recipe.yaml`, `lr_find.json` and `plots/lr_find.png` into `out`
    (default `runs/<name>-lr-find`), so the recipe's own run directory stays free.

    Args:
        recipe: A resolved recipe.
        out: Output directory. Defaults to `runs/<name>-lr-find`.
        overwrite: Replace an earlier test in `out`. Defaults to `False`.
        steps: Steps of the test. Defaults to `300`.
        min_lr: First learning rate. Defaults to `1e-6`.
        max_lr: Last learning rate. Defaults to `10.0`.
        splits: The recipe's data, already loaded (`load_data`). Defaults to `None`
            (loaded here).

    Returns:
        The directory and the content of `lr_find.json`.
    """
    run_dir = RunDirectory(out if out is not None else Path("runs") / f"{recipe.name}-lr-find")
    run_dir.check_usable(resume=False, overwrite=overwrite)
    check_before_data(recipe)
    splits = load_data(recipe) if splits is None else splits
    if recipe.train.target == "inputs":
        splits = splits.as_reconstruction()
    model, optimizer = build(recipe)
    check_built(recipe, model, splits)
    trainer = Trainer(model, optimizer, loss=recipe.train.loss, seed=recipe.seed, progress="none")
    with run_dir.starting(overwrite, resume=False):
        result = find_learning_rate(
            trainer, splits.train.x, splits.train.y, recipe.train.batch_size, min_lr, max_lr,
            steps,
        )
        run_dir.write_recipe(recipe.to_dict())
        summary = {"name": recipe.name, "seed": recipe.seed, **asdict(result)}
        atomic.write_json(run_dir.path / "lr_find.json", summary)
        plot_lr_find(result.learning_rates, result.losses, result.smoothed, result.suggestion,
                     run_dir.plots / "lr_find.png", recipe.name)
    return run_dir.path, summary
