"""Recipe -> objects -> Trainer -> run directory: the one place a recipe becomes a training run."""

from __future__ import annotations

import math
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

import tricklab
from tricklab.data import DatasetSplits, load_dataset
from tricklab.errors import EXIT_DIVERGED, EXIT_INTERRUPTED, EXIT_OK, UserInputError
from tricklab.nn import build_model
from tricklab.optim import make_optimizer
from tricklab.recipe import Recipe
from tricklab.report import plot_learning_curves
from tricklab.run.rundir import RunDirectory
from tricklab.train import FitResult, Trainer
from tricklab.train.progress import ProgressMode
from tricklab.train.scheduling import LearningRateScheduler
from tricklab.transfer import save_model

EXIT_CODES = {
    "completed": EXIT_OK,
    "stopped_early": EXIT_OK,
    "diverged": EXIT_DIVERGED,
    "interrupted": EXIT_INTERRUPTED,
}


@dataclass
class RunOutcome:
    """What a finished (or stopped) run left behind.

    Args:
        run_dir: The run directory.
        result: The content of `result.json`.
        exit_code: 0 done, 3 diverged, 130 interrupted (DESIGN.md's contract).
    """

    run_dir: Path
    result: dict[str, Any]
    exit_code: int


def load_data(recipe: Recipe) -> DatasetSplits:
    """Load the dataset the recipe's `data:` section describes."""
    options = dict(recipe.data)
    return load_dataset(options.pop("dataset"), **options)


def build(recipe: Recipe) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    """Seed the global generator, then build the model and its optimizer."""
    torch.manual_seed(recipe.seed)
    model = build_model(recipe.model.input_shape, recipe.model.layers)
    optimizer = make_optimizer(dict(recipe.train.optimizer), model.parameters())
    return model, optimizer


def _same_run(stored: dict[str, Any], resolved: dict[str, Any]) -> bool:
    # A resumed run may be asked to train for more epochs; everything else must match.
    def strip(recipe: dict[str, Any]) -> dict[str, Any]:
        return {**recipe, "train": {k: v for k, v in recipe["train"].items() if k != "epochs"}}

    return strip(stored) == strip(resolved)


def train_recipe(
    recipe: Recipe,
    out: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: ProgressMode = "auto",
    splits: DatasetSplits | None = None,
    doctor: bool = False,
) -> RunOutcome:
    """Train the network a resolved recipe describes and fill its run directory.

    Nothing is written until the data is loaded and the model and optimizer are
    built, so a bad recipe or a missing dataset leaves the disk untouched.

    Args:
        recipe: A resolved recipe (`load_recipe` returns one).
        out: Run directory. Defaults to `runs/<recipe.name>`.
        resume: Continue the run in `out` from its newest checkpoint. Defaults to `False`.
        overwrite: Replace a run already in `out`. Defaults to `False`.
        progress: Progress display, see `ProgressReporter`. Defaults to `"auto"`.
        splits: The recipe's data, already loaded (a study's worker loads it once
            for all its runs). Defaults to `None` (load it here).
        doctor: Probe every layer through the run and write `doctor.json` and the
            doctor's plots into the run directory. Defaults to `False`.

    Raises:
        UserInputError: The folder holds another run, or the data cannot be had.
    """
    run_dir = RunDirectory(out if out is not None else Path("runs") / recipe.name)
    run_dir.check_usable(resume, overwrite)
    resolved = recipe.to_dict()
    if resume and not _same_run(run_dir.stored_recipe(), resolved):
        raise UserInputError(
            f"--resume: the recipe differs from the one stored in {run_dir.recipe_path} "
            "(only train.epochs may change on resume)"
        )
    splits = load_data(recipe) if splits is None else splits
    model, optimizer = build(recipe)
    train = recipe.train
    callbacks = list(train.callbacks)
    if train.schedule is not None:
        callbacks.append(LearningRateScheduler(train.schedule))
    probe = None
    if doctor:
        from tricklab.doctor import DoctorCallback, watch

        probe = watch(model).attach()
        callbacks.append(DoctorCallback(probe))
    trainer = Trainer(
        model,
        optimizer,
        loss=train.loss,
        metrics=train.metrics,
        callbacks=callbacks,
        seed=recipe.seed,
        checkpoint_dir=run_dir.checkpoints,
        progress=progress,
    )
    if overwrite:
        run_dir.clear()
    run_dir.write_recipe(resolved)
    validation = (splits.val.x, splits.val.y) if splits.val is not None else None
    try:
        fit = trainer.fit(
            splits.train.x,
            splits.train.y,
            epochs=train.epochs,
            batch_size=train.batch_size,
            validation_data=validation,
            shuffle=train.shuffle,
            resume=resume,
        )
    finally:
        if probe is not None:
            probe.detach()
    if probe is not None:
        from tricklab.run.doctor import write_doctor

        write_doctor(run_dir.path, probe.to_dict())
    result = _result(recipe, model, trainer, splits, fit)
    if fit.status in ("completed", "stopped_early"):
        # The final model, architecture and weights, loadable with `tricklab.load_model`.
        save_model(model, run_dir.path / "model", optimizer)
    run_dir.write_history(fit.history)
    if fit.history.get("loss"):
        plot_learning_curves(fit.history, run_dir.plots / "learning_curves.png", recipe.name)
    run_dir.write_result(result)
    return RunOutcome(run_dir.path, result, EXIT_CODES[fit.status])


def _final_metrics(trainer: Trainer, splits: DatasetSplits, fit: FitResult) -> dict[str, float]:
    """Evaluate the final weights on every split; a run that did not finish reports its history."""
    if fit.status in ("completed", "stopped_early"):
        named = {"train": splits.train, "val": splits.val, "test": splits.test}
        metrics: dict[str, float] = {}
        for prefix, split in named.items():
            if split is not None:
                scores = trainer.evaluate(split.x, split.y, batch_size=1024)
                metrics.update({f"{prefix}_{key}": value for key, value in scores.items()})
        return metrics
    last = {key: values[-1] for key, values in fit.history.items() if values}
    return {
        (key if key.startswith("val_") else f"train_{key}"): value
        for key, value in last.items()
        if key not in ("lr", "time_s")
    }


def _result(
    recipe: Recipe,
    model: torch.nn.Module,
    trainer: Trainer,
    splits: DatasetSplits,
    fit: FitResult,
) -> dict[str, Any]:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters()) + sum(
        b.numel() for b in model.buffers() if b.is_floating_point()
    )
    metrics = _final_metrics(trainer, splits, fit)
    return {
        "name": recipe.name,
        "seed": recipe.seed,
        "status": fit.status,
        "metrics": {k: (v if math.isfinite(v) else None) for k, v in metrics.items()},
        "epochs_run": fit.epochs_run,
        "best_epoch": fit.best_epoch,
        "resumed_from_epoch": fit.resumed_from,
        "wall_time_s": round(fit.wall_time_s, 3),
        "params": total,
        "trainable_params": trainable,
        "dataset": {
            "name": splits.name,
            "train": len(splits.train.y),
            "val": 0 if splits.val is None else len(splits.val.y),
            "test": len(splits.test.y),
        },
        "history": fit.history,
        "versions": {
            "tricklab": tricklab.__version__,
            "torch": torch.__version__,
            "python": platform.python_version(),
        },
        "threads": torch.get_num_threads(),
    }
