"""Recipe -> objects -> Trainer -> run directory: the one place a recipe becomes a training run."""

from __future__ import annotations

import contextlib
import dataclasses
import math
import platform
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

import tricklab
from tricklab.data import DatasetSplits, Split, load_dataset
from tricklab.data.augment import Pipeline
from tricklab.differences import ABSENT as _ABSENT
from tricklab.differences import recipe_differences
from tricklab.errors import (
    EXIT_DIVERGED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    UserInputError,
    shown_value,
)
from tricklab.nn import Sequential, build_model
from tricklab.nn.builder import model_input
from tricklab.nn.footprint import check_training_fits, footprint_of
from tricklab.optim import make_optimizer
from tricklab.recipe import Recipe
from tricklab.recipe.schema import PhaseSection
from tricklab.report import plot_learning_curves
from tricklab.report.reconstructions import plot_reconstructions
from tricklab.run.best_model import best_keeper, write_best
from tricklab.run.mlflow_tracking import MlflowTarget, recipe_run
from tricklab.run.preflight import check_fits
from tricklab.run.pretrained import check_reuse_chain, is_recipe, source_model
from tricklab.run.replace import orphans
from tricklab.run.rundir import RunDirectory, RunInterrupted
from tricklab.run.tensorboard_runs import recipe_logger
from tricklab.train import FitResult, Trainer
from tricklab.train.best_weights import keeper_first
from tricklab.train.callbacks import Callback
from tricklab.train.progress import ProgressMode
from tricklab.train.scheduling import LearningRateScheduler
from tricklab.transfer import save_model
from tricklab.transfer.reuse import parse_layer_slice, reuse_layers

RECONSTRUCTIONS_SHOWN = 10
"""Test images shown in an autoencoder run's `plots/reconstructions.png`."""

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
    """Load the dataset the recipe's `data:` section describes, shaped as its model's inputs."""
    return shaped_for_model(load_recipe_dataset(recipe), recipe)


def load_recipe_dataset(recipe: Recipe) -> DatasetSplits:
    """Load the dataset the recipe's `data:` section describes, its samples as stored."""
    options = {key: value for key, value in recipe.data.items() if key != "augment"}
    return load_dataset(options.pop("dataset"), **options)


def shaped_for_model(splits: DatasetSplits, recipe: Recipe) -> DatasetSplits:
    """View each part's samples in the recipe's `model.input_shape`, e.g. `[28, 28, 1]`.

    A view of the same values, no copy: a convolutional recipe's `[28, 28, 1]`
    reads the `[28, 28]` images as one-channel ones, as `X[..., np.newaxis]` does.

    Raises:
        UserInputError: When the samples hold another number of values.
    """
    shape = tuple(recipe.model.input_shape)
    if tuple(splits.train.x.shape[1:]) == shape:
        return splits
    sample = tuple(splits.train.x.shape[1:])
    if math.prod(sample) != math.prod(shape):
        raise UserInputError(
            f"model.input_shape: {list(shape)} does not fit the data's samples of shape "
            f"{list(sample)} ({math.prod(sample)} values each); use a shape with as many values"
        )

    def view(split: Split | None) -> Split | None:
        return None if split is None else Split(split.x.reshape(len(split.x), *shape), split.y)

    return dataclasses.replace(
        splits, train=view(splits.train), val=view(splits.val), test=view(splits.test)
    )


def check_before_data(recipe: Recipe) -> None:
    """What the recipe alone can tell, before any data is loaded: reuse chains, memory.

    Raises:
        UserInputError: A cycle of reused recipes, or a model whose training cannot
            fit in the memory of the device it would train on.
    """
    reuse = recipe.model.reuse
    if reuse is not None and is_recipe(reuse.from_):
        check_reuse_chain(reuse.from_)
    if reuse is None:  # a reusing model is measured once built (`check_built`)
        # The layers are built for the model's input: a shape mistake is told what to change.
        with model_input(recipe.model.input_shape):
            check_training_fits(recipe.model.input_shape, recipe.model.layers,
                                recipe.train.batch_size, training_device(recipe))


