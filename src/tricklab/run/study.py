"""Run a study: variants × seeds as ordinary run directories, recorded in the study store.

The driver plans every run, writes it to `study.db` as `pending`, and hands
runs to a backend: a local pool of processes (one torch thread each, as many
as the cores or `workers`, never more than the runs to do) or Ray tasks. Each
result is written to the store the moment it arrives, so a killed driver loses
no finished run; running the same command again skips finished runs and
resumes interrupted ones from their checkpoints. A run that diverges is
recorded as `diverged` and the study goes on; a run that crashes is retried
once, then recorded as `failed` with its error.

One driver works on a study folder at a time (`StudyLock`); a second command
on the same folder is refused, naming the first one's PID.

A run's `attempts` count the starts held against it: its crashes, and the
start under way or finished. A start that ends through no fault of the run is
not counted: the machine refused (full disk, read-only folder, no memory), the
study was stopped (Ctrl-C, SIGTERM, a killed driver), or its batched group
crashed and it then needs its own retry. So `attempts` never exceeds
`MAX_ATTEMPTS`. When the machine refuses a run, the run goes back to
`pending` with its error and the study starts nothing more: the runs under
way finish, the report is written where it can be, and the command ends with
one line naming the path and the cause, and exit code 4. Freed space, the same
command trains what is left. When it is the store that the machine refuses,
the runs under way are stopped and recorded as `interrupted` (their starts
uncounted) if the disk takes that write, by the next command otherwise.

A Ctrl-C or SIGTERM reaching the driver, even alone (`kill PID`, a
scheduler), stops the runs in the workers as a Ctrl-C in a terminal does: each
keeps its checkpoint and records `interrupted`; the report is still written.

Seeds of a variant can train together as one batched model
(`tricklab.train.batched`), one job in one worker, each still leaving its own
run directory and store record; by default only on a GPU, where it pays. A
group that crashes is not a failure of its runs: they train again separately,
with their retry intact.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import time
import traceback
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from tricklab.errors import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_TERMINATED,
    SystemRefusedError,
    UserInputError,
    is_environment_failure,
)
from tricklab.recipe.study import PlannedRun, Study, load_study
from tricklab.run.mlflow_tracking import children_target, finish_study, study_run
from tricklab.run.study_backends import (
    PRETRAINED,
    Job,
    LocalBackend,
    RayBackend,
    call_interruptibly,
    init_worker,
    interrupt_workers,
    plan_seed_groups,
    preload,
    refusal,
)
from tricklab.run.study_folder import STORE_NAME, StudyLock, open_store
from tricklab.run.study_progress import StudyProgress
from tricklab.study.results import load_results
from tricklab.study.statistics import higher_is_better
from tricklab.study.store import LearningRateChoice, RunRecord, StudyStore

if TYPE_CHECKING:
    from tricklab.run.mlflow_tracking import MlflowRun, MlflowTarget
    from tricklab.run.tensorboard_runs import StudyHParams

Backend = Literal["local", "ray"]
MAX_ATTEMPTS = 2
"""A crashed run is started at most this often: once, and one retry."""


@dataclass
class StudyOutcome:
    """What a study run left behind.

    Args:
        study_dir: The study directory.
        counts: Runs per status (main runs and search runs together).
        report: The HTML report, when one was written.
        exit_code: 0 done (diverged or failed runs included), 130 interrupted (the
            CLI reports 143 when that was SIGTERM).
    """

    study_dir: Path
    counts: dict[str, int]
    report: Path | None = None
    exit_code: int = EXIT_OK


def default_study_dir(study: Study) -> Path:
    """`runs/<name>`, or `runs/<name>-quick` for `--quick`, so the two never mix."""
    return Path("runs") / (f"{study.name}-quick" if study.spec["quick"] else study.name)


def _can_resume(folder: Path) -> bool:
    checkpoints = folder / "checkpoints"
    return (folder / "recipe.yaml").is_file() and checkpoints.is_dir() and any(
        checkpoints.iterdir()
    )


def _error_line(error: BaseException) -> str:
    lines = traceback.format_exception_only(type(error), error)
    return " ".join(line.strip() for line in lines)[:500]


def _is_interruption(error: BaseException) -> bool:
    """A Ctrl-C or SIGTERM stopped the job (before its first epoch, or before it began)."""
    return isinstance(error, KeyboardInterrupt) or getattr(error, "exit_code", None) in (
        EXIT_INTERRUPTED, EXIT_TERMINATED)


def check_backend_options(workers: int | None, backend: str, address: str | None) -> None:
    """Refuse `--workers`, `--backend` or `--address` values no backend takes, in one line."""
    if workers is not None and workers < 1:
        raise UserInputError(f"--workers: {workers} is not a number of processes (1 or more)")
    if backend not in ("local", "ray"):
        raise UserInputError(f"--backend: '{backend}' is not a backend (accepted: local, ray)")
    if address and backend != "ray":
        raise UserInputError("--address: only used with --backend ray")


def _execute(
    runs: list[PlannedRun], store: StudyStore, study_dir: Path, backend: Any,
    progress: StudyProgress, label: str, doctor: bool = False, batch_seeds: bool | None = False,
    mlflow: MlflowTarget | None = None, tensorboard: StudyHParams | None = None,
) -> SystemRefusedError | None:
    """Train every unfinished run of `runs`, retrying crashes once, recording as results arrive.

    With `batch_seeds` not `False`, seeds that can train together do so first
    (see `_seed_groups`); runs of a group that crashes fall back to separate runs.
    With `mlflow` (the study's parent run), each run is logged nested in it. With
    `tensorboard`, each run's events hold its HParams session (`None`: no events).

    Returns:
        The machine's first refusal (see `run_study`), after which no run was
        started; `None` when there was none.

    Raises:
        KeyboardInterrupt: The driver was stopped; the runs under way were stopped
            too and their outcomes recorded.
    """
    records = {record.run_id: record for record in store.runs(phase=None)}
    todo = [run for run in runs if not records[run.run_id].finished]
    progress.begin(len(runs), len(runs) - len(todo), backend.workers, label)
    starts: dict[str, float] = {}
    groups = _seed_groups(todo, study_dir, backend, batch_seeds)
    grouped = {planned.run_id: len(group) for group in groups for planned in group}
    batch = [*groups, *((planned,) for planned in todo if planned.run_id not in grouped)]
    fell_back: set[str] = set()
    refused: SystemRefusedError | None = None

    def jobs(pending: list[tuple[PlannedRun, ...]]) -> Iterator[Job]:
        for job_runs in pending:
            if refused is not None:  # the machine refused a run: the next would fare no better
                return
            for planned in job_runs:
                store.mark_started(planned.run_id)
                starts[planned.run_id] = time.perf_counter()
                progress.started()
            # A group has no checkpoints to resume from (and `_seed_groups` left out
            # runs that have some).
            resume = len(job_runs) == 1 and _can_resume(study_dir / job_runs[0].run_dir)
            yield job_runs, str(study_dir), resume, doctor, mlflow, tensorboard

    def record(planned: PlannedRun, result: dict | None, error: BaseException | None) -> bool:
        """Record how a run's start ended; return whether to start it again now."""
        nonlocal refused
        run_id, again = planned.run_id, False
        if error is None:
            assert result is not None
            # A run stopped by Ctrl-C resumes from its checkpoint with its attempts unspent.
            store.record_result(run_id, result, refund=result.get("status") == "interrupted")
        elif _is_interruption(error):
            store.set_status(run_id, "interrupted", refund=True)
        elif is_environment_failure(error):
            refused = refused or refusal(error, study_dir / planned.run_dir)
            store.set_status(run_id, "pending", _error_line(error), refund=True)
        elif run_id in grouped:
            # Batching is an optimization: its crash sends the run to train on its
            # own, with the retry a separate run has (see below).
            store.set_status(run_id, "pending", f"batched seeds: {_error_line(error)}")
            fell_back.add(run_id)
            again = True
        else:
            # A run that fell back from its group crashed on its own: the group's start
            # is not held against it, so it keeps its retry and attempts stay in bounds.
            refund = run_id in fell_back
            fell_back.discard(run_id)
            attempts = store.run(run_id).attempts - refund
            status = "pending" if attempts < MAX_ATTEMPTS else "failed"
            store.set_status(run_id, status, _error_line(error), refund=refund)
            again = status == "pending"
        # A group's runs share its time: each is shown with its share, as recorded.
        seconds = time.perf_counter() - starts.get(run_id, time.perf_counter())
        progress.ended(store.run(run_id), seconds / grouped.get(run_id, 1))
        return again

    try:
        while batch and refused is None:
            retry = [planned for planned, result, error in backend.run(jobs(batch))
                     if record(planned, result, error)]
            batch, grouped = [(planned,) for planned in retry], {}
    except KeyboardInterrupt:
        # Ctrl-C or SIGTERM in the driver, perhaps in the driver alone (`kill PID`, a
        # scheduler): the runs in the workers stop too, and how each ended is recorded.
        for outcome in backend.stop():
            record(*outcome)
        raise
    finally:
        progress.close()
    return refused


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
        pretraining = pool.submit(call_interruptibly, pretrain_sources, recipes,
                                  study_dir / PRETRAINED)
        try:
            pretraining.result()
        except KeyboardInterrupt:
            interrupt_workers(pool)  # a driver stopped alone: leaving, the pool waits for it
            raise


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
    overrides: list[str] | tuple[str, ...] = (),
    mlflow: str | None = None,
    tensorboard: bool = True,
) -> StudyOutcome:
    """Run (or resume) a study and write its report.

    Args:
        path: The study YAML file.
        out: Study directory. Defaults to `runs/<name>` (`runs/<name>-quick` with `quick`).
        seeds: Seeds per variant, replacing the file's. Defaults to `None`.
        quick: Shrink seeds and epochs as the file's `quick:` says. Defaults to `False`.
        workers: Parallel runs. Defaults to the number of cores; never more than
            the runs still to do.
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
            allows (`tricklab.run.batched_recipes.batchable`; main runs not with
            `doctor`): `True`, `False`, or `None` to do so where the runs train on
            a GPU (`batch_seeds_by_default`). Such a run's `result.json` says
            `batched_seeds` (the group's size) and its `wall_time_s` is the group's
            divided by that size. Defaults to `None`.
        overrides: `PATH=VALUE` strings applied to every variant's recipe, as
            `tricklab study STUDY --set` does (see `load_study`). They are stored
            with the study: the same ones resume it, others make another study
            (refused without `force_new`). Defaults to `()`.
        mlflow: A tracking URI: the study is logged to MLflow as a parent run (its
            spec as params, its reports as artifacts) with a nested run for each run
            this command trains (see `tricklab.run.mlflow_tracking`). Defaults to
            `None` (not logged).
        tensorboard: Each run writes TensorBoard events (where its recipe's
            `train.tensorboard` allows) with an HParams session: its variant, seed,
            the recipe fields the study's runs differ in, and with a learning-rate
            search its phase (see `tricklab.run.tensorboard_runs`); `False`
            (`--no-tensorboard`) writes none. Defaults to `True`.

    Raises:
        UserInputError: A bad study file, a changed spec without `force_new`, a bad
            store, a folder that is not a study, or another driver at work on it.
        SystemRefusedError: The machine refused (disk full, read-only, out of memory):
            one line naming the path and the cause, how many runs are left and what to
            do. The runs it refused are `pending` with their attempts unspent.
    """
    study = load_study(path, seeds=seeds, quick=quick, overrides=overrides)
    check_backend_options(workers, backend, address)
    # Every run's recipe is validated before anything is written.
    main_runs = {
        (variant, seed): study.plan(variant, seed)
        for variant in study.spec["variants"] for seed in study.spec["seeds"]
    }
    search_runs = _search_runs(study)
    study_dir = Path(out) if out is not None else default_study_dir(study)
    planned_ids = {run.run_id for run in (*main_runs.values(), *search_runs)}
    if backend == "local":
        # Before the folder is touched: data that cannot be loaded leaves nothing behind.
        preload(main_runs.values(), study.source)
    parent: MlflowRun | None = None
    with StudyLock(study_dir):
        try:
            store = open_store(study, study_dir, force_new)
            try:
                store.interrupt_running()  # left by a driver that is gone: we hold the lock
                count = _workers(store, planned_ids, search_runs, workers)
            finally:
                store.close()  # opened again once the workers are forked (see LocalBackend)
            if backend == "local":
                runner: Any = LocalBackend(count)
            else:
                runner = RayBackend(count, address)
            try:
                store = StudyStore.open(study_dir / STORE_NAME)
            except BaseException:
                runner.close()
                raise
            try:
                if mlflow is not None:  # after the workers are forked: MLflow may start threads
                    # One parent run per study: a later command carries on the earlier's.
                    parent = study_run(mlflow, study.name, study.spec, study_dir,
                                       store.mlflow_run(mlflow))
                    if parent is not None and parent.run_id is not None:
                        store.set_mlflow_run(mlflow, parent.run_id)
                from tricklab.run.tensorboard_runs import StudyHParams

                stopped, refused = _train(
                    study, store, study_dir, runner, StudyProgress(progress), main_runs,
                    search_runs, doctor, batch_seeds,
                    mlflow=None if parent is None else children_target(parent),
                    tensorboard=StudyHParams.of([*main_runs.values(), *search_runs])
                    if tensorboard else None,
                )
                records = store.runs(phase=None)
                counts: dict[str, int] = {}
                for record in records:
                    counts[record.status] = counts.get(record.status, 0) + 1
                # Read on the open connection: a full disk may refuse opening the store again.
                finished: set[str] | None = {r.run_id for r in records if r.finished}
            finally:
                store.close()
        except SystemRefusedError as error:  # the store could not be made or written
            stopped, refused, counts, finished = False, error, {}, None
        except BaseException as error:
            # Not left RUNNING in MLflow by what stopped the driver.
            finish_study(parent, {}, "interrupted" if isinstance(error, KeyboardInterrupt)
                         else "failed")
            raise
        written = None
        if report is not None and (study_dir / STORE_NAME).exists():
            try:
                written = report(study_dir)
            except Exception as error:
                report_refused = refusal(error, study_dir / "report.html")
                if report_refused is None:
                    finish_study(parent, counts, "failed")
                    raise
                refused = refused or report_refused
        finish_study(parent, counts, "interrupted" if stopped else
                     "failed" if refused is not None else "completed")
        if refused is not None and not stopped:
            raise _stopped_by_the_machine(refused, study_dir, planned_ids, finished)
    exit_code = EXIT_OK
    if stopped or counts.get("interrupted") or counts.get("running"):
        exit_code = EXIT_INTERRUPTED
    return StudyOutcome(study_dir, counts, written, exit_code)


