"""Where a study's runs train: a pool of local worker processes, or Ray tasks.

Each backend takes jobs (a planned run, the study directory, whether to
resume, whether to probe it) and yields each run's outcome as it finishes:
its `result.json` content, or the error it raised. Retrying and recording are
the driver's (`tricklab.run.study`), the same for both backends.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from tricklab.errors import UserInputError
from tricklab.recipe.study import PlannedRun

PRETRAINED = "pretrained"
"""Folder of a study where the recipes its runs reuse (`model.reuse.from`) are trained."""

_splits_cache: dict[str, Any] = {}
CACHED_DATASETS = 2


def execute_run(
    study_dir: str, run_dir: str, recipe: dict[str, Any], resume: bool, doctor: bool = False
) -> dict:
    """Train one run of a study in this process and return its `result.json` content.

    Runs in a worker: one torch thread (a study's parallelism is its processes),
    and the dataset loaded once per worker for all the runs it trains. With
    `doctor`, the run is probed and leaves a `doctor.json` (see `train --doctor`).
    """
    import torch

    from tricklab.recipe import recipe_from_dict
    from tricklab.run.runner import load_data, train_recipe

    torch.set_num_threads(1)
    resolved = recipe_from_dict(recipe, run_dir)
    key = json.dumps(recipe["data"], sort_keys=True)
    if key not in _splits_cache:
        _remember_splits(key, load_data(resolved))
    outcome = train_recipe(
        resolved, out=Path(study_dir) / run_dir, resume=resume, overwrite=not resume,
        progress="none", splits=_splits_cache[key], doctor=doctor,
        pretrained=Path(study_dir) / PRETRAINED,
    )
    return outcome.result


def preload(runs: Iterator[PlannedRun] | Any) -> None:
    """Load the runs' datasets in the driver (when few), for the forked workers to share."""
    from tricklab.recipe import recipe_from_dict
    from tricklab.run.runner import load_data

    first: dict[str, PlannedRun] = {}
    for run in runs:
        first.setdefault(json.dumps(run.recipe["data"], sort_keys=True), run)
    if len(first) <= CACHED_DATASETS:
        for key, run in first.items():
            if key not in _splits_cache:
                _remember_splits(key, load_data(recipe_from_dict(run.recipe)))


def _remember_splits(key: str, splits: Any) -> None:
    # A few datasets at most (a study mixing /255 and standardized inputs has two):
    # enough to avoid reloading between runs, bounded so a worker's memory is too.
    while len(_splits_cache) >= CACHED_DATASETS:
        del _splits_cache[next(iter(_splits_cache))]
    _splits_cache[key] = splits


def _init_worker() -> None:
    """Let the kernel end a worker with its driver, so a killed study leaves no orphan training."""
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


Outcome = tuple[PlannedRun, dict[str, Any] | None, BaseException | None]
Job = tuple[PlannedRun, str, bool, bool]
"""A run to train: the planned run, the study directory, resume?, doctor?"""


class LocalBackend:
    """A pool of worker processes, one torch thread each.

    Args:
        workers: Processes; at most one run per process at a time.
    """

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._pool = self._new_pool()

    def _new_pool(self) -> ProcessPoolExecutor:
        # On Linux the workers are forks of the driver, made here before it opens the
        # store or starts a display thread: they inherit torch and tricklab already
        # imported (seconds per worker otherwise) and the preloaded dataset, shared
        # copy-on-write. Elsewhere fork is unsafe or missing, so they are spawned.
        method = "fork" if sys.platform.startswith("linux") else "spawn"
        pool = ProcessPoolExecutor(
            self.workers, mp_context=get_context(method), initializer=_init_worker
        )
        for future in [pool.submit(int) for _ in range(self.workers)]:
            future.result()  # start every worker now, while the driver is single-threaded
        return pool

    def run(self, jobs: Iterator[Job]) -> Iterator[Outcome]:
        """Run jobs keeping every worker busy; yield each outcome."""
        running: dict[Future, PlannedRun] = {}
        # Jobs are drawn only when a worker is free, so a run is marked started when it starts.
        while True:
            while len(running) < self.workers and (job := next(jobs, None)) is not None:
                planned, study_dir, resume, doctor = job
                future = self._pool.submit(
                    execute_run, study_dir, planned.run_dir, planned.recipe, resume, doctor
                )
                running[future] = planned
            if not running:
                return
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                planned = running.pop(future)
                try:
                    yield planned, future.result(), None
                except BrokenProcessPool as error:
                    self._pool.shutdown(wait=False, cancel_futures=True)
                    self._pool = self._new_pool()
                    yield planned, None, error
                except Exception as error:  # the run's own crash: the driver records it
                    yield planned, None, error

    def close(self) -> None:
        """Wait for the running runs (an interrupted one checkpoints first), drop the rest."""
        self._pool.shutdown(wait=True, cancel_futures=True)


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
        self._task = ray.remote(num_cpus=1, max_retries=0)(execute_run)
        self.workers = max(1, int(ray.cluster_resources().get("CPU", workers)))

    def run(self, jobs: Iterator[Job]) -> Iterator[Outcome]:
        """Submit every job as a task; yield outcomes as they finish."""
        references = {
            self._task.remote(study_dir, planned.run_dir, planned.recipe, resume, doctor): planned
            for planned, study_dir, resume, doctor in jobs
        }
        while references:
            done, _ = self._ray.wait(list(references), num_returns=1)
            planned = references.pop(done[0])
            try:
                yield planned, self._ray.get(done[0]), None
            except Exception as error:
                cause = getattr(error, "cause", None)
                yield planned, None, cause if isinstance(cause, BaseException) else error

    def close(self) -> None:
        """Leave the cluster running; Ray tears a local one down when the driver exits."""