def check_built(recipe: Recipe, model: Sequential, splits: DatasetSplits) -> None:
    """What the built model can tell, before anything is written: memory, data, loss.

    Raises:
        UserInputError: A reusing model whose training cannot fit in memory, or a
            model whose output does not fit its data and loss (`check_fits`).
    """
    if recipe.model.reuse is not None:
        footprint_of(model).check_training_fits(recipe.train.batch_size, training_device(recipe))
    check_fits(recipe, model, splits)


def build(
    recipe: Recipe, pretrained: Path | None = None, progress: ProgressMode = "auto"
) -> tuple[Sequential, torch.optim.Optimizer]:
    """Seed the global generator, then build the model and its (first phase's) optimizer.

    Args:
        recipe: A resolved recipe.
        pretrained: Folder where a recipe named by `model.reuse.from` is trained
            (see `tricklab.run.pretrained`). Defaults to `None` (`runs/`).
        progress: Progress display of such a pretraining run. Defaults to `"auto"`.
    """
    reuse = recipe.model.reuse
    source = None
    if reuse is not None:
        # Pretraining (if any) first: it seeds the generator for its own run.
        source = source_model(reuse.from_, pretrained or Path("runs"), progress)
    device = training_device(recipe)
    torch.manual_seed(recipe.seed)
    if source is None:
        model = build_model(recipe.model.input_shape, recipe.model.layers)
    else:
        model = reuse_layers(source, reuse.layers, recipe.model.layers, reuse.trainable)
        if list(model.input_shape) != list(recipe.model.input_shape):
            raise UserInputError(
                f"model.reuse.from: {reuse.from_} takes inputs of shape {list(model.input_shape)}, "
                f"but this recipe's are {list(recipe.model.input_shape)}"
            )
    # Moved before the optimizer exists, so its state is created on the device.
    model.to(device)
    if _uses_channels_last(recipe, model, device):
        model.to(memory_format=torch.channels_last)
    phases = training_phases(recipe)
    optimizer = _phase_optimizer(model, phases[0], 0, recipe, _count_reused(recipe, model))
    return model, optimizer


def training_device(recipe: Recipe) -> torch.device:
    """The device `train.device` names; `auto` is the CUDA GPU when there is one.

    Raises:
        UserInputError: When `cuda` is asked for on a machine without one.
    """
    cuda = torch.cuda.is_available()
    if recipe.train.device == "cuda" and not cuda:
        raise UserInputError(
            "train.device: cuda, but this machine has no CUDA GPU that PyTorch can use "
            "(accepted: auto, cpu, cuda)"
        )
    if recipe.train.device == "cpu" or not cuda:
        return torch.device("cpu")
    return torch.device("cuda")


def _uses_channels_last(recipe: Recipe, model: Sequential, device: torch.device) -> bool:
    """`train.channels_last`, where `auto` means: on CUDA, for a model with convolutions."""
    if recipe.train.channels_last != "auto":
        return recipe.train.channels_last
    return device.type == "cuda" and any(p.ndim == 4 for p in model.parameters())


def training_phases(recipe: Recipe) -> list[PhaseSection]:
    """The recipe's `train.phases`, or its one implicit phase."""
    train = recipe.train
    if train.phases is not None:
        return list(train.phases)
    return [PhaseSection(epochs=train.epochs, optimizer=train.optimizer, schedule=train.schedule)]


def _count_reused(recipe: Recipe, model: Sequential) -> int:
    return 0 if recipe.model.reuse is None else len(model) - len(recipe.model.layers)


def _phase_optimizer(
    model: Sequential, phase: PhaseSection, index: int, recipe: Recipe, reused: int
) -> torch.optim.Optimizer:
    """Set which layers train in this phase, then build its optimizer over their parameters.

    As Keras builds its optimizer over `trainable_weights`, frozen parameters
    get no optimizer state (and no decoupled weight decay).
    """
    if phase.trainable is not None:
        selected = range(len(model))
        if phase.trainable == "new":
            selected = range(reused, len(model))
        elif phase.trainable != "all":
            selected = range(len(model))[parse_layer_slice(phase.trainable)]
        for position, layer in enumerate(model):
            layer.trainable = position in selected
    parameters = [p for p in model.parameters() if p.requires_grad]
    if not parameters:
        where = (f"train.phases.{index}.trainable" if recipe.train.phases is not None
                 else "model.layers")
        raise UserInputError(f"{where}: no layer with weights is left trainable")
    return make_optimizer(dict(phase.optimizer), parameters)


