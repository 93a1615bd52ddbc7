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
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tricklab.errors import EXIT_INTERRUPTED, EXIT_TERMINATED
from tricklab.run.mlflow_uri import INSTALL, warn
from tricklab.train.callbacks import Callback

if TYPE_CHECKING:
    from tricklab.recipe.study import PlannedRun
    from tricklab.train import Trainer

PARAM_VALUE_LIMIT = 500
"""Characters kept of a param's value: older MLflow servers' limit (newer ones take 6000)."""

_PARAMS_PER_BATCH = 100
_METRICS_PER_BATCH = 1000
_KEY_LIMIT = 250
_SHORT_FAILURES = {
    # A server that is down answers in seconds: MLflow's defaults retry for minutes.
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
    # No pooled SQLite connections: a study's workers are forks of the driver that logged
    # its parent run, and a connection must never cross a fork.
    "MLFLOW_SQLALCHEMYSTORE_POOLCLASS": "NullPool",
}
_QUIET_LOGGERS = ("mlflow", "alembic")
"""Loggers whose INFO lines (database migrations, run links) would clutter the terminal."""

_STATUS = {"completed": "FINISHED", "stopped_early": "FINISHED", "diverged": "FAILED",
           "interrupted": "KILLED", "failed": "FAILED"}
"""MLflow's run status for each of tricklab's."""

_ARTIFACT_FILES = ("recipe.yaml", "result.json", "history.csv", "doctor.json")
_ARTIFACT_FOLDERS = ("plots", "model")


@dataclass(frozen=True)
class MlflowTarget:
    """Where a run is logged, and as what: plain strings, so it travels to a study's workers.

    Args:
        uri: The tracking URI, e.g. `sqlite:///mlflow.db` or `http://127.0.0.1:5000`.
        experiment_id: The experiment. Defaults to `None` (MLflow's, see the module).
        parent_run_id: The run this one is nested in. Defaults to `None`.
        run_name: The run's name. Defaults to `None` (the run directory's name).
        tags: `(name, value)` tags besides the run's own. Defaults to `()`.
    """

    uri: str
    experiment_id: str | None = None
    parent_run_id: str | None = None
    run_name: str | None = None
    tags: tuple[tuple[str, str], ...] = field(default=())


def failure_line(error: BaseException, uri: str) -> str:
    """What went wrong, in one line: the system's reason if any (`Connection refused`)."""
    if isinstance(error, ImportError):
        return f"MLflow cannot be imported ({error}); {INSTALL}"
    text = " ".join(str(error).split()) or type(error).__name__
    reason = re.search(r"\[Errno -?\d+\] ([^'\"()]+)", text)
    if reason is not None:
        text = reason.group(1).strip()
    elif len(text) > 200:
        text = text[:197] + "..."
    return f"cannot log to {uri} ({text}); the run goes on without MLflow"


@contextlib.contextmanager
def mlflow_calls() -> Iterator[None]:
    """Around tricklab's MLflow calls: short HTTP retries, no pooled connections, quiet logs.

    Each setting applies only where the environment does not set it already,
    and is taken back afterwards.
    """
    added = {name: value for name, value in _SHORT_FAILURES.items() if name not in os.environ}
    import mlflow  # noqa: F401  (its import sets its loggers' levels: they are set after it)

    loggers = [logging.getLogger(name) for name in _QUIET_LOGGERS]
    levels = [logger.level for logger in loggers]
    os.environ.update(added)
    for logger in loggers:
        logger.setLevel(max(logger.getEffectiveLevel(), logging.WARNING))
    try:
        yield
    finally:
        for name in added:
            os.environ.pop(name, None)
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def flat_params(value: Any, prefix: str = "") -> dict[str, str]:
    """A recipe (or any plain data) as MLflow params: dotted keys, text values.

    Dicts nest by key, lists holding dicts or lists by index
    (`model.layers.1.dense.units`); a list of plain values stays one value
    (`[28, 28]`). Strings are kept as they are, anything else is JSON
    (`0.001`, `true`, `null`, `{}`). Values are cut to `PARAM_VALUE_LIMIT`
    characters, keys to MLflow's 250, with any character MLflow refuses in a
    key replaced by `_`.

    Args:
        value: The data, e.g. `Recipe.to_dict()`.
        prefix: The key of `value` itself. Defaults to `""` (the top).
    """
    if isinstance(value, dict) and value:
        items: Any = value.items()
    elif isinstance(value, list) and any(isinstance(item, dict | list) for item in value):
        items = enumerate(value)
    else:
        text = value if isinstance(value, str) else json.dumps(value, default=str)
        if len(text) > PARAM_VALUE_LIMIT:
            text = text[:PARAM_VALUE_LIMIT - 3] + "..."
        key = re.sub(r"[^\w./\- ]", "_", prefix)[:_KEY_LIMIT] or "value"
        return {key: text}
    params: dict[str, str] = {}
    for key, item in items:
        params.update(flat_params(item, f"{prefix}.{key}" if prefix else str(key)))
    return params