def study_summary(study_dir: str | Path) -> dict[str, Any]:
    """A study's ranked table as data (`--json`): what `tricklab study show` prints, unrounded.

    Args:
        study_dir: The study directory holding `study.db`.

    Returns:
        `name`, `metric` (the one compared), `higher_is_better`, `baseline`,
        `confidence` (of the intervals), `overrides` (the `--set` values the study
        ran with), `warnings`, and `variants`, best first, each with `rank`,
        `name`, `description`, `n` (the values compared), `mean`, `std`, `ci`
        ([low, high] of the mean), `iqm`, against the baseline `difference`,
        `difference_ci`, `p_improvement`, `p_value` (Welch) and `p_holm` (`None`
        for the baseline), `verdict` (`StudyResults.verdict`), `counts` of runs per
        outcome (`succeeded`, `diverged`, `failed`, `unfinished`), `wall_time_s`
        (`mean`, `std`) and `time_to_target` (`None` without a target).

    Raises:
        UserInputError: `study.db` is missing or not a tricklab study store.
    """
    with StudyStore.open(Path(study_dir) / STORE_NAME) as store:
        results = load_results(store)
    variants = []
    for analysed in results.ranked:
        summary, comparison = analysed.summary, analysed.comparison
        variant = results.variants[analysed.name]
        variants.append({
            "rank": analysed.rank,
            "name": analysed.name,
            "description": variant.description,
            "n": summary.n,
            "mean": summary.mean,
            "std": summary.std,
            "ci": [summary.ci_low, summary.ci_high],
            "iqm": summary.iqm,
            "difference": None if comparison is None else comparison.difference,
            "difference_ci": None if comparison is None else [comparison.ci_low,
                                                              comparison.ci_high],
            "p_improvement": None if comparison is None else comparison.p_improvement,
            "p_value": None if comparison is None else comparison.p_value,
            "p_holm": None if comparison is None else comparison.p_holm,
            "verdict": results.verdict(analysed.name),
            "counts": asdict(variant.counts),
            "wall_time_s": {"mean": variant.wall_time_mean, "std": variant.wall_time_std},
            "time_to_target": None if variant.time_to_target is None
            else asdict(variant.time_to_target),
        })
    return {
        "name": results.spec.get("name"),
        "metric": results.metric,
        "higher_is_better": results.higher_is_better,
        "baseline": results.baseline,
        "confidence": results.analysis.confidence,
        "overrides": results.spec.get("overrides", []),
        "variants": variants,
        "warnings": results.warnings,
    }