RESUME_CHANGES_SHOWN = 3
"""Fields a `--resume` refusal lists (with their values) before saying how many more differ."""

def _shown_field(value: Any) -> str:
    """A field's value as a `--resume` refusal shows it: short, so the message stays one line.

    A long list (a model's layers, when layers were added or removed) is shown
    by its length: its first few characters would not say what changed.
    """
    if value is _ABSENT:
        return "(not set)"
    text = shown_value(value, limit=40)
    if isinstance(value, list) and text.endswith("..."):
        return f"a list of {len(value)}"
    return text


def check_resumable(run_dir: RunDirectory, recipe: Recipe) -> None:
    """Refuse to resume with another recipe, or with fewer epochs than the run has trained.

    A resumed run may be asked to train for more epochs, and to log to TensorBoard
    or not (`train.tensorboard`); everything else must match.

    Raises:
        UserInputError: Naming the fields that differ (`path: stored → new`, the
            first `RESUME_CHANGES_SHOWN` of them), or the epochs.
    """
    # Logging changes no result: a run from before `train.tensorboard` existed resumes too.
    differences = [difference for difference in recipe_differences(
        run_dir.stored_recipe(), recipe.to_dict())
        if difference[0] not in ("train.epochs", "train.tensorboard")
        # A run from before `train.best_monitor` existed finds its best in its history.
        and difference[:2] != ("train.best_monitor", _ABSENT)]
    if differences:
        shown = [f"{path}: {_shown_field(stored)} → {_shown_field(new)}"
                 for path, stored, new in differences[:RESUME_CHANGES_SHOWN]]
        if len(differences) > RESUME_CHANGES_SHOWN:
            shown.append(f"and {len(differences) - RESUME_CHANGES_SHOWN} more")
        raise UserInputError(
            f"--resume: the recipe differs from the one stored in {run_dir.recipe_path}: "
            f"{'; '.join(shown)} (only train.epochs may change on resume; to train the "
            "changed recipe, give another --out or pass --overwrite instead)"
        )
    done = run_dir.epochs_done()
    if recipe.train.epochs < done:
        raise UserInputError(
            f"--resume: train.epochs is {recipe.train.epochs}, but {run_dir.path} has already "
            f"trained {done} epochs; give train.epochs {done} or more"
        )


class _FirstEpoch(Callback):
    """Calls `start()` at the end of each epoch, where the runner marks `reached`.

    The first finished epoch is when a run comes into being: its recipe is
    written, and once its checkpoint is there, a run it replaces is deleted.
    """

    checkpointed = False

    def __init__(self) -> None:
        self.start: Callable[[], None] = lambda: None
        self.reached = False

    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: dict[str, float]) -> None:
        self.start()