def experiment_id(client: Any) -> str:
    """The experiment MLflow's own calls would log to, as its id.

    `MLFLOW_EXPERIMENT_ID`, else `MLFLOW_EXPERIMENT_NAME` (made when missing),
    else the `Default` experiment (id `0`).
    """
    chosen = os.environ.get("MLFLOW_EXPERIMENT_ID", "").strip()
    if chosen:
        return chosen
    name = os.environ.get("MLFLOW_EXPERIMENT_NAME", "").strip()
    if not name:
        return "0"
    experiment = client.get_experiment_by_name(name)
    return experiment.experiment_id if experiment is not None else client.create_experiment(name)


def epoch_metrics(
    history: dict[str, list[float]], epochs: list[int], start_ms: int | None = None
) -> list[Any]:
    """`history`'s values at `epochs` (0-based) as MLflow metrics, stepped by the 1-based epoch.

    Args:
        history: Per-epoch lists, as `result.json` holds them.
        epochs: The epochs to take.
        start_ms: The run's start (ms since the epoch): each epoch is then stamped
            with it plus the epoch times (`time_s`) up to its end, as it happened.
            Defaults to `None` (stamped now).
    """
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    times = history.get("time_s", [])
    metrics = []
    for epoch in epochs:
        stamp = now
        if start_ms is not None:
            stamp = start_ms + int(1000 * sum(t or 0.0 for t in times[:epoch + 1]))
        for key, values in history.items():
            if epoch < len(values) and isinstance(values[epoch], int | float):
                metrics.append(Metric(key, float(values[epoch]), stamp, epoch + 1))
    return metrics


