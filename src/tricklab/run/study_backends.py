"""Where a study's runs train: a pool of local worker processes, or Ray tasks.

Each backend takes jobs (a planned run, or several seeds of one recipe to
train as one batched model; the study directory; whether to resume, whether
to probe it) and yields each run's outcome as it finishes: its `result.json`
content, or the error it raised. Retrying and recording are the driver's
(`tricklab.run.study`), the same for both backends.

A job that the machine refused (disk full, read-only, out of memory) raises a
`SystemRefusedError` naming the path and the cause, whatever layer hit it
first (torch reports a full disk as a `RuntimeError` raised while handling the
`OSError`), so the driver can tell it from a crash of the run. `stop()`
interrupts the runs under way as a Ctrl-C in a terminal would, for a driver
that alone was stopped (`kill PID`, a scheduler's SIGTERM).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import get_context
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tricklab.errors import (
    SystemRefusedError,
    UserInputError,
    is_environment_failure,
    system_error_line,
)
from tricklab.recipe.study import PlannedRun

if TYPE_CHECKING:
    from tricklab.data import DatasetSplits
    from tricklab.recipe import Recipe
    from tricklab.run.mlflow_tracking import MlflowTarget
    from tricklab.run.tensorboard_runs import StudyHParams

PRETRAINED = "pretrained"
"""Folder of a study where the recipes its runs reuse (`model.reuse.from`) are trained."""

_splits_cache: dict[str, Any] = {}
CACHED_DATASETS = 2
_cache_study: str | None = None
"""The study whose datasets `_splits_cache` holds: a process that trains for another
(a notebook's second study, a reused Ray worker) loads its data again, the files
having perhaps changed since."""


def execute_run(
    study_dir: str, run_dir: str, recipe: dict[str, Any], resume: bool, doctor: bool = False,
    mlflow: MlflowTarget | None = None, tensorboard: bool = True,
    hparams: dict[str, Any] | None = None,
) -> dict:
    """Train one run of a study in this process and return its `result.json` content.

    Runs in a worker: one torch thread (a study's parallelism is its processes),
    and the dataset loaded once per worker for all the runs it trains. With
    `doctor`, the run is probed and leaves a `doctor.json` (see `train --doctor`);
    with `mlflow`, it is logged there (a run nested in the study's). Its TensorBoard
    events (unless `tensorboard` is false) hold `hparams` as its HParams session.
    """
    import torch

    from tricklab.recipe import recipe_from_dict
    from tricklab.run.runner import train_recipe

    torch.set_num_threads(1)
    resolved = recipe_from_dict(recipe, run_dir)
    outcome = train_recipe(
        resolved, out=Path(study_dir) / run_dir, resume=resume, overwrite=not resume,
        progress="none", splits=_cached_splits(resolved), doctor=doctor,
        pretrained=Path(study_dir) / PRETRAINED, mlflow=mlflow, tensorboard=tensorboard,
        hparams=hparams,
    )
    return outcome.result


def execute_seed_group(
    study_dir: str, run_dirs: list[str], recipes: list[dict[str, Any]],
    mlflow: list[MlflowTarget | None] | None = None, tensorboard: bool = True,
    hparams: list[dict[str, Any]] | None = None,
) -> list[dict]:
    """Train seeds of one recipe as one batched model in this process; return each `result.json`.

    Runs in a worker, as `execute_run` does (one torch thread, the cached
    dataset); see `tricklab.run.seed_group.train_seed_group`. Earlier leftovers in
    the run directories are replaced: a group has no checkpoints to resume from.
    With `mlflow` (a target per seed), each seed is logged once the group is done;
    `tensorboard` and `hparams` (one per seed) as `train_seed_group` takes them.
    """
    import torch

    from tricklab.recipe import recipe_from_dict
    from tricklab.run.seed_group import train_seed_group

    torch.set_num_threads(1)
    resolved = [recipe_from_dict(recipe, folder)
                for recipe, folder in zip(recipes, run_dirs, strict=True)]
    outcomes = train_seed_group(
        resolved, [Path(study_dir) / folder for folder in run_dirs], overwrite=True,
        splits=_cached_splits(resolved[0]), tensorboard=tensorboard, hparams=hparams,
    )
    for target, recipe, outcome in zip(mlflow or [], resolved, outcomes, strict=False):
        if target is not None:
            from tricklab.run.mlflow_tracking import log_finished_run

            log_finished_run(target, recipe.to_dict(), outcome.result, outcome.run_dir)
    return [outcome.result for outcome in outcomes]


def execute_job(
    runs: tuple[PlannedRun, ...], study_dir: str, resume: bool, doctor: bool,
    mlflow: MlflowTarget | None = None, tensorboard: StudyHParams | None = None,
) -> list[dict]:
    """Train a job's runs in this process: one on its own, several as batched seeds.

    With `mlflow` (the study's parent run), each run is logged as a run nested in it.
    With `tensorboard` (the study's hyperparameters), each run writes TensorBoard
    events with its HParams session; `None` writes none (`--no-tensorboard`).

    Returns:
        Each run's `result.json` content, in order.

    Raises:
        SystemRefusedError: The machine refused (see `refusal`); the message names
            the path, or the (first) run's folder where the error names none.
    """
    from tricklab.run.mlflow_tracking import nested_target

    hparams = None if tensorboard is None else [tensorboard.of_run(run) for run in runs]
    try:
        if len(runs) == 1:
            return [execute_run(study_dir, runs[0].run_dir, runs[0].recipe, resume, doctor,
                                nested_target(mlflow, runs[0]), tensorboard is not None,
                                None if hparams is None else hparams[0])]
        return execute_seed_group(study_dir, [run.run_dir for run in runs],
                                  [run.recipe for run in runs],
                                  [nested_target(mlflow, run) for run in runs],
                                  tensorboard is not None, hparams)
    except Exception as error:
        refused = refusal(error, Path(study_dir) / runs[0].run_dir)
        if refused is None or refused is error:
            raise
        raise refused from error


def refusal(error: BaseException, where: Path | None = None) -> SystemRefusedError | None:
    """The machine's refusal behind `error` as a `SystemRefusedError`; `None` for other errors.

    Looks through the errors `error` was raised from or while handling: torch,
    for one, reports a full disk as a `RuntimeError` raised while handling the
    `OSError`. The result pickles whole (a worker sends it to its driver).

    Args:
        error: What a job raised.
        where: The path to name when the error names none. Defaults to `None`.
    """
    seen: set[int] = set()
    cause: BaseException | None = error
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, SystemRefusedError):
            return cause
        if is_environment_failure(cause):
            line = system_error_line(cause)
            named = isinstance(cause, OSError) and cause.filename is not None
            return SystemRefusedError(line if named or where is None else f"{where}: {line}")
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return None


def plan_seed_groups(runs: list[PlannedRun], batch_seeds: bool | None) -> list[list[str]]:
    """Which runs to train as batched seeds: groups of two or more run ids.

    Runs of one variant whose recipes differ only in name and seed
    (`seed_group_key`) form a group when their recipe is `batchable` and, with
    `batch_seeds` left `None`, when it trains on a GPU (`batch_seeds_by_default`).
    Called in a worker: it builds models and asks CUDA for its devices, which
    the driver must not do before it forks (or forks again) its workers.

    Args:
        runs: Runs to be trained from scratch.
        batch_seeds: `True` batch whatever can be, `None` decide by the device.
    """
    import torch

    from tricklab.recipe import recipe_from_dict
    from tricklab.run.batched_recipes import batch_seeds_by_default, batchable, seed_group_key
    from tricklab.run.runner import training_device

    torch.set_num_threads(1)
    candidates: dict[tuple[str, str], list[PlannedRun]] = {}
    for run in runs:
        key = (run.variant, seed_group_key(recipe_from_dict(run.recipe)))
        candidates.setdefault(key, []).append(run)
    groups = []
    for members in candidates.values():
        if len(members) < 2:
            continue
        recipe = recipe_from_dict(members[0].recipe)
        try:
            if batch_seeds is None and not batch_seeds_by_default(training_device(recipe)):
                continue
        except UserInputError:  # no device to train on: its separate runs say so
            continue
        if batchable(recipe)[0]:
            groups.append([member.run_id for member in members])
    return groups


def _cached_splits(recipe: Recipe) -> DatasetSplits:
    """The resolved recipe's dataset, loaded once per process for the study's runs that use it."""
    from tricklab.run.runner import load_data

    key = _data_key(recipe.data)
    if key not in _splits_cache:
        _remember_splits(key, load_data(recipe))
    return _splits_cache[key]


def preload(runs: Iterator[PlannedRun] | Any, source: str) -> None:
    """Load the runs' datasets in the driver (when few), for the forked workers to share.

    Each run's model input is checked against its samples on the way, so that a
    variant whose `model.input_shape` cannot read them is refused before
    anything trains. What an earlier study left in this process is dropped
    first: its files may have changed since.

    Args:
        runs: The study's planned runs.
        source: The study file, for messages.

    Raises:
        UserInputError: Data that cannot be loaded, or `source: variants.NAME:
            model.input_shape: ...` for a variant whose inputs do not fit.
    """
    from tricklab.recipe import recipe_from_dict
    from tricklab.run.runner import load_recipe_dataset, shaped_for_model

    _splits_cache.clear()
    keyed = [(_data_key(run.recipe["data"]), run) for run in runs]
    if len({key for key, _ in keyed}) > CACHED_DATASETS:
        return
    for key, run in keyed:
        recipe = recipe_from_dict(run.recipe)
        if key not in _splits_cache:
            _remember_splits(key, load_recipe_dataset(recipe))
        try:
            shaped_for_model(_splits_cache[key], recipe)
        except UserInputError as error:
            raise UserInputError(f"{source}: variants.{run.variant}: {error}") from None


def execute_study_job(study: str, *job: Any) -> list[dict]:
    """`execute_job(*job)` for the study `study` (a token of one driver's study).

    A worker kept from another study (Ray reuses its workers within a driver)
    forgets that study's datasets first.
    """
    global _cache_study
    if study != _cache_study:
        _splits_cache.clear()
        _cache_study = study
    return execute_job(*job)


def _data_key(data: dict[str, Any]) -> str:
    """The key of a recipe's `data:` section in `_splits_cache`: runs sharing it share the data."""
    return json.dumps(data, sort_keys=True)


def _remember_splits(key: str, splits: Any) -> None:
    # A few datasets at most (a study mixing /255 and standardized inputs has two):
    # enough to avoid reloading between runs, bounded so a worker's memory is too.
    while len(_splits_cache) >= CACHED_DATASETS:
        del _splits_cache[next(iter(_splits_cache))]
    _splits_cache[key] = splits


_interrupted = False
_in_job = False


def _on_interrupt(signum: int, frame: Any) -> None:
    # Between jobs a worker waits on its pool's queue, where a KeyboardInterrupt would
    # kill it mid-protocol with a traceback on the terminal. It remembers the Ctrl-C
    # instead and starts no further job; within a job the first Ctrl-C interrupts
    # training as usual (a checkpoint, status `interrupted`). A later one (a second
    # Ctrl-C, or the driver's SIGINT after the terminal's) is only remembered: raised
    # in the middle of saving the checkpoint, it would lose it.
    global _interrupted
    first = not _interrupted
    _interrupted = True
    if _in_job and first:
        raise KeyboardInterrupt


def init_worker() -> None:
    """Make a pool's worker quiet on Ctrl-C between jobs and end with its driver.

    On Linux the kernel kills the worker when its driver dies, so a killed
    study leaves no orphan training. Jobs go through `call_interruptibly`.
    """
    signal.signal(signal.SIGINT, _on_interrupt)
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


def call_interruptibly(function: Callable[..., Any], *args: Any) -> Any:
    """Call `function(*args)` in a worker with Ctrl-C raising `KeyboardInterrupt`.

    Raises:
        KeyboardInterrupt: At once when a Ctrl-C reached the worker before the
            call: the study is stopping, and its remaining runs wait for the next
            command.
        SystemRefusedError: The machine refused what `function` asked (see `refusal`).
    """
    global _in_job
    _in_job = True  # before the check: a Ctrl-C landing in between still raises
    try:
        if _interrupted:
            raise KeyboardInterrupt
        return function(*args)
    except Exception as error:
        refused = refusal(error)
        if refused is None or refused is error:
            raise
        raise refused from error
    finally:
        _in_job = False


def interrupt_workers(pool: ProcessPoolExecutor) -> None:
    """Send SIGINT to every worker process of `pool`, as a Ctrl-C in a terminal does.

    For a driver stopped on its own (`kill PID`, a scheduler's SIGTERM): its
    workers' runs then stop at their next batch, keep a checkpoint and record
    `interrupted`, instead of training to the end while the driver waits.
    """
    # The executor keeps its processes in `_processes` (pid -> process) in every
    # Python it supports; it has no public way to signal them.
    processes = dict(getattr(pool, "_processes", None) or {})
    for pid in processes:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGINT)


Outcome = tuple[PlannedRun, dict[str, Any] | None, BaseException | None]
Job = tuple[tuple[PlannedRun, ...], str, bool, bool, "MlflowTarget | None", "StudyHParams | None"]
"""Runs to train: one planned run, or several seeds to train batched (see
`execute_job`); the study directory; resume?; doctor?; the study's MLflow run, or `None`;
the study's hyperparameters for TensorBoard, or `None` (no event files)."""


class LocalBackend:
    """A pool of worker processes, one torch thread each.

    Args:
        workers: Processes, all started at once (the driver sizes them to the
            runs it has to do); at most one run per process at a time.
    """

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._running: dict[Future, tuple[PlannedRun, ...]] = {}
        self._pool = self._new_pool()

    def _new_pool(self) -> ProcessPoolExecutor:
        # On Linux the workers are forks of the driver, made here before it opens the
        # store or starts a display thread: they inherit torch and tricklab already
        # imported (seconds per worker otherwise) and the preloaded dataset, shared
        # copy-on-write. Elsewhere fork is unsafe or missing, so they are spawned.
        method = "fork" if sys.platform.startswith("linux") else "spawn"
        pool = ProcessPoolExecutor(
            self.workers, mp_context=get_context(method), initializer=init_worker
        )
        for future in [pool.submit(int) for _ in range(self.workers)]:
            future.result()  # start every worker now, while the driver is single-threaded
        return pool

    def run(self, jobs: Iterator[Job]) -> Iterator[Outcome]:
        """Run jobs keeping every worker busy; yield each run's outcome.

        Raises:
            KeyboardInterrupt: A job was interrupted in its worker (a Ctrl-C): the
                study stops; `stop()` gathers the jobs still running.
        """
        running = self._running
        # Jobs are drawn only when a worker is free, so a run is marked started when it starts.
        while True:
            while len(running) < self.workers and (job := next(jobs, None)) is not None:
                running[self._pool.submit(call_interruptibly, execute_job, *job)] = job[0]
            if not running:
                return
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                runs = running.pop(future)
                try:
                    results = future.result()
                except BrokenProcessPool as error:
                    self._pool.shutdown(wait=False, cancel_futures=True)
                    self._pool = self._new_pool()
                    yield from ((planned, None, error) for planned in runs)
                except Exception as error:  # the runs' own crash: the driver records it
                    yield from ((planned, None, error) for planned in runs)
                else:
                    yield from ((planned, result, None)
                                for planned, result in zip(runs, results, strict=True))

    def stop(self) -> Iterator[Outcome]:
        """Interrupt the jobs under way and yield each run's outcome once its job has stopped.

        Every worker gets a SIGINT, as from a Ctrl-C in a terminal (a worker that
        had one already ignores it): a run stops at its next batch and returns
        its result (`interrupted`, with its checkpoint); a job that had not begun
        raises `KeyboardInterrupt`, yielded as its error.
        """
        interrupt_workers(self._pool)
        while self._running:
            done, _ = wait(self._running, return_when=FIRST_COMPLETED)
            for future in done:
                runs = self._running.pop(future)
                try:
                    results = future.result()
                except BaseException as error:  # a job's KeyboardInterrupt included
                    yield from ((planned, None, error) for planned in runs)
                else:
                    yield from ((planned, result, None)
                                for planned, result in zip(runs, results, strict=True))

    def call(self, function: Callable[..., Any], *args: Any) -> Any:
        """Call `function(*args)` in a worker and return its value (or raise its error)."""
        try:
            return self._pool.submit(call_interruptibly, function, *args).result()
        except BrokenProcessPool:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = self._new_pool()
            raise

    def close(self) -> None:
        """Wait for the running runs (an interrupted one checkpoints first), drop the rest."""
        self._pool.shutdown(wait=True, cancel_futures=True)
        _splits_cache.clear()  # the workers' shared copy: not kept past the study


class RayBackend:
    """Each run a Ray task (one CPU), on a local Ray or the cluster at `address`.

    Ray's retries and tricklab's count differently, so Ray retries nothing:
    the driver retries a crashed run as the local backend does.

    Args:
        workers: CPUs of a local Ray started here (ignored with `address`).
        address: A running cluster, e.g. `127.0.0.1:6379`, or `None`.
    """

    def __init__(self, workers: int, address: str | None) -> None:
        try:
            import ray
        except ImportError:
            raise UserInputError(
                "--backend ray: Ray is not installed; pip install 'tricklab[ray]'"
            ) from None
        self._ray = ray
        if not ray.is_initialized():
            options: dict[str, Any] = {"address": address} if address else {"num_cpus": workers}
            try:
                ray.init(**options, include_dashboard=False, log_to_driver=False,
                         logging_level="ERROR")
            except ConnectionError as error:
                raise UserInputError(f"--address: cannot reach a Ray cluster at {address} "
                                     f"({error})") from None
        self._task = ray.remote(num_cpus=1, max_retries=0)(execute_study_job)
        self._study = uuid.uuid4().hex
        self.workers = max(1, int(ray.cluster_resources().get("CPU", workers)))
        self._running: dict[Any, tuple[PlannedRun, ...]] = {}

    def run(self, jobs: Iterator[Job]) -> Iterator[Outcome]:
        """Submit every job as a task; yield each run's outcome as its task finishes."""
        references = self._running
        references.update({self._task.remote(self._study, *job): job[0] for job in jobs})
        while references:
            done, _ = self._ray.wait(list(references), num_returns=1)
            runs = references.pop(done[0])
            try:
                results = self._ray.get(done[0])
            except Exception as error:
                cause = getattr(error, "cause", None)
                error = cause if isinstance(cause, BaseException) else error
                yield from ((planned, None, error) for planned in runs)
            else:
                yield from ((planned, result, None)
                            for planned, result in zip(runs, results, strict=True))

    def call(self, function: Callable[..., Any], *args: Any) -> Any:
        """Call `function(*args)` as a task and return its value (or raise its error)."""
        task = self._ray.remote(num_cpus=1, max_retries=0)(function)
        return self._ray.get(task.remote(*args))

    def stop(self) -> Iterator[Outcome]:
        """Cancel the tasks under way (`ray.cancel`: a `KeyboardInterrupt` in each); yield nothing.

        The driver does not wait for them: their runs stay `running` in the store,
        and the next command resumes them from their checkpoints.
        """
        for reference in self._running:
            with contextlib.suppress(Exception):
                self._ray.cancel(reference)
        self._running.clear()
        return iter(())

    def close(self) -> None:
        """Leave the cluster running; Ray tears a local one down when the driver exits."""