def train_recipe(
    recipe: Recipe,
    out: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: ProgressMode = "auto",
    splits: DatasetSplits | None = None,
    doctor: bool = False,
    pretrained: Path | None = None,
    mlflow: str | MlflowTarget | None = None,
    tensorboard: bool = True,
    hparams: Mapping[str, Any] | None = None,
) -> RunOutcome:
    """Train the network a resolved recipe describes and fill its run directory.

    Everything that can be checked is checked before anything is written: the
    folder, the data, the model against its data and loss. The run directory
    appears with the first finished epoch; a run that fails or is interrupted
    before that leaves the folder as it found it (with `overwrite`, the old run
    is back in place).

    Args:
        recipe: A resolved recipe (`load_recipe` returns one).
        out: Run directory. Defaults to `runs/<recipe.name>`.
        resume: Continue the run in `out` from its newest checkpoint. Where `out` holds
            no run (one stopped before its first epoch ended saves nothing), the run
            starts from the beginning, with a note saying so. Defaults to `False`.
        overwrite: Replace a run already in `out`. Defaults to `False`.
        progress: Progress display, see `ProgressReporter`. Defaults to `"auto"`.
        splits: The recipe's data, already loaded (a study's worker loads it once
            for all its runs). Defaults to `None` (load it here).
        doctor: Probe every layer through the run and write `doctor.json` and the
            doctor's plots into the run directory. Defaults to `False`.
        pretrained: Folder where a recipe named by `model.reuse.from` is trained
            first when no finished run of it is there. Defaults to `None` (beside
            this run: `out`'s parent folder).
        mlflow: Log the run to MLflow (`tricklab.run.mlflow_tracking`): a tracking
            URI, or where a study nests it. Defaults to `None` (not logged).
        tensorboard: Write TensorBoard event files into `<out>/tensorboard`
            (`tricklab.run.tensorboard_runs`) unless the recipe's `train.tensorboard`
            is false; `False` (`--no-tensorboard`) writes none. Defaults to `True`.
        hparams: The run's hyperparameters in a study, logged as its TensorBoard
            HParams session. Defaults to `None` (no session).

    Raises:
        UserInputError: The folder holds another run or files that are not a run's,
            the data cannot be had, or the model does not fit its data and loss.
        RunInterrupted: Ctrl-C or SIGTERM before the run had a checkpoint, or while
            its results were written: the message says what is kept and the command
            that goes on from there. Stopped later, the run returns with status
            `interrupted`.
    """
    run_dir = RunDirectory(out if out is not None else Path("runs") / recipe.name)
    # `--resume` where nothing was saved (a run stopped before its first epoch ended
    # leaves no folder): the run starts from the beginning, as without `--resume`.
    starting_over = (resume and not overwrite and not run_dir.holds_run()
                     and not orphans(run_dir.path))
    resume = resume and not starting_over
    run_dir.check_usable(resume, overwrite)
    resolved = recipe.to_dict()
    if resume:
        check_resumable(run_dir, recipe)
    with _stopping(run_dir, "prepare", overwrite, resume):
        check_before_data(recipe)
        splits = load_data(recipe) if splits is None else shaped_for_model(splits, recipe)
        if recipe.train.target == "inputs":
            splits = splits.as_reconstruction()
        model, optimizer = build(
            recipe, pretrained if pretrained is not None else run_dir.path.parent, progress
        )
        check_built(recipe, model, splits)
        train = recipe.train
        phases = training_phases(recipe)
        first_epoch = _FirstEpoch()
        best = best_keeper(recipe, splits.val is not None)
        observers: list[Callback] = [first_epoch, best]
        tracker = recipe_run(mlflow, resolved, run_dir.path)
        if tracker is not None:
            observers.append(tracker)
        probe = None
        if doctor:
            from tricklab.doctor import DoctorCallback, watch

            probe = watch(model).attach()
            observers.append(DoctorCallback(probe))
        board = recipe_logger(run_dir.path, resolved, tensorboard, probe)
        if board is not None:
            observers.append(board)
        trainer = Trainer(
            model,
            optimizer,
            loss=train.loss,
            metrics=train.metrics,
            callbacks=_phase_callbacks(recipe, phases[0], observers),
            seed=recipe.seed,
            checkpoint_dir=run_dir.checkpoints,
            progress=progress,
            # The doctor probes every layer at every probed step, so nothing is skipped.
            cache_frozen_features=train.cache_frozen_features and not doctor,
            augment=Pipeline(recipe.data["augment"]) if recipe.data.get("augment") else None,
            precision=train.precision,
        )
    if starting_over:
        trainer.progress.note(
            f"--resume: {run_dir.path} holds no run yet (a run stopped before its first epoch "
            "ended saves nothing); training starts from the beginning"
        )
    # An MLflow run that an error or an interruption cuts short is ended as such.
    with run_dir.starting(overwrite, resume) as aside, (
            contextlib.nullcontext() if tracker is None else tracker), (
            contextlib.nullcontext() if board is None else board):
        def started() -> None:
            if not first_epoch.reached:
                first_epoch.reached = True
                run_dir.write_recipe(resolved)
            # The old run goes once the new one has a checkpoint (or a result) of its own.
            if aside is not None and run_dir.has_progress():
                aside.discard()

        first_epoch.start = started
        validation = (splits.val.x, splits.val.y) if splits.val is not None else None
        with _stopping(run_dir, "train", overwrite, resume):
            try:
                fit = _fit_phases(trainer, recipe, phases, splits, validation, resume, observers)
            finally:
                if probe is not None:
                    probe.detach()
        # Judged by checkpoints alone: a resumed run's earlier result.json is no progress of
        # this command's, and is left as it is.
        if fit.status == "interrupted" and not run_dir.checkpoint_epochs():
            raise RunInterrupted(_interruption(run_dir, "train", overwrite, resume))
        with _stopping(run_dir, "write", overwrite, resume):
            started()
            if probe is not None:
                from tricklab.run.doctor import write_doctor

                write_doctor(run_dir.path, probe.to_dict())
            result = run_result(
                recipe, model, trainer.device, splits, fit,
                lambda _name, split: trainer.evaluate(split.x, split.y, batch_size=1024),
            )
            result["best"] = write_best(run_dir.path, best, model, splits)
            if board is not None:
                board.finish(result, hparams)
            # `result.json` comes last: a Ctrl-C once it is written finds the run finished.
            write_run(run_dir, recipe, splits, fit, result, model, trainer.optimizer,
                      trainer.predict)
    if tracker is not None:
        tracker.finish(result)
    return RunOutcome(run_dir.path, result, EXIT_CODES[fit.status])