class MlflowRun(Callback):
    """One MLflow run: started when training begins, fed each epoch, ended with the results.

    A trainer's callback that only observes (checkpoints do not hold it): the
    run is created in a thread as training begins (`start_in_background`), each
    epoch's values are logged as it ends, the rest by `finish`. The first call
    MLflow refuses warns once and nothing more is sent. Entered as a context
    manager around training, it ends a run that an error or an interruption cut
    short (`FAILED` or `KILLED`).

    Args:
        target: Where to log, and as what.
        params: What to log as params (a resolved recipe, a study's spec), as plain data.
        folder: The run (or study) directory: it names the run unless the target
            does, and holds the artifacts.
    """

    checkpointed = False

    def __init__(self, target: MlflowTarget, params: dict[str, Any], folder: Path) -> None:
        self.target = target
        self.params = params
        self.folder = Path(folder)
        self.run_id: str | None = None
        self.experiment_id: str | None = None
        self._client: Any = None
        self._failed = False
        self._ended = False
        self._logged: set[int] = set()
        self._starting: threading.Thread | None = None

    def call(self, function: Any, *args: Any) -> bool:
        """Call `function(*args)` unless MLflow refused before; warn once when it refuses now.

        Returns:
            Whether the call went through.
        """
        if self._failed:
            return False
        try:
            with mlflow_calls():
                function(*args)
        except Exception as error:  # tracking never stops training
            self._failed = True
            warn(failure_line(error, self.target.uri))
            return False
        return True

    @property
    def client(self) -> Any:
        """The run's `MlflowClient` (once started)."""
        return self._client

    def start(self, start_ms: int | None = None) -> None:
        """Create the run with its params and tags; once (later calls do nothing).

        Args:
            start_ms: Its start, in ms since the epoch. Defaults to `None` (now).
        """
        if self.run_id is None:
            self.call(self._create, start_ms)

    def _create(self, start_ms: int | None) -> None:
        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient

        client = MlflowClient(self.target.uri)
        experiment = self.target.experiment_id or experiment_id(client)
        tags = {"run_dir": str(self.folder.resolve()), "status": "running",
                **dict(self.target.tags)}
        if self.target.parent_run_id is not None:
            tags["mlflow.parentRunId"] = self.target.parent_run_id
        run = client.create_run(experiment, start_time=start_ms, tags=tags,
                                run_name=self.target.run_name or self.folder.name)
        self._client, self.run_id, self.experiment_id = client, run.info.run_id, experiment
        params = [Param(key, value) for key, value in flat_params(self.params).items()]
        for first in range(0, len(params), _PARAMS_PER_BATCH):
            client.log_batch(self.run_id, params=params[first:first + _PARAMS_PER_BATCH],
                             synchronous=True)

    def start_in_background(self) -> None:
        """Start creating the run in a thread of its own; once.

        Importing MLflow and setting up its store take seconds of Python: in a
        thread, they overlap the first epoch instead of adding to the run.
        Epochs that end before the run exists are logged at the next epoch's end.
        """
        if self._starting is None and self.run_id is None and not self._failed:
            self._starting = threading.Thread(
                target=self.start, args=(int(time.time() * 1000),), name="mlflow-start",
                daemon=True)
            self._starting.start()

    def ready(self, wait: bool = True) -> bool:
        """Whether the run exists; with `wait`, once the thread creating it is done."""
        if self._starting is not None:
            if not wait and self._starting.is_alive():
                return False
            self._starting.join()
            self._starting = None
        return self.run_id is not None

    def on_train_begin(self, trainer: Trainer) -> None:
        self.start_in_background()

    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: dict[str, float]) -> None:
        if self.ready(wait=False):
            self.log_epochs(trainer.history, list(range(epoch + 1)))

    def log_epochs(
        self, history: dict[str, list[float]], epochs: list[int], start_ms: int | None = None
    ) -> None:
        """Log those of `epochs` (0-based) not logged yet, all in one call (see `epoch_metrics`)."""
        epochs = [epoch for epoch in epochs if epoch not in self._logged]
        if epochs and self.run_id is not None:
            self._logged.update(epochs)
            self.call(lambda: self._log_metrics(epoch_metrics(history, epochs, start_ms)))

    def _log_metrics(self, metrics: list[Any]) -> None:
        for first in range(0, len(metrics), _METRICS_PER_BATCH):
            self._client.log_batch(self.run_id, metrics=metrics[first:first + _METRICS_PER_BATCH],
                                   synchronous=True)

    def finish(self, result: dict[str, Any], start_ms: int | None = None) -> None:
        """Log what the run left: the epochs not logged yet, final metrics, artifacts; end it.

        Args:
            result: The content of the run's `result.json`.
            start_ms: The run's start, to stamp the epochs logged here as they
                happened (see `epoch_metrics`). Defaults to `None` (stamped now).
        """
        if not self.ready() or self._ended:
            return
        history = result.get("history") or {}
        epochs = max((len(values) for values in history.values()), default=0)
        try:
            self.log_epochs(history, list(range(epochs)), start_ms)
            self.call(self._log_results, result)
        finally:  # a Ctrl-C while the artifacts upload still ends the run, as it ended
            self.end(str(result.get("status", "completed")))

    def _log_results(self, result: dict[str, Any]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        final = {f"final/{key}": value for key, value in (result.get("metrics") or {}).items()}
        for key in ("epochs_run", "best_epoch", "wall_time_s"):
            final[f"final/{key}"] = result.get(key)
        self._log_metrics([Metric(key, float(value), now, 0) for key, value in final.items()
                           if isinstance(value, int | float) and math.isfinite(value)])
        self.log_artifacts(_ARTIFACT_FILES, _ARTIFACT_FOLDERS)

    def log_artifacts(self, files: tuple[str, ...], folders: tuple[str, ...] = ()) -> None:
        """Log those of the folder's `files` and `folders` that exist, under their own names."""
        for name in files:
            if (self.folder / name).is_file():
                self._client.log_artifact(self.run_id, str(self.folder / name))
        for name in folders:
            if (self.folder / name).is_dir():
                self._client.log_artifacts(self.run_id, str(self.folder / name), name)

    def end(self, status: str) -> None:
        """Tag the run with tricklab's `status` and end it with MLflow's; once.

        Tried even after MLflow refused a call: a run that was created should
        not stay `RUNNING` where it can be ended. A run of its own (not nested)
        then says on stderr where it was logged.
        """
        if not self.ready() or self._ended:
            return
        self._ended = True
        try:
            with mlflow_calls():
                self._client.set_tag(self.run_id, "status", status)
                self._client.set_terminated(self.run_id, _STATUS.get(status, "FINISHED"))
        except Exception as error:
            if not self._failed:
                self._failed = True
                warn(failure_line(error, self.target.uri))
            return
        if self.target.parent_run_id is None and not self._failed:
            print(f"mlflow: run {self.run_id} in experiment {self.experiment_id} of "
                  f"{self.target.uri}", file=sys.stderr)

    def __enter__(self) -> MlflowRun:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: Any) -> None:
        if error is not None:
            interrupted = isinstance(error, KeyboardInterrupt) or getattr(
                error, "exit_code", None) in (EXIT_INTERRUPTED, EXIT_TERMINATED)
            self.end("interrupted" if interrupted else "failed")


