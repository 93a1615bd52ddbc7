"""MLflow's side of tracking: the calls that log a run, in this process or in one of its own.

`MlflowRun` logs one run (params, per-epoch metrics, final metrics, artifacts,
tags; see `tricklab.run.mlflow_tracking` for what), warning once when MLflow
refuses a call and sending nothing more after it. A study's driver and its
workers use it in their own process, where MLflow's import and the set-up of
its store (seconds of Python) are paid once for many runs.

`tricklab train --mlflow` starts `LoggerProcess` before PyTorch is imported:
a process of its own (`python -m tricklab.run.mlflow_client URI`) imports
MLflow while the command imports PyTorch and loads the data, then logs as the
run tells it over a pipe, one JSON line per command. Training never waits for
it before the end, and the two never share an interpreter lock (a thread
importing MLflow beside a training loop slows every step of it).

Nothing here imports PyTorch.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from tricklab.run.mlflow_uri import INSTALL, warn

if TYPE_CHECKING:
    from tricklab.recipe.study import PlannedRun

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


class MlflowRun:
    """One MLflow run, logged from this process: created, fed epochs, ended with the results.

    The first call MLflow refuses is reported once (`on_failure`) and nothing
    more is sent.

    Args:
        target: Where to log, and as what.
        params: What to log as params (a resolved recipe, a study's spec), as plain data.
        folder: The run (or study) directory: it names the run unless the target
            does, and holds the artifacts.
        on_failure: Told, once, the line saying what MLflow refused. Defaults to
            `None` (a warning, `mlflow: ...`).
    """

    def __init__(self, target: MlflowTarget, params: dict[str, Any], folder: Path,
                 on_failure: Callable[[str], None] | None = None) -> None:
        self.target = target
        self.params = params
        self.folder = Path(folder)
        self.run_id: str | None = None
        self.experiment_id: str | None = None
        self._client: Any = None
        self._failed = False
        self._ended = False
        self._logged: set[int] = set()
        self._on_failure = on_failure or warn

    def _fail(self, error: BaseException) -> None:
        if not self._failed:
            self._failed = True
            self._on_failure(failure_line(error, self.target.uri))

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
            self._fail(error)
            return False
        return True

    @property
    def client(self) -> Any:
        """The run's `MlflowClient` (once started)."""
        return self._client

    def start(self, start_ms: int | None = None, resume: str | None = None) -> None:
        """Create the run with its params and tags; once (later calls do nothing).

        Args:
            start_ms: Its start, in ms since the epoch. Defaults to `None` (now).
            resume: The id of a run to carry on instead (a study's earlier command):
                it is `RUNNING` again, and given the params it lacks (MLflow keeps a
                param's first value). A new run is created when that one is gone
                or deleted. Defaults to `None`.
        """
        if self.run_id is None:
            self.call(self._create, start_ms, resume)

    def _create(self, start_ms: int | None, resume: str | None = None) -> None:
        from mlflow.tracking import MlflowClient

        client = MlflowClient(self.target.uri)
        if resume is not None and self._reopen(client, resume):
            return
        experiment = self.target.experiment_id or experiment_id(client)
        tags = {"run_dir": str(self.folder.resolve()), "status": "running",
                **dict(self.target.tags)}
        if self.target.parent_run_id is not None:
            tags["mlflow.parentRunId"] = self.target.parent_run_id
        run = client.create_run(experiment, start_time=start_ms, tags=tags,
                                run_name=self.target.run_name or self.folder.name)
        self._client, self.run_id, self.experiment_id = client, run.info.run_id, experiment
        self._log_params()

    def _reopen(self, client: Any, run_id: str) -> bool:
        """Carry on the run `run_id` if it is still there; return whether it was."""
        from mlflow.exceptions import MlflowException

        try:
            earlier = client.get_run(run_id)
        except MlflowException:  # deleted for good, or another store under the same URI
            return False
        if earlier.info.lifecycle_stage != "active":  # in the trash
            return False
        client.update_run(run_id, status="RUNNING")
        client.set_tag(run_id, "status", "running")
        self._client, self.run_id, self.experiment_id = client, run_id, earlier.info.experiment_id
        self._log_params(exclude=set(earlier.data.params))
        return True

    def _log_params(self, exclude: set[str] = frozenset()) -> None:
        from mlflow.entities import Param

        params = [Param(key, value) for key, value in flat_params(self.params).items()
                  if key not in exclude]
        for first in range(0, len(params), _PARAMS_PER_BATCH):
            self._client.log_batch(self.run_id, params=params[first:first + _PARAMS_PER_BATCH],
                                   synchronous=True)

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
        if self.run_id is None or self._ended:
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
        if self.run_id is None or self._ended:
            return
        self._ended = True
        try:
            with mlflow_calls():
                self._client.set_tag(self.run_id, "status", status)
                self._client.set_terminated(self.run_id, _STATUS.get(status, "FINISHED"))
        except Exception as error:
            self._fail(error)
            return
        if self.target.parent_run_id is None and not self._failed:
            print(f"mlflow: run {self.run_id} in experiment {self.experiment_id} of "
                  f"{self.target.uri}", file=sys.stderr)


def recipe_target(mlflow: str | MlflowTarget, recipe: dict[str, Any]) -> MlflowTarget:
    """Where a recipe's run is logged, tagged with the recipe's name and seed.

    Args:
        mlflow: A tracking URI, or a target (a study's nested run).
        recipe: The resolved recipe, as plain data.
    """
    target = MlflowTarget(mlflow) if isinstance(mlflow, str) else mlflow
    tags = (("recipe", str(recipe.get("name", ""))), ("seed", str(recipe.get("seed", ""))))
    return replace(target, tags=(*tags, *target.tags))


def log_finished_run(target: MlflowTarget, recipe: dict[str, Any], result: dict[str, Any],
                     run_dir: Path) -> None:
    """Log a run that trained without tracking (a batched seed), whole, as it happened.

    Args:
        target: Where to log, and as what.
        recipe: The resolved recipe, as plain data.
        result: The content of its `result.json`.
        run_dir: The run directory.
    """
    run = MlflowRun(recipe_target(target, recipe), recipe, run_dir)
    start_ms = int((time.time() - float(result.get("wall_time_s") or 0.0)) * 1000)
    run.start(start_ms)
    run.finish(result, start_ms)


def study_run(mlflow: str | None, name: str, spec: dict[str, Any], study_dir: Path,
              resume: str | None = None) -> MlflowRun | None:
    """Start a study's parent run (params: its spec; tag `study`); `None` without a URI.

    Started in the study's driver, which passes `nested_target` of each run to
    the worker that trains it.

    Args:
        mlflow: The tracking URI, or `None`.
        name: The study's name.
        spec: The resolved study spec, logged as params.
        study_dir: The study directory.
        resume: The parent run of the study's earlier command at this URI, carried
            on where it still exists (see `MlflowRun.start`). Defaults to `None`.
    """
    if mlflow is None:
        return None
    parent = MlflowRun(MlflowTarget(mlflow, tags=(("study", name),)), spec, study_dir)
    parent.start(resume=resume)
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


_DATABASE_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql")


def warm_up(uri: str) -> None:
    """Do the slow part of a first call to `uri`'s store (seconds of imports); write nothing.

    MLflow and its store's code are imported, and the store is set up
    (`MlflowClient` keeps it for later clients) unless that would make a new
    SQLite file: a database is made by the first run, so a command refused
    later for its input leaves no new store behind.
    """
    from mlflow.tracking import MlflowClient

    if uri.split(":", 1)[0].split("+", 1)[0] in _DATABASE_SCHEMES:
        import mlflow.store.tracking.sqlalchemy_store  # noqa: F401
    new_file = uri.startswith("sqlite:") and not (
        uri.startswith("sqlite:///") and Path(uri.removeprefix("sqlite:///")).is_file())
    if not new_file:
        MlflowClient(uri)


class LoggerProcess:
    """A run logged by a process of its own, which imports MLflow while this one starts.

    Commands go down a pipe as JSON lines and return at once; each is answered
    with a line carrying what MLflow refused (`warnings`) and the run's id.
    The answers are read when training has a moment (`log_epochs`) and awaited
    only at the end (`finish`, `end`). The process ignores Ctrl-C (this one
    ends the run, as interrupted) and, left without a word (this process
    killed), ends the run it logs as interrupted.

    Args:
        uri: The tracking URI.
    """

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self.run_id: str | None = None
        self._failed = False
        self._ended = False
        self._pending = 0
        self._logged: set[int] = set()
        self._answers: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._process = subprocess.Popen(
            [sys.executable, "-m", __name__, uri], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, text=True, encoding="utf-8",
        )
        # A reader that waits on the pipe holds no lock training needs.
        threading.Thread(target=self._read, args=(self._process.stdout,), daemon=True,
                         name="mlflow-answers").start()

    def _read(self, answers: TextIO) -> None:
        for line in answers:
            self._answers.put(json.loads(line))
        self._answers.put(None)

    def _fail(self, line: str) -> None:
        if not self._failed:
            self._failed = True
            warn(line)

    def _send(self, command: dict[str, Any], wait: bool) -> None:
        if self._failed:
            return
        assert self._process.stdin is not None
        try:
            self._process.stdin.write(json.dumps(command) + "\n")
            self._process.stdin.flush()
        except OSError as error:  # the process is gone
            self._fail(failure_line(error, self.uri))
            return
        self._pending += 1
        self._receive(wait)

    def _receive(self, wait: bool) -> None:
        """Take the answers that arrived (all of them, with `wait`); warn about a refusal."""
        while self._pending:
            try:
                answer = self._answers.get(block=wait)
            except queue.Empty:
                return
            if answer is None:
                self._pending = 0
                self._fail(f"cannot log to {self.uri} (its logging process ended); the run "
                           "goes on without MLflow")
                return
            self._pending -= 1
            self.run_id = answer["run_id"] or self.run_id
            for line in answer["warnings"]:
                self._fail(line)

    def open(self, target: MlflowTarget, params: dict[str, Any], folder: Path,
             start_ms: int | None = None) -> None:
        """Create the run (see `MlflowRun`); returns without waiting for it."""
        self._send({"op": "start", "target": dataclasses.asdict(target), "params": params,
                    "folder": str(Path(folder).resolve()), "start_ms": start_ms}, wait=False)

    def log_epochs(self, history: dict[str, list[float]], epochs: list[int]) -> None:
        """Log those of `epochs` (0-based) not logged yet; returns without waiting."""
        epochs = [epoch for epoch in epochs if epoch not in self._logged]
        if epochs:
            self._logged.update(epochs)
            self._send({"op": "epochs", "history": history, "epochs": epochs}, wait=False)
        else:
            self._receive(wait=False)

    def finish(self, result: dict[str, Any]) -> None:
        """Log the results and end the run (see `MlflowRun.finish`); wait until it is done."""
        self._ended = True
        self._send({"op": "finish", "result": result}, wait=True)
        self.close()

    def end(self, status: str) -> None:
        """End the run with `status` (see `MlflowRun.end`); wait until it is done."""
        if not self._ended:
            self._ended = True
            self._send({"op": "end", "status": status}, wait=True)
        self.close()

    def close(self) -> None:
        """Let the process go: it ends once its pipe closes, with nothing left to log.

        Not waited for: the run is logged already, and its interpreter's exit
        would only delay this command's.
        """
        with contextlib.suppress(OSError):
            if self._process.stdin is not None:
                self._process.stdin.close()


_started: dict[str, LoggerProcess] = {}


def start_logger(uri: str) -> None:
    """Start the process that will log this command's run to `uri` (`LoggerProcess`).

    Called before PyTorch is imported, so that MLflow's import overlaps it;
    `take_logger` hands the process to the run.
    """
    if uri not in _started:
        _started[uri] = LoggerProcess(uri)


def take_logger(uri: str) -> LoggerProcess | None:
    """The process `start_logger` started for `uri`, once; `None` if there is none."""
    return _started.pop(uri, None)


def serve(uri: str, commands: TextIO, answers: TextIO) -> None:
    """The logging process: run `LoggerProcess`'s commands with an `MlflowRun`, answer each.

    Args:
        uri: The tracking URI.
        commands: Where the commands come from, one JSON line each.
        answers: Where the answers go, one JSON line each.
    """
    refused: list[str] = []
    # An import that fails is told by the first call.
    with contextlib.suppress(Exception), mlflow_calls():
        warm_up(uri)
    run: MlflowRun | None = None
    for line in commands:
        command = json.loads(line)
        if command["op"] == "start":
            fields = command["target"]
            target = MlflowTarget(**{**fields, "tags": tuple(map(tuple, fields["tags"]))})
            run = MlflowRun(target, command["params"], Path(command["folder"]), refused.append)
            run.start(command["start_ms"])
        elif run is not None and command["op"] == "epochs":
            run.log_epochs(command["history"], command["epochs"])
        elif run is not None and command["op"] == "finish":
            run.finish(command["result"])
        elif run is not None and command["op"] == "end":
            run.end(command["status"])
        answers.write(json.dumps({"run_id": None if run is None else run.run_id,
                                  "warnings": refused}) + "\n")
        answers.flush()
        refused.clear()
    if run is not None:  # the run's process went without ending it: killed
        run.end("interrupted")


if __name__ == "__main__":
    # Ctrl-C reaches the whole process group: the run's own process ends the run as interrupted.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if hasattr(os, "nice"):
        # Training comes first: MLflow's import and its store's set-up take the cores'
        # idle moments (the command importing PyTorch, loading data) rather than
        # slowing the training steps; what it logs is awaited only at the end.
        os.nice(10)
    protocol = sys.stdout
    sys.stdout = sys.stderr  # anything printed goes to the terminal, never into the answers
    serve(sys.argv[1], sys.stdin, protocol)
