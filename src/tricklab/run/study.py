"""Run a study: variants × seeds as ordinary run directories, recorded in the study store.

The driver plans every run, writes it to `study.db` as `pending`, and hands
runs to a backend: a local pool of processes (one torch thread each, sized to
the cores) or Ray tasks. Each result is written to the store the moment it
arrives, so a killed driver loses no finished run; running the same command
again skips finished runs and resumes interrupted ones from their checkpoints.
A run that diverges is recorded as `diverged` and the study goes on; a run
that crashes is retried once, then recorded as `failed` with its error.

Seeds of a variant can train together as one batched model
(`tricklab.train.batched`), one job in one worker, each still leaving its own
run directory and store record; by default only on a GPU, where it pays. A
group that crashes is not a failure of its runs: they train again separately,
with their retry intact.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import time
import traceback
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from tricklab.errors import EXIT_INTERRUPTED, EXIT_OK, UserInputError
from tricklab.recipe.study import PlannedRun, Study, load_study
from tricklab.run.study_backends import (
    PRETRAINED,
    Job,
    LocalBackend,
    RayBackend,
    call_interruptibly,
    init_worker,
    plan_seed_groups,
    preload,
)
from tricklab.run.study_progress import StudyProgress
from tricklab.study.statistics import higher_is_better
from tricklab.study.store import LearningRateChoice, RunRecord, StudyStore

Backend = Literal["local", "ray"]
MAX_ATTEMPTS = 2
"""A crashed run is started at most this often: once, and one retry."""

STORE_NAME = "study.db"


@dataclass
class StudyOutcome:
    """What a study run left behind.

    Args:
        study_dir: The study directory.
        counts: Runs per status (main runs and search runs together).
        report: The HTML report, when one was written.
        exit_code: 0 done (diverged or failed runs included), 130 interrupted.
    """

    study_dir: Path
    counts: dict[str, int]
    report: Path | None = None
    exit_code: int = EXIT_OK


def default_study_dir(study: Study) -> Path:
    """`runs/<name>`, or `runs/<name>-quick` for `--quick`, so the two never mix."""
    return Path("runs") / (f"{study.name}-quick" if study.spec["quick"] else study.name)


def open_store(study: Study, study_dir: Path, force_new: bool = False) -> StudyStore:
    """Open the study's store, or create it; refuse a store made from another spec.

    Args:
        study: The validated study.
        study_dir: The study directory.
        force_new: Discard a study made from another spec (its store and runs) and
            start anew. Defaults to `False`.

    Raises:
        UserInputError: The store is corrupt or foreign, holds another spec without
            `force_new`, or the folder holds something that is not a study.
    """
    path = study_dir / STORE_NAME
    if path.exists():
        store = StudyStore.open(path)
        if store.fingerprint == study.fingerprint:
            store.update_spec(study.spec)
            return store
        store.close()
        if not force_new:
            raise UserInputError(
                f"{study.source}: the study differs from the one stored in {path} "
                "(variants, budget, metric or search changed); pass --force-new to discard "
                "it and start over, or --out DIR to run it elsewhere"
            )
        for leftover in (path, path.with_name(f"{STORE_NAME}-wal"),
                         path.with_name(f"{STORE_NAME}-shm")):
            leftover.unlink(missing_ok=True)
        shutil.rmtree(study_dir / "runs", ignore_errors=True)
    elif study_dir.is_dir() and any(study_dir.iterdir()) and not force_new:
        raise UserInputError(
            f"--out: {study_dir} is not empty and holds no {STORE_NAME}; choose another "
            "folder or pass --force-new to use it anyway"
        )
    elif study_dir.exists() and not study_dir.is_dir():
        raise UserInputError(f"--out: {study_dir} exists and is not a directory")
    return StudyStore.create(path, study.spec, study.fingerprint)


def _can_resume(folder: Path) -> bool:
    checkpoints = folder / "checkpoints"
    return (folder / "recipe.yaml").is_file() and checkpoints.is_dir() and any(
        checkpoints.iterdir()
    )


def _error_line(error: BaseException) -> str:
    lines = traceback.format_exception_only(type(error), error)
    return " ".join(line.strip() for line in lines)[:500]


def _execute(
    runs: list[PlannedRun], store: StudyStore, study_dir: Path, backend: Any,
    progress: StudyProgress, label: str, doctor: bool = False, batch_seeds: bool | None = False,
) -> None:
    """Train every unfinished run of `runs`, retrying crashes once, recording as results arrive.

    With `batch_seeds` not `False`, seeds that can train together do so first
    (see `_seed_groups`); runs of a group that crashes fall back to separate runs.
    """
    records = {record.run_id: record for record in store.runs(phase=None)}
    todo = [run for run in runs if not records[run.run_id].finished]
    progress.begin(len(runs), len(runs) - len(todo), backend.workers, label)
    starts: dict[str, float] = {}
    groups = _seed_groups(todo, study_dir, backend, batch_seeds)
    grouped = {planned.run_id: len(group) for group in groups for planned in group}
    batch = [*groups, *((planned,) for planned in todo if planned.run_id not in grouped)]
    fell_back: set[str] = set()

    def jobs(pending: list[tuple[PlannedRun, ...]]) -> Iterator[Job]:
        for job_runs in pending:
            for planned in job_runs:
                store.mark_started(planned.run_id)
                starts[planned.run_id] = time.perf_counter()
                progress.started()
            # A group has no checkpoints to resume from (and `_seed_groups` left out
            # runs that have some).
            resume = len(job_runs) == 1 and _can_resume(study_dir / job_runs[0].run_dir)
            yield job_runs, str(study_dir), resume, doctor

    try:
        while batch:
            retry: list[PlannedRun] = []
            for planned, result, error in backend.run(jobs(batch)):
                if error is None:
                    store.record_result(planned.run_id, result)
                elif planned.run_id in grouped:
                    # Batching is an optimization: its crash sends the run to train on its
                    # own, with the retry a separate run has.
                    store.set_status(planned.run_id, "pending",
                                     f"batched seeds: {_error_line(error)}")
                    fell_back.add(planned.run_id)
                    retry.append(planned)
                else:
                    attempts = store.run(planned.run_id).attempts
                    allowed = MAX_ATTEMPTS + (planned.run_id in fell_back)
                    status = "pending" if attempts < allowed else "failed"
                    store.set_status(planned.run_id, status, _error_line(error))
                    if status == "pending":
                        retry.append(planned)
                # A group's runs share its time: each is shown with its share, as recorded.
                seconds = time.perf_counter() - starts[planned.run_id]
                progress.ended(store.run(planned.run_id), seconds / grouped.get(planned.run_id, 1))
            batch, grouped = [(planned,) for planned in retry], {}
    finally:
        progress.close()


def _seed_groups(
    runs: list[PlannedRun], study_dir: Path, backend: Any, batch_seeds: bool | None
) -> list[tuple[PlannedRun, ...]]:
    """The runs to train as batched seeds, in groups of two or more; none when `batch_seeds` is off.

    Runs with checkpoints to resume are left to resume on their own. The
    grouping is decided in a worker (`plan_seed_groups`), which may build
    models and start CUDA, both unsafe in the driver that forks workers. If
    that fails, nothing is batched: the runs train separately as ever.
    """
    if batch_seeds is False:
        return []
    fresh = [run for run in runs if not _can_resume(study_dir / run.run_dir)]
    per_variant: dict[str, int] = {}
    for run in fresh:
        per_variant[run.variant] = per_variant.get(run.variant, 0) + 1
    if max(per_variant.values(), default=0) < 2:  # no group to form: spare the worker a call
        return []
    try:
        planned_groups = backend.call(plan_seed_groups, fresh, batch_seeds)
    except Exception:  # batching is an optimization; the separate runs will show any real error
        return []
    by_id = {run.run_id: run for run in fresh}
    return [tuple(by_id[run_id] for run_id in group) for group in planned_groups]


def _search_runs(study: Study) -> list[PlannedRun]:
    search = study.spec["lr_search"]
    return [
        study.plan(variant, seed, rate, phase="lr_search")
        for variant in study.searched()
        for rate in search["grid"]
        for seed in search["seeds"]
    ]


def _choose_rates(study: Study, store: StudyStore) -> dict[str, float]:
    """Pick each searched variant's rate by mean validation metric; record the choice."""
    search = study.spec["lr_search"]
    metric = search["metric"]
    higher = higher_is_better(metric)
    chosen: dict[str, float] = {}
    runs = store.runs("lr_search")
    for variant in study.searched():
        scores: dict[float, float | None] = {}
        for rate in search["grid"]:
            values = [
                run.metrics.get(metric)
                for run in runs
                if run.variant == variant and run.learning_rate == rate
                and run.status in ("completed", "stopped_early")
            ]
            finite = [value for value in values if value is not None]
            scores[rate] = sum(finite) / len(finite) if finite else None
        ranked = [rate for rate in scores if scores[rate] is not None]
        if not ranked:  # every rate diverged or crashed: the variant keeps its own rate
            continue
        best = (max if higher else min)(ranked, key=lambda rate: scores[rate])
        store.set_learning_rate_choice(LearningRateChoice(variant, best, metric, scores))
        chosen[variant] = best
    return chosen


