"""The doctor on a recipe: training with probes, then a verdict, `doctor.json` and plots.

`tricklab doctor RECIPE` trains the recipe's network for a few hundred steps
with a probe on every layer and prints what the chapter would say of it;
`tricklab train RECIPE --doctor` keeps the probes on for the whole run. Both
write `doctor.json` (top-level `verdict` and `findings`, then the raw `probes`)
and the doctor's plots into the run directory.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tricklab import atomic
from tricklab.data import DatasetSplits
from tricklab.doctor import DoctorCallback, watch
from tricklab.doctor.diagnosis import Diagnosis, diagnose
from tricklab.recipe import Recipe
from tricklab.report.doctor import plot_doctor
from tricklab.run.rundir import RunDirectory, RunInterrupted
from tricklab.run.runner import build, check_before_data, check_built, load_data
from tricklab.train import Trainer
from tricklab.train.progress import ProgressMode
from tricklab.train.scheduling import LearningRateScheduler

DOCTOR_FILE = "doctor.json"
SAMPLES = 100
"""Probed steps a `tricklab doctor` run aims for: enough for medians and windows."""


@dataclass
class DoctorOutcome:
    """What `doctor_recipe` found and where it wrote it.

    Args:
        run_dir: The folder holding `doctor.json`, `recipe.yaml` and `plots/`.
        diagnosis: The verdict and findings.
        steps: Training steps taken.
        fit_seconds: Wall time of the training itself, without loading the data,
            building the model or writing the diagnosis. Defaults to `0.0`.
        prepare_seconds: Wall time of loading the data and building the model.
            Defaults to `0.0`.
    """

    run_dir: Path
    diagnosis: Diagnosis
    steps: int
    fit_seconds: float = 0.0
    prepare_seconds: float = 0.0


def write_doctor(folder: Path, probes: dict[str, Any]) -> Diagnosis:
    """Diagnose `probes`, write `doctor.json` and the doctor plots into the run folder `folder`."""
    diagnosis = diagnose(probes)
    atomic.write_json(folder / DOCTOR_FILE, {**diagnosis.to_dict(), "probes": probes})
    plot_doctor(probes, folder / "plots")
    return diagnosis


def doctor_recipe(
    recipe: Recipe,
    out: str | Path | None = None,
    steps: int | None = 300,
    overwrite: bool = False,
    progress: ProgressMode = "auto",
    splits: DatasetSplits | None = None,
) -> DoctorOutcome:
    """Train the recipe's network for `steps` steps with probes and diagnose it.

    The optimizer, batch size and schedule are the recipe's. The run trains on
    the first `steps` batches of the training set, or for whole epochs when
    `steps` is more than one epoch, and the probe records every
    `steps // 100`-th step.

    Args:
        recipe: A resolved recipe.
        out: The folder. Defaults to `runs/<name>-doctor`.
        steps: Training steps to take, >= 1, or `None` for exactly one epoch.
            Defaults to `300`.
        overwrite: Replace an earlier doctor run in `out`. Defaults to `False`.
        progress: Progress display, see `ProgressReporter`. Defaults to `"auto"`.
        splits: The recipe's data, already loaded (`load_data`). Defaults to `None`
            (loaded here).

    Raises:
        UserInputError: The folder holds another run, or the data cannot be had.
    """
    run_dir = RunDirectory(out if out is not None else Path("runs") / f"{recipe.name}-doctor")
    run_dir.check_usable(resume=False, overwrite=overwrite)
    check_before_data(recipe)
    begun = time.perf_counter()
    splits = load_data(recipe) if splits is None else splits
    if recipe.train.target == "inputs":
        splits = splits.as_reconstruction()
    model, optimizer = build(recipe)
    check_built(recipe, model, splits)
    prepare_seconds = time.perf_counter() - begun
    train = recipe.train
    per_epoch = math.ceil(len(splits.train.y) / train.batch_size)
    steps = per_epoch if steps is None else steps
    epochs = math.ceil(steps / per_epoch)
    count = min(len(splits.train.y), steps * train.batch_size)
    callbacks: list[Any] = []
    if train.schedule is not None:
        callbacks.append(LearningRateScheduler(train.schedule))
    with run_dir.starting(overwrite, resume=False):
        with watch(model, every=max(1, steps // SAMPLES)) as probe:
            trainer = Trainer(model, optimizer, loss=train.loss, metrics=train.metrics,
                              callbacks=[*callbacks, DoctorCallback(probe)], seed=recipe.seed,
                              progress=progress, precision=train.precision)
            started = time.perf_counter()
            fit = trainer.fit(splits.train.x[:count], splits.train.y[:count], epochs=epochs,
                              batch_size=train.batch_size, shuffle=train.shuffle)
            fit_seconds = time.perf_counter() - started
            probes = probe.to_dict()
        if fit.status == "interrupted":
            raise RunInterrupted("the doctor was stopped before it had seen enough; "
                                 "nothing was saved")
        run_dir.write_recipe(recipe.to_dict())
        diagnosis = write_doctor(run_dir.path, probes)
    return DoctorOutcome(run_dir.path, diagnosis, trainer.global_step, fit_seconds,
                         prepare_seconds)