Stage = Literal["prepare", "train", "write"]
"""Where a run is: checking and loading, training, or evaluating and writing its results."""


@contextlib.contextmanager
def _stopping(run_dir: RunDirectory, stage: Stage, overwrite: bool, resume: bool) -> Iterator[None]:
    """Within it, Ctrl-C or SIGTERM ends the run with a `RunInterrupted` saying what is kept."""
    try:
        yield
    except KeyboardInterrupt:
        raise RunInterrupted(_interruption(run_dir, stage, overwrite, resume)) from None


def _interruption(run_dir: RunDirectory, stage: Stage, overwrite: bool, resume: bool) -> str:
    """What a run stopped at `stage` leaves, and the command that goes on from there.

    Read from the folder as the run leaves it, before `RunDirectory.starting`
    tidies up: checkpoints of this run are kept, anything else of it is removed
    (an `--overwrite` puts the earlier run back).
    """
    kept = run_dir.checkpoint_epochs()
    if stage == "write" and kept:
        again = "run the same command again" if resume else "add --resume to the same command"
        return (f"stopped while writing the results: the checkpoint of epoch {kept[-1]} is kept "
                f"in {run_dir.checkpoints}; {again} to finish the run")
    if resume and kept:
        return (f"stopped before training resumed: {run_dir.path} is as it was; run the same "
                f"command again to continue from epoch {kept[-1]}")
    if stage == "prepare":
        left = (f"the earlier run in {run_dir.path} is as it was" if overwrite
                else "nothing was saved")
        return f"stopped before training began: {left}; run the same command again to start over"
    when = ("before the first epoch ended" if stage == "train"
            else "while writing the results, before any checkpoint")
    back = f" and the earlier run in {run_dir.path} is put back" if overwrite else ""
    return f"stopped {when}, so nothing was saved{back}; run the same command again to start over"


def write_run(
    run_dir: RunDirectory,
    recipe: Recipe,
    splits: DatasetSplits,
    fit: FitResult,
    result: dict[str, Any],
    model: Sequential,
    optimizer: torch.optim.Optimizer,
    predict: Callable[[torch.Tensor], torch.Tensor],
) -> None:
    """Write a trained run's model, history and plots, then `result.json`, which comes last.

    Args:
        run_dir: The run directory, its recipe already written.
        recipe: The run's recipe.
        splits: The run's data (its test images are shown as reconstructions).
        fit: How training went.
        result: The content of `result.json`.
        model: The trained model.
        optimizer: Its optimizer, saved with the model.
        predict: The trained model's outputs for some inputs.
    """
    finished = fit.status in ("completed", "stopped_early")
    if finished:
        # The final model, architecture and weights, loadable with `tricklab.load_model`.
        save_model(model, run_dir.path / "model", optimizer)
        # How to prepare raw inputs for it (`tricklab predict --input`), in plain JSON.
        splits.preprocessing().save(run_dir.path / "model")
    run_dir.write_history(fit.history)
    if fit.history.get("loss"):
        plot_learning_curves(fit.history, run_dir.plots / "learning_curves.png", recipe.name)
    if recipe.train.target == "inputs" and finished:
        shown = splits.test.x[:RECONSTRUCTIONS_SHOWN]
        plot_reconstructions(shown, predict(shown), run_dir.plots / "reconstructions.png",
                             recipe.name)
    run_dir.write_result(result)