def recipe_run(
    mlflow: str | MlflowTarget | None, recipe: dict[str, Any], run_dir: Path
) -> MlflowRun | None:
    """The MLflow run of a recipe's run, tagged with its recipe's name and seed; `None` without.

    Args:
        mlflow: A tracking URI, a target (a study's nested run), or `None` (not logged).
        recipe: The resolved recipe, as plain data.
        run_dir: The run directory.
    """
    if mlflow is None:
        return None
    target = MlflowTarget(mlflow) if isinstance(mlflow, str) else mlflow
    tags = (("recipe", str(recipe.get("name", ""))), ("seed", str(recipe.get("seed", ""))))
    return MlflowRun(replace(target, tags=(*tags, *target.tags)), recipe, run_dir)


def log_finished_run(target: MlflowTarget, recipe: dict[str, Any], result: dict[str, Any],
                     run_dir: Path) -> None:
    """Log a run that trained without tracking (a batched seed), whole, as it happened.

    Args:
        target: Where to log, and as what.
        recipe: The resolved recipe, as plain data.
        result: The content of its `result.json`.
        run_dir: The run directory.
    """
    run = recipe_run(target, recipe, run_dir)
    assert run is not None
    start_ms = int((time.time() - float(result.get("wall_time_s") or 0.0)) * 1000)
    run.start(start_ms)
    run.finish(result, start_ms)


def study_run(mlflow: str | None, name: str, spec: dict[str, Any], study_dir: Path
              ) -> MlflowRun | None:
    """Start a study's parent run (params: its spec; tag `study`); `None` without a URI.

    Started in the study's driver, which passes `nested_target` of each run to
    the worker that trains it.
    """
    if mlflow is None:
        return None
    parent = MlflowRun(MlflowTarget(mlflow, tags=(("study", name),)), spec, study_dir)
    parent.start()
    return parent


def children_target(parent: MlflowRun | None) -> MlflowTarget | None:
    """Where the runs of a study whose parent run is `parent` go; `None` if it could not be made.

    A parent that could not be made warned already: its runs then stay quiet.
    """
    if parent is None or parent.run_id is None:
        return None
    return replace(parent.target, experiment_id=parent.experiment_id, parent_run_id=parent.run_id)


def nested_target(study: MlflowTarget | None, planned: PlannedRun) -> MlflowTarget | None:
    """Where a study's run is logged: nested in the study's run; `None` when it is not tracked.

    The run is named by its id (`variant/seed-1`) and tagged with its variant
    and phase (`main` or `lr_search`).

    Args:
        study: The study's `children_target`.
        planned: The run.
    """
    if study is None:
        return None
    return replace(study, run_name=planned.run_id,
                   tags=(*study.tags, ("variant", planned.variant), ("phase", planned.phase)))


def finish_study(parent: MlflowRun | None, counts: dict[str, int], status: str) -> None:
    """End a study's parent run: its runs per status as metrics, its reports as artifacts.

    Args:
        parent: The parent run (`study_run`), or `None`.
        counts: The study's runs per status.
        status: `completed`, `interrupted` (Ctrl-C, SIGTERM) or `failed` (the machine refused).
    """
    if parent is None or parent.run_id is None:
        return

    def log() -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        parent.client.log_batch(parent.run_id, metrics=[
            Metric(f"runs/{name}", float(count), now, 0) for name, count in counts.items()
        ], synchronous=True)
        parent.log_artifacts(("report.html", "report.md"))

    parent.call(log)
    parent.end(status)