def _reuse_search_runs(runs: list[PlannedRun], store: StudyStore) -> None:
    """A main run identical to a finished search run (same rate, seed, epochs) takes its result."""
    search = {
        (record.variant, record.seed, record.learning_rate): record
        for record in store.runs("lr_search") if record.finished
    }
    for planned in runs:
        record = store.run(planned.run_id)
        source = search.get((planned.variant, planned.seed, planned.learning_rate))
        if record is None or record.finished or source is None:
            continue
        if {**source.recipe, "name": None} != {**planned.recipe, "name": None}:
            continue
        store.record_result(planned.run_id, {
            "status": source.status, "metrics": source.metrics, "history": source.history,
            "epochs_run": source.epochs_run, "wall_time_s": source.wall_time_s,
        })
        store.set_run_dir(planned.run_id, source.run_dir)


def _add(store: StudyStore, runs: list[PlannedRun]) -> None:
    store.add_runs(
        RunRecord(run.run_id, run.variant, run.seed, run.phase, run.run_dir, run.recipe,
                  learning_rate=run.learning_rate)
        for run in runs
    )


def _pretrain(recipes: list[dict[str, Any]], study_dir: Path) -> None:
    """Train the recipes that runs reuse, once, before any run starts.

    In a spawned process: the driver itself must not start torch's threads
    before it forks the workers.
    """
    from tricklab.run.pretrained import is_recipe, pretrain_sources

    if not any(r["model"].get("reuse") and is_recipe(r["model"]["reuse"]["from"]) for r in recipes):
        return
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=spawn, initializer=init_worker) as pool:
        pool.submit(call_interruptibly, pretrain_sources, recipes, study_dir / PRETRAINED).result()