def _workers(
    store: StudyStore, planned_ids: set[str], search_runs: list[PlannedRun], wanted: int | None
) -> int:
    """Worker processes to start: as many as wanted (the cores by default), at most the runs to do.

    The search and the main runs train one phase after the other, so the larger
    phase bounds what can run at once; at least one worker, for the calls the
    study makes in a worker (`plan_seed_groups`).
    """
    finished = {record.run_id for record in store.runs(phase=None) if record.finished}
    search_ids = {run.run_id for run in search_runs}
    to_do = max(len(search_ids - finished), len(planned_ids - search_ids - finished))
    return max(1, min(wanted or os.cpu_count() or 1, to_do))


def _train(
    study: Study, store: StudyStore, study_dir: Path, runner: Any, progress: StudyProgress,
    main_runs: dict[tuple[str, int], PlannedRun], search_runs: list[PlannedRun],
    doctor: bool, batch_seeds: bool | None, mlflow: MlflowTarget | None = None,
    tensorboard: StudyHParams | None = None,
) -> tuple[bool, SystemRefusedError | None]:
    """Pretrain, search learning rates, train the main runs; close the backend.

    With `mlflow` (the study's MLflow run), every run is logged nested in it. With
    `tensorboard`, every run's events hold its HParams session (`None`: no events).

    Returns:
        Whether the driver was stopped (Ctrl-C, SIGTERM), and the machine's
        refusal that ended the study early, if any.
    """
    refused: SystemRefusedError | None = None
    try:
        _pretrain([run.recipe for run in (*main_runs.values(), *search_runs)], study_dir)
        if search_runs:
            _add(store, search_runs)
            refused = _execute(search_runs, store, study_dir, runner, progress,
                               "learning-rate search", batch_seeds=batch_seeds, mlflow=mlflow,
                               tensorboard=tensorboard)
            if refused is None:
                for variant, rate in _choose_rates(study, store).items():
                    for seed in study.spec["seeds"]:
                        main_runs[variant, seed] = study.plan(variant, seed, rate)
        if refused is None:
            planned = list(main_runs.values())
            _add(store, planned)
            _reuse_search_runs(planned, store)
            # The doctor probes each run's own model, which a batched group does not have.
            refused = _execute(planned, store, study_dir, runner, progress, study.name, doctor,
                               batch_seeds=False if doctor else batch_seeds, mlflow=mlflow,
                               tensorboard=tensorboard)
    except KeyboardInterrupt:
        return True, None
    except SystemRefusedError as error:
        # The store (or a pretrained model) could not be written: what the runs under way
        # return could not be recorded either, so they are stopped and resume next time.
        # Once they are (their unfinished files gone), the disk may take the one write
        # that records them as stopped; if not, the next driver does (`interrupt_running`).
        for _ in runner.stop():
            pass
        with contextlib.suppress(SystemRefusedError):
            store.interrupt_running()
        return False, error
    finally:
        runner.close()
    return False, refused