def _fit_phases(
    trainer: Trainer,
    recipe: Recipe,
    phases: list[PhaseSection],
    splits: DatasetSplits,
    validation: tuple[torch.Tensor, torch.Tensor] | None,
    resume: bool,
    observers: list[Callback],
) -> FitResult:
    """Fit each phase in turn on one trainer (continuous history); a stop ends them all."""
    train, done, fits = recipe.train, 0, []
    reused = _count_reused(recipe, trainer.model)
    for index, phase in enumerate(phases):
        if index:
            trainer.compile(
                _phase_optimizer(trainer.model, phase, index, recipe, reused),
                _phase_callbacks(recipe, phase, observers),
            )
        fits.append(trainer.fit(
            splits.train.x, splits.train.y, epochs=done + phase.epochs,
            batch_size=train.batch_size, validation_data=validation, shuffle=train.shuffle,
            resume=resume, initial_epoch=done,
        ))
        done += phase.epochs
        if fits[-1].status != "completed":
            break
    last = fits[-1]
    return FitResult(
        history=last.history, status=last.status, epochs_run=last.epochs_run,
        best_epoch=last.best_epoch, wall_time_s=sum(fit.wall_time_s for fit in fits),
        resumed_from=fits[0].resumed_from, cached_layers=max(f.cached_layers for f in fits),
    )


def _phase_callbacks(
    recipe: Recipe, phase: PhaseSection, observers: list[Callback]
) -> list[Callback | dict]:
    """A phase's callbacks: the recipe's (fresh, as in each Keras `fit`), schedule, observers.

    The best-weights keeper goes first, to copy each epoch's own weights before
    early stopping may restore others.
    """
    scheduler = [LearningRateScheduler(phase.schedule)] if phase.schedule is not None else []
    return keeper_first([*recipe.train.callbacks, *scheduler, *observers])


def _final_metrics(
    splits: DatasetSplits, fit: FitResult, evaluate: Callable[[str, Split], dict[str, float]]
) -> dict[str, float]:
    """Evaluate the final weights on every split; a run that did not finish reports its history.

    Args:
        splits: The run's data.
        fit: How training went.
        evaluate: The final weights' loss and metrics on a split, given its name
            (`train`, `val` or `test`) and the split.
    """
    if fit.status in ("completed", "stopped_early"):
        named = {"train": splits.train, "val": splits.val, "test": splits.test}
        metrics: dict[str, float] = {}
        for prefix, split in named.items():
            if split is not None:
                scores = evaluate(prefix, split)
                metrics.update({f"{prefix}_{key}": value for key, value in scores.items()})
        return metrics
    last = {key: values[-1] for key, values in fit.history.items() if values}
    return {
        (key if key.startswith("val_") else f"train_{key}"): value
        for key, value in last.items()
        if key not in ("lr", "time_s")
    }


def run_result(
    recipe: Recipe,
    model: torch.nn.Module,
    device: torch.device,
    splits: DatasetSplits,
    fit: FitResult,
    evaluate: Callable[[str, Split], dict[str, float]],
) -> dict[str, Any]:
    """The content of a run's `result.json`.

    Args:
        recipe: The run's recipe.
        model: The trained model.
        device: Where it trained.
        splits: The run's data.
        fit: How training went.
        evaluate: The final weights' scores on a split, see `_final_metrics`.
    """
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters()) + sum(
        b.numel() for b in model.buffers() if b.is_floating_point()
    )
    metrics = _final_metrics(splits, fit, evaluate)
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
        "cached_frozen_layers": fit.cached_layers,
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
        "device": str(device),
        "precision": recipe.train.precision,
    }