def run_study(
    path: str | Path,
    out: str | Path | None = None,
    seeds: int | None = None,
    quick: bool = False,
    workers: int | None = None,
    backend: Backend = "local",
    address: str | None = None,
    force_new: bool = False,
    progress: str = "auto",
    report: Callable[[Path], Any] | None = None,
    doctor: bool = False,
    batch_seeds: bool | None = None,
) -> StudyOutcome:
    """Run (or resume) a study and write its report.

    Args:
        path: The study YAML file.
        out: Study directory. Defaults to `runs/<name>` (`runs/<name>-quick` with `quick`).
        seeds: Seeds per variant, replacing the file's. Defaults to `None`.
        quick: Shrink seeds and epochs as the file's `quick:` says. Defaults to `False`.
        workers: Parallel runs. Defaults to the number of cores.
        backend: `"local"` (process pool) or `"ray"`. Defaults to `"local"`.
        address: Ray cluster address for `backend="ray"`. Defaults to `None` (a local Ray).
        force_new: Discard a stored study made from another spec. Defaults to `False`.
        progress: `"auto"`, `"bar"`, `"lines"` or `"none"`. Defaults to `"auto"`.
        report: Writes the report from the study directory and returns its path.
            Defaults to `None` (no report).
        doctor: Probe every main run (`train --doctor`); the report then has a
            doctor section. Defaults to `False`.
        batch_seeds: Train the seeds of a variant (in the learning-rate search: of a
            variant and rate) together as one batched model where its recipe
            allows (`tricklab.train.batched.batchable`; main runs not with
            `doctor`): `True`, `False`, or `None` to do so where the runs train on
            a GPU (`batch_seeds_by_default`). Such a run's `result.json` says
            `batched_seeds` (the group's size) and its `wall_time_s` is the group's
            divided by that size. Defaults to `None`.

    Raises:
        UserInputError: A bad study file, a changed spec without `force_new`, a bad store.
    """
    study = load_study(path, seeds=seeds, quick=quick)
    if workers is not None and workers < 1:
        raise UserInputError(f"--workers: {workers} is not a number of processes (1 or more)")
    if backend not in ("local", "ray"):
        raise UserInputError(f"--backend: '{backend}' is not a backend (accepted: local, ray)")
    if address and backend != "ray":
        raise UserInputError("--address: only used with --backend ray")
    # Every run's recipe is validated before anything is written.
    main_runs = {
        (variant, seed): study.plan(variant, seed)
        for variant in study.spec["variants"] for seed in study.spec["seeds"]
    }
    search_runs = _search_runs(study)
    study_dir = Path(out) if out is not None else default_study_dir(study)
    count = workers or os.cpu_count() or 1
    if backend == "local":
        preload(main_runs.values())
        runner: Any = LocalBackend(count)
    else:
        runner = RayBackend(count, address)
    status_progress = StudyProgress(progress)
    exit_code = EXIT_OK
    try:
        store = open_store(study, study_dir, force_new)
    except BaseException:
        runner.close()
        raise
    try:
        _pretrain([run.recipe for run in (*main_runs.values(), *search_runs)], study_dir)
        if search_runs:
            _add(store, search_runs)
            _execute(search_runs, store, study_dir, runner, status_progress,
                     "learning-rate search", batch_seeds=batch_seeds)
            for variant, rate in _choose_rates(study, store).items():
                for seed in study.spec["seeds"]:
                    main_runs[variant, seed] = study.plan(variant, seed, rate)
        planned = list(main_runs.values())
        _add(store, planned)
        _reuse_search_runs(planned, store)
        # The doctor probes each run's own model, which a batched group does not have.
        _execute(planned, store, study_dir, runner, status_progress, study.name, doctor,
                 batch_seeds=False if doctor else batch_seeds)
    except KeyboardInterrupt:
        exit_code = EXIT_INTERRUPTED
    finally:
        runner.close()
    counts: dict[str, int] = {}
    for record in store.runs(phase=None):
        counts[record.status] = counts.get(record.status, 0) + 1
    if counts.get("interrupted") or counts.get("running"):
        exit_code = EXIT_INTERRUPTED
    store.close()
    written = report(study_dir) if report is not None else None
    return StudyOutcome(study_dir, counts, written, exit_code)


__all__ = ["StudyOutcome", "default_study_dir", "open_store",
           "run_study"]