def _remedy(cause: str) -> str:
    """What to do about a refusal, from its one-line message."""
    cause = cause.lower()
    if "no space" in cause or "quota" in cause:
        return "free space"
    if any(word in cause for word in ("read-only", "permission", "not permitted")):
        return "make the folder writable"
    if "memory" in cause:
        return "free memory (or pass fewer --workers)"
    if "too many open files" in cause:
        return "raise the limit of open files (ulimit -n)"
    return "fix the cause"


def _stopped_by_the_machine(
    refused: SystemRefusedError, study_dir: Path, planned_ids: set[str],
    finished: set[str] | None,
) -> SystemRefusedError:
    """The study's one-line ending when the machine refused: the path, the cause, what is left.

    Args:
        refused: The refusal.
        study_dir: The study folder.
        planned_ids: Every run of the study.
        finished: The runs the store records as finished, as the driver read them;
            `None` (the driver could not) reads them from the store where it opens.
    """
    if finished is None:
        try:
            with StudyStore.open(study_dir / STORE_NAME) as store:
                finished = {record.run_id for record in store.runs(phase=None)
                            if record.finished}
        except (UserInputError, SystemRefusedError):  # no store: every run is still to do
            finished = set()
    left = len(planned_ids - finished)
    line = str(refused)
    what = f"{left} run(s) left pending" if left else "the report is not written"
    return SystemRefusedError(f"{line}; {what}: {_remedy(line)} and run the same command again")


__all__ = [
    "MAX_ATTEMPTS", "StudyOutcome", "default_study_dir", "open_store", "run_study", "study_summary",
]
