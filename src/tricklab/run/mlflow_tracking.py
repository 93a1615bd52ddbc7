"""Runs logged to MLflow: the recipe as params, per-epoch and final metrics, artifacts, tags.

MLflow is optional (`pip install 'tricklab[mlflow]'`) and imported only when a
tracking URI is given: `--mlflow URI`, or the `MLFLOW_TRACKING_URI` environment
variable as MLflow itself reads it. A run's MLflow run holds:

- params: the resolved recipe flattened to dotted keys (`train.optimizer.name`),
  each value cut to `PARAM_VALUE_LIMIT` characters;
- metrics: every epoch's `history.csv` columns under the same names, with the
  epoch (1-based, as `history.csv` counts) as their step, logged as each epoch
  ends; the final metrics of `result.json` as `final/<name>`;
- artifacts: `recipe.yaml`, `result.json`, `history.csv`, `doctor.json`, the
  `plots/` and the `model/` folders, logged once at the end;
- tags: `seed`, `status` (the run's, as `result.json` says it), `recipe`,
  `run_dir`, and in a study `study`, `variant` and `phase`.

A study is a parent run with one nested run per run it trains (batched seeds
included, one nested run per seed). The experiment is MLflow's:
`MLFLOW_EXPERIMENT_ID` or `MLFLOW_EXPERIMENT_NAME` where set, else `Default`.

Tracking never stops training: the first call MLflow refuses (a server that is
down, an invalid URI, a store that cannot be written) is one warning line,
`mlflow: ...`, and the run goes on untracked. MLflow's HTTP retries are kept
short around tricklab's calls (unless the environment sets them), so a server
that is down costs seconds, not MLflow's default minutes.

Here is the trainer's side, `MlflowCallback`; MLflow's side, in this process
or in a logging process of its own, is `tricklab.run.mlflow_client`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tricklab.errors import EXIT_INTERRUPTED, EXIT_TERMINATED
from tricklab.run.mlflow_client import (
    LoggerProcess,
    MlflowRun,
    MlflowTarget,
    children_target,
    finish_study,
    log_finished_run,
    nested_target,
    recipe_target,
    study_run,
    take_logger,
)
from tricklab.train.callbacks import Callback

if TYPE_CHECKING:
    from tricklab.train import Trainer


class MlflowCallback(Callback):
    """A run's MLflow run, fed by its trainer: created as training begins, each epoch as it ends.

    A callback that only observes (checkpoints do not hold it). `finish` logs
    the results; entered as a context manager around training, it ends a run
    that an error or an interruption cut short (`FAILED` or `KILLED`).

    Args:
        log: Where the run is logged: an `MlflowRun` (in this process) or a
            `LoggerProcess` (in a process of its own).
        target: Where to log, and as what.
        params: The resolved recipe, as plain data.
        folder: The run directory.
    """

    checkpointed = False

    def __init__(self, log: MlflowRun | LoggerProcess, target: MlflowTarget,
                 params: dict[str, Any], folder: Path) -> None:
        self.log = log
        self.target = target
        self.params = params
        self.folder = Path(folder)
        self._started = False

    def on_train_begin(self, trainer: Trainer) -> None:
        if not self._started:  # once, though each phase of a run begins training anew
            self._started = True
            start_ms = int(time.time() * 1000)
            if isinstance(self.log, LoggerProcess):
                self.log.open(self.target, self.params, self.folder, start_ms)
            else:
                self.log.start(start_ms)

    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: dict[str, float]) -> None:
        # Epochs restored by --resume go with the first one trained: history holds them all.
        self.log.log_epochs(trainer.history, list(range(epoch + 1)))

    def finish(self, result: dict[str, Any]) -> None:
        """Log the run's results and files and end it (`MlflowRun.finish`).

        Args:
            result: The content of the run's `result.json`.
        """
        self.log.finish(result)

    def __enter__(self) -> MlflowCallback:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: Any) -> None:
        if error is not None:
            interrupted = isinstance(error, KeyboardInterrupt) or getattr(
                error, "exit_code", None) in (EXIT_INTERRUPTED, EXIT_TERMINATED)
            self.log.end("interrupted" if interrupted else "failed")
        elif isinstance(self.log, LoggerProcess) and not self._started:
            self.log.close()


def recipe_run(
    mlflow: str | MlflowTarget | None, recipe: dict[str, Any], run_dir: Path
) -> MlflowCallback | None:
    """The MLflow run of a recipe's run, tagged with its recipe's name and seed; `None` without.

    Logged by the process `tricklab.run.mlflow_client.start_logger` started for
    the URI if there is one (`tricklab train --mlflow`), else in this process.

    Args:
        mlflow: A tracking URI, a target (a study's nested run), or `None` (not logged).
        recipe: The resolved recipe, as plain data.
        run_dir: The run directory.
    """
    if mlflow is None:
        return None
    target = recipe_target(mlflow, recipe)
    log = take_logger(mlflow) if isinstance(mlflow, str) else None
    return MlflowCallback(log or MlflowRun(target, recipe, run_dir), target, recipe, run_dir)


__all__ = [
    "MlflowCallback", "MlflowRun", "MlflowTarget", "children_target", "finish_study",
    "log_finished_run", "nested_target", "recipe_run", "study_run",
]
