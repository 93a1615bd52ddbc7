"""The study store: one SQLite database per study (`study.db`) holding everything it measured.

The driver writes it as results arrive, so a killed study loses nothing that
had finished and a re-run of the same command picks up where it stopped. It
holds the study's spec (and its fingerprint, to notice a changed spec), every
run's status, attempts, final metrics, timing and error, each run's per-epoch
history as rows, and the learning rate chosen for each searched variant.

SQLite is opened in WAL mode with a busy timeout, and every write is one
`BEGIN IMMEDIATE` transaction: several processes may write the same store and
each waits its turn instead of failing with "database is locked". A file that
is not a tricklab study store (another program's database, a truncated or
corrupt file) is refused with a clear error, after being read only, so it is
left exactly as it was; so is a row that does not read back as tricklab wrote
it (a column that is not JSON, a NULL where a value belongs, an unknown
status), naming the file and the run. When the machine refuses a write (disk
full, read-only, out of memory) the error is a `SystemRefusedError` naming
`study.db` and the cause, and the transaction leaves nothing half-written.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from tricklab.errors import (
    SystemRefusedError,
    UserInputError,
    is_environment_failure,
    system_error_line,
)

FORMAT = "tricklab-study"
VERSION = 1
BUSY_TIMEOUT_MS = 60_000
"""How long a writer waits for another one before SQLite gives up: long enough for any commit."""

FINISHED = ("completed", "stopped_early", "diverged", "failed")
"""Statuses a re-run leaves alone; `pending`, `running` and `interrupted` runs are (re)started."""

STATUSES = ("pending", "running", "interrupted", *FINISHED)
"""Every status a run can have."""

PHASES = ("main", "lr_search")

# SQLite's primary result codes that mean the machine refused (sqlite3.h), and the
# cause in the words `os.strerror` uses, so a message reads the same whoever failed.
SQLITE_NOMEM, SQLITE_READONLY, SQLITE_IOERR, SQLITE_FULL, SQLITE_CANTOPEN = 7, 8, 10, 13, 14
_SQLITE_REFUSALS = {
    SQLITE_NOMEM: "out of memory",
    SQLITE_READONLY: "read-only file system or no permission to write",
    SQLITE_IOERR: "input/output error",
    SQLITE_FULL: "no space left on device",
    SQLITE_CANTOPEN: "cannot open the file or its journal",
}

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE runs (
    run_id TEXT PRIMARY KEY,
    variant TEXT NOT NULL,
    seed INTEGER NOT NULL,
    phase TEXT NOT NULL CHECK (phase IN ('main', 'lr_search')),
    learning_rate REAL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    run_dir TEXT NOT NULL,
    recipe TEXT NOT NULL,
    metrics TEXT,
    epochs_run INTEGER,
    wall_time_s REAL,
    error TEXT,
    updated_at REAL NOT NULL
);
CREATE TABLE history (
    run_id TEXT NOT NULL REFERENCES runs (run_id),
    epoch INTEGER NOT NULL,
    key TEXT NOT NULL,
    value REAL,
    PRIMARY KEY (run_id, epoch, key)
);
CREATE TABLE lr_choices (
    variant TEXT PRIMARY KEY,
    learning_rate REAL NOT NULL,
    metric TEXT NOT NULL,
    scores TEXT NOT NULL
);
"""

_RUN_COLUMNS = (
    "run_id, variant, seed, phase, learning_rate, status, attempts, run_dir, recipe, "
    "metrics, epochs_run, wall_time_s, error"
)


@dataclass
class RunRecord:
    """One run of a study: a variant trained with one seed (and, in a search, one learning rate).

    Args:
        run_id: `<variant>/seed-<seed>` for the study's runs, `<variant>/lr-<lr>/seed-<seed>`
            for learning-rate search runs.
        variant: The variant's name.
        seed: The run's random seed.
        phase: `"main"` or `"lr_search"`.
        learning_rate: The learning rate set for this run by a search; `None` otherwise.
        status: `pending`, `running`, `interrupted`, or a finished status: `completed`,
            `stopped_early`, `diverged` (as in `result.json`) or `failed` (crashed twice).
        attempts: How many times the run was started.
        run_dir: The run directory, relative to the study directory.
        recipe: The run's resolved recipe.
        metrics: `result.json`'s final metrics (`None` for a value that was NaN).
        history: Per-epoch lists, as in `result.json` (`loss`, `accuracy`, `val_*`, `lr`, `time_s`).
        epochs_run: Epochs trained.
        wall_time_s: Training wall time in seconds.
        error: The last error of a failed attempt.
    """

    run_id: str
    variant: str
    seed: int
    phase: str
    run_dir: str
    recipe: dict[str, Any]
    learning_rate: float | None = None
    status: str = "pending"
    attempts: int = 0
    metrics: dict[str, float | None] = field(default_factory=dict)
    history: dict[str, list[float | None]] = field(default_factory=dict)
    epochs_run: int | None = None
    wall_time_s: float | None = None
    error: str | None = None

    @property
    def finished(self) -> bool:
        """Whether a re-run of the study leaves this run alone."""
        return self.status in FINISHED


@dataclass(frozen=True)
class LearningRateChoice:
    """The learning rate a search chose for a variant, and the mean score of every rate tried.

    Args:
        variant: The variant searched.
        learning_rate: The chosen rate.
        metric: The validation metric that chose it.
        scores: Mean metric over the search seeds per rate tried (`None`: no run finished).
    """

    variant: str
    learning_rate: float
    metric: str
    scores: dict[float, float | None]


def _finite(value: Any) -> Any:
    return value if not isinstance(value, float) or math.isfinite(value) else None


class StudyStore:
    """A study's SQLite store; use `StudyStore.create` or `StudyStore.open`, then `close()`.

    Args:
        path: The `study.db` file.
        connection: An open connection, already checked and configured.
    """

    def __init__(self, path: Path, connection: sqlite3.Connection) -> None:
        self.path = path
        self._connection = connection

    @classmethod
    def create(cls, path: str | Path, spec: dict[str, Any], fingerprint: str) -> StudyStore:
        """Create a new store at `path` holding `spec`.

        Args:
            path: Where `study.db` goes; must not exist yet.
            spec: The resolved study spec (JSON-serializable).
            fingerprint: A digest of what makes the study's results comparable.
        """
        path = Path(path)
        if path.exists():
            raise FileExistsError(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        # Built under a temporary name and renamed into place, so no reader ever
        # sees `study.db` without its tables (it would take it for a foreign file).
        building = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            with _refusals(path):
                cls._build(building, spec, fingerprint)
                os.replace(building, path)
                try:
                    connection = cls._connect(path)
                except BaseException:
                    # No store at all rather than one this process could not open (a full
                    # disk): whatever was there before can be put back in its place.
                    for made in (path, *_companions(path)):
                        made.unlink(missing_ok=True)
                    raise
        except BaseException:
            for leftover in (building, building.with_name(f"{building.name}-journal")):
                leftover.unlink(missing_ok=True)
            raise
        return cls(path, connection)

    @staticmethod
    def remove_stale_temporaries(path: str | Path) -> list[Path]:
        """Delete the temporary stores that drivers killed inside `create` left beside `path`.

        A store is built as `.study.db.<pid>.tmp` (with its `-journal`); a file
        whose process is gone is a leftover, never to be renamed into place.
        Files of a live process are left alone: it may be building its store.

        Returns:
            The files deleted.
        """
        path = Path(path)
        pattern = re.compile(rf"^\.{re.escape(path.name)}\.(\d+)\.tmp(-journal)?$")
        removed = []
        if not path.parent.is_dir():
            return removed
        for entry in path.parent.iterdir():
            match = pattern.match(entry.name)
            if match and not _process_alive(int(match.group(1))) and entry.is_file():
                entry.unlink(missing_ok=True)
                removed.append(entry)
        return removed

    @staticmethod
    def _build(path: Path, spec: dict[str, Any], fingerprint: str) -> None:
        """Write the schema and the spec into a new database file at `path`."""
        connection = sqlite3.connect(path, isolation_level=None)
        try:
            connection.execute("BEGIN IMMEDIATE")
            # One statement at a time: `executescript` would commit the open transaction.
            for statement in filter(str.strip, _SCHEMA.split(";")):
                connection.execute(statement)
            connection.executemany(
                "INSERT INTO meta (key, value) VALUES (?, ?)",
                [
                    ("format", FORMAT),
                    ("version", str(VERSION)),
                    ("spec", json.dumps(spec)),
                    ("fingerprint", fingerprint),
                    ("created_at", str(time.time())),
                ],
            )
            connection.execute("COMMIT")
        finally:
            connection.close()

    @classmethod
    def open(cls, path: str | Path) -> StudyStore:
        """Open an existing store, refusing anything that is not a tricklab study store.

        The file is first read through a read-only connection, so a foreign or
        corrupt file is refused without being changed in any way.

        Raises:
            UserInputError: The file is missing, not SQLite, corrupt, or another program's.
        """
        path = Path(path)
        # Reading a WAL-mode file creates its -wal and -shm companions; a refused file
        # must be left as it was found, so the ones this check created go again.
        companions = _companions(path)
        existed = [companion.exists() for companion in companions]
        try:
            cls._check(path)
        except (UserInputError, SystemRefusedError):
            for companion, was_there in zip(companions, existed, strict=True):
                if not was_there:
                    companion.unlink(missing_ok=True)
            raise
        with _refusals(path):
            return cls(path, cls._connect(path))

    @staticmethod
    def _check(path: Path) -> None:
        """Raise `UserInputError` unless `path` is a readable study store of this version."""
        if not path.is_file():
            raise UserInputError(f"study store: {path} does not exist")
        with path.open("rb") as file:
            header = file.read(16)
        if header != b"SQLite format 3\x00":
            raise UserInputError(
                f"study store: {path} is not an SQLite database (a tricklab study.db is "
                "expected); the file was left untouched"
            )
        try:
            reader = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
            try:
                tables = {row[0] for row in reader.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table'")}
                meta = {}
                if {"meta", "runs", "history", "lr_choices"} <= tables:
                    meta = dict(reader.execute("SELECT key, value FROM meta").fetchall())
                check = reader.execute("PRAGMA quick_check").fetchone()[0]
            finally:
                reader.close()
        except sqlite3.DatabaseError as error:
            cause = _refusal_cause(error, path)
            if cause is not None:  # the machine's refusal says nothing about the file
                raise SystemRefusedError(f"{path}: {cause}") from None
            raise UserInputError(
                f"study store: {path} is not a readable tricklab study store ({error}); "
                "the file was left untouched"
            ) from None
        if check != "ok":
            raise UserInputError(
                f"study store: {path} is corrupt ({check}); the file was left untouched"
            )
        if meta.get("format") != FORMAT:
            raise UserInputError(
                f"study store: {path} belongs to another program (an SQLite database "
                "without tricklab's study tables); the file was left untouched"
            )
        if meta.get("version") != str(VERSION):
            raise UserInputError(
                f"study store: {path} has format version {meta.get('version')}, this tricklab "
                f"reads version {VERSION}; the file was left untouched"
            )

    @staticmethod
    def _connect(path: Path) -> sqlite3.Connection:
        # Autocommit mode: transactions are explicit `BEGIN IMMEDIATE` blocks (`_write`),
        # which take the write lock up front, so the busy timeout applies to them.
        connection = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
        connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        connection.execute("PRAGMA journal_mode = WAL")
        # WAL with synchronous NORMAL survives a killed process; a power cut may lose
        # the last commits, never the database.
        connection.execute("PRAGMA synchronous = NORMAL")
        connection.execute("PRAGMA foreign_keys = ON")
        return connection

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        connection = self._connection
        with _refusals(self.path):
            connection.execute("BEGIN IMMEDIATE")
            try:
                yield connection
                connection.execute("COMMIT")
            except BaseException:
                # SQLite has already rolled back a transaction that hit a full disk; a
                # failing ROLLBACK must not hide the error that says why.
                if connection.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        connection.execute("ROLLBACK")
                raise

    def close(self) -> None:
        """Close the connection."""
        self._connection.close()

    def __enter__(self) -> StudyStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _meta(self, key: str) -> str:
        row = self._connection.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        if row is None or not isinstance(row[0], str):
            raise self.damaged(f"meta {key!r}", None if row is None else row[0], "text")
        return row[0]

    def damaged(self, where: str, value: Any, expected: str) -> UserInputError:
        """The one-line error for a value tricklab did not write: file, row, value, expected."""
        shown = "missing" if value is None else f"{value!r}"
        if len(shown) > 60:
            shown = f"{shown[:57]}..."
        return UserInputError(
            f"study store: {self.path}: {where} is {shown}, not {expected}; the store was "
            "changed outside tricklab; the file was left untouched"
        )

    def _json(self, where: str, text: Any, kind: type, expected: str) -> Any:
        """`text` parsed as JSON of `kind`, or a `UserInputError` naming the file and the row."""
        try:
            value = json.loads(text)
        except (TypeError, ValueError):
            raise self.damaged(where, text, expected) from None
        if not isinstance(value, kind):
            raise self.damaged(where, text, expected)
        return value

    @property
    def spec(self) -> dict[str, Any]:
        """The resolved study spec the store was created with.

        Raises:
            UserInputError: The stored spec is not a JSON object.
        """
        return self._json("meta 'spec'", self._meta("spec"), dict, "a JSON object")

    @property
    def fingerprint(self) -> str:
        """The digest of the spec's result-relevant parts, set at creation."""
        return self._meta("fingerprint")

    def update_spec(self, spec: dict[str, Any]) -> None:
        """Replace the stored spec by an equivalent one (same fingerprint, e.g. more seeds)."""
        with self._write() as connection:
            connection.execute("UPDATE meta SET value = ? WHERE key = 'spec'", (json.dumps(spec),))

    def mlflow_run(self, uri: str) -> str | None:
        """The id of the MLflow run that holds this study at `uri`; `None` before it is logged."""
        row = self._connection.execute(
            "SELECT value FROM meta WHERE key = ?", (f"mlflow_run {uri}",)).fetchone()
        return row[0] if row is not None and isinstance(row[0], str) else None

    def set_mlflow_run(self, uri: str, run_id: str) -> None:
        """Remember the MLflow run that holds this study at `uri`, for a later command to resume."""
        with self._write() as connection:
            connection.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                               (f"mlflow_run {uri}", run_id))

    def add_runs(self, records: Iterable[RunRecord]) -> int:
        """Insert the runs not yet in the store (usually `pending`); return how many were new."""
        now = time.time()
        rows = [
            (r.run_id, r.variant, r.seed, r.phase, r.learning_rate, r.status, r.attempts,
             r.run_dir, json.dumps(r.recipe), now)
            for r in records
        ]
        with self._write() as connection:
            before = connection.total_changes
            connection.executemany(
                # Only an existing run is skipped; a row breaking a constraint still fails.
                "INSERT INTO runs (run_id, variant, seed, phase, learning_rate, status,"
                " attempts, run_dir, recipe, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (run_id) DO NOTHING",
                rows,
            )
            return connection.total_changes - before

    def mark_started(self, run_id: str) -> int:
        """Set a run `running` and count the attempt; return the attempt number."""
        with self._write() as connection:
            connection.execute(
                "UPDATE runs SET status = 'running', attempts = attempts + 1, updated_at = ?"
                " WHERE run_id = ?",
                (time.time(), run_id),
            )
            return connection.execute(
                "SELECT attempts FROM runs WHERE run_id = ?", (run_id,)
            ).fetchone()[0]

    def set_status(
        self, run_id: str, status: str, error: str | None = None, refund: bool = False
    ) -> None:
        """Set a run's status (and its last error, when there is one) without touching results.

        Args:
            run_id: The run.
            status: Its new status.
            error: Its last error; `None` keeps the one recorded. Defaults to `None`.
            refund: Uncount the start that just ended: it was not the run's fault (the
                machine refused, the study was stopped, its batched group crashed).
                Defaults to `False`.
        """
        with self._write() as connection:
            connection.execute(
                "UPDATE runs SET status = ?, error = coalesce(?, error), updated_at = ?,"
                " attempts = max(attempts - ?, 0) WHERE run_id = ?",
                (status, error, time.time(), int(refund), run_id),
            )

    def interrupt_running(self) -> int:
        """Record the runs still `running` as `interrupted`, their start uncounted; return how many.

        Called by a driver that holds the study's lock: a run left `running` was
        started by a driver that is gone (killed, or stopped before it heard
        back), so it resumes from its checkpoints, its attempts unspent.
        """
        with self._write() as connection:
            before = connection.total_changes
            connection.execute(
                "UPDATE runs SET status = 'interrupted', attempts = max(attempts - 1, 0),"
                " updated_at = ? WHERE status = 'running'",
                (time.time(),),
            )
            return connection.total_changes - before

    def set_run_dir(self, run_id: str, run_dir: str) -> None:
        """Point a run at another directory (a main run reusing an identical search run)."""
        with self._write() as connection:
            connection.execute("UPDATE runs SET run_dir = ? WHERE run_id = ?", (run_dir, run_id))

    def record_result(self, run_id: str, result: dict[str, Any], refund: bool = False) -> None:
        """Store a run's `result.json` content: status, metrics, timing and per-epoch history.

        Args:
            run_id: The run.
            result: The content of its `result.json`.
            refund: Uncount the start that ended here (an `interrupted` run resumes
                with its attempts unspent). Defaults to `False`.
        """
        history = result.get("history") or {}
        rows = [
            (run_id, epoch, key, _finite(value))
            for key, values in history.items()
            for epoch, value in enumerate(values, start=1)
        ]
        metrics = {key: _finite(value) for key, value in (result.get("metrics") or {}).items()}
        with self._write() as connection:
            connection.execute(
                "UPDATE runs SET status = ?, metrics = ?, epochs_run = ?, wall_time_s = ?,"
                " updated_at = ?, attempts = max(attempts - ?, 0) WHERE run_id = ?",
                (result["status"], json.dumps(metrics), result.get("epochs_run"),
                 result.get("wall_time_s"), time.time(), int(refund), run_id),
            )
            connection.execute("DELETE FROM history WHERE run_id = ?", (run_id,))
            connection.executemany(
                "INSERT INTO history (run_id, epoch, key, value) VALUES (?, ?, ?, ?)", rows
            )

    def runs(self, phase: str | None = "main") -> list[RunRecord]:
        """Every run of `phase` (`None`: all phases), in the order they were added."""
        where, arguments = ("WHERE phase = ?", (phase,)) if phase is not None else ("", ())
        rows = self._connection.execute(
            f"SELECT {_RUN_COLUMNS} FROM runs {where} ORDER BY rowid", arguments
        ).fetchall()
        histories: dict[str, dict[str, list[float | None]]] = {}
        for run_id, epoch, key, value in self._connection.execute(
            "SELECT run_id, epoch, key, value FROM history ORDER BY run_id, key, epoch"
        ):
            self._check_history(run_id, epoch, key, value)
            histories.setdefault(run_id, {}).setdefault(key, []).append(value)
        return [self._record(row, histories.get(row[0], {})) for row in rows]

    def run(self, run_id: str) -> RunRecord | None:
        """One run by id, or `None`."""
        row = self._connection.execute(
            f"SELECT {_RUN_COLUMNS} FROM runs WHERE run_id = ?", (run_id,)
        ).fetchone()
        if row is None:
            return None
        history: dict[str, list[float | None]] = {}
        for epoch, key, value in self._connection.execute(
            "SELECT epoch, key, value FROM history WHERE run_id = ? ORDER BY key, epoch",
            (run_id,),
        ):
            self._check_history(run_id, epoch, key, value)
            history.setdefault(key, []).append(value)
        return self._record(row, history)

    def _check_history(self, run_id: Any, epoch: Any, key: Any, value: Any) -> None:
        where = f"run {run_id!r}: history"
        if not _is_int(epoch) or epoch < 1:
            raise self.damaged(f"{where} epoch", epoch, "an epoch number (1 or more)")
        if not isinstance(key, str):
            raise self.damaged(f"{where} key", key, "a metric name")
        if value is not None and not _is_number(value):
            raise self.damaged(f"{where} {key!r} at epoch {epoch}", value, "a number or NULL")

    def _record(self, row: tuple, history: dict[str, list[float | None]]) -> RunRecord:
        """A `runs` row as a `RunRecord`, every column checked to be what tricklab writes.

        Raises:
            UserInputError: Naming the file, the run and the column that is not.
        """
        (run_id, variant, seed, phase, learning_rate, status, attempts, run_dir, recipe,
         metrics, epochs_run, wall_time_s, error) = row
        if not isinstance(run_id, str) or not run_id:
            raise self.damaged("a run's run_id", run_id, "a run id")
        where = f"run {run_id!r}:"
        checks = (
            ("variant", variant, isinstance(variant, str) and variant != "", "a variant name"),
            ("seed", seed, _is_int(seed), "an integer"),
            ("phase", phase, phase in PHASES, f"one of {', '.join(PHASES)}"),
            ("learning_rate", learning_rate, learning_rate is None or _is_number(learning_rate),
             "a number or NULL"),
            ("status", status, status in STATUSES, f"one of {', '.join(STATUSES)}"),
            ("attempts", attempts, _is_int(attempts) and attempts >= 0,
             "a count (0 or more)"),
            ("run_dir", run_dir, _is_run_dir(run_dir), "a folder inside the study"),
            ("epochs_run", epochs_run, epochs_run is None or (_is_int(epochs_run)
                                                              and epochs_run >= 0),
             "a count or NULL"),
            ("wall_time_s", wall_time_s, wall_time_s is None or _is_number(wall_time_s),
             "a number or NULL"),
            ("error", error, error is None or isinstance(error, str), "text or NULL"),
        )
        for column, value, good, expected in checks:
            if not good:
                raise self.damaged(f"{where} {column}", value, expected)
        parsed_recipe = self._json(f"{where} recipe", recipe, dict, "a recipe as a JSON object")
        parsed_metrics: dict[str, Any] = {}
        if metrics is not None:
            expected = "a JSON object of metric names and numbers (or null)"
            parsed_metrics = self._json(f"{where} metrics", metrics, dict, expected)
            if not all(value is None or _is_number(value) for value in parsed_metrics.values()):
                raise self.damaged(f"{where} metrics", metrics, expected)
        return RunRecord(
            run_id=run_id, variant=variant, seed=seed, phase=phase, learning_rate=learning_rate,
            status=status, attempts=attempts, run_dir=run_dir, recipe=parsed_recipe,
            metrics=parsed_metrics, history=history,
            epochs_run=epochs_run, wall_time_s=wall_time_s, error=error,
        )

    def set_learning_rate_choice(self, choice: LearningRateChoice) -> None:
        """Record the rate a search chose for a variant (replacing an earlier choice)."""
        scores = json.dumps([[rate, score] for rate, score in choice.scores.items()])
        with self._write() as connection:
            connection.execute(
                "INSERT OR REPLACE INTO lr_choices (variant, learning_rate, metric, scores)"
                " VALUES (?, ?, ?, ?)",
                (choice.variant, choice.learning_rate, choice.metric, scores),
            )

    def learning_rate_choices(self) -> dict[str, LearningRateChoice]:
        """The chosen rate of every searched variant, by variant name.

        Raises:
            UserInputError: A row that is not what tricklab writes, naming the file and variant.
        """
        choices = {}
        for variant, rate, metric, scores in self._connection.execute(
            "SELECT variant, learning_rate, metric, scores FROM lr_choices ORDER BY rowid"
        ):
            where = f"learning-rate choice {variant!r}:"
            if not isinstance(variant, str):
                raise self.damaged("a learning-rate choice's variant", variant, "a variant name")
            if not _is_number(rate):
                raise self.damaged(f"{where} learning_rate", rate, "a number")
            if not isinstance(metric, str):
                raise self.damaged(f"{where} metric", metric, "a metric name")
            expected = "a JSON list of [rate, score] pairs"
            pairs = self._json(f"{where} scores", scores, list, expected)
            if not all(isinstance(pair, list) and len(pair) == 2 and _is_number(pair[0])
                       and (pair[1] is None or _is_number(pair[1])) for pair in pairs):
                raise self.damaged(f"{where} scores", scores, expected)
            choices[variant] = LearningRateChoice(variant, rate, metric, dict(pairs))
        return choices


def _companions(path: Path) -> list[Path]:
    """The `-wal` and `-shm` files SQLite keeps beside a store in WAL mode."""
    return [path.with_name(f"{path.name}-{suffix}") for suffix in ("wal", "shm")]


def _refusal_cause(error: sqlite3.Error, path: Path) -> str | None:
    """The cause when SQLite's `error` is the machine's refusal, in `os.strerror`'s words.

    SQLite reports a failure to create or grow its journal, `-wal` or `-shm`
    file as an I/O error or as "unable to open", whatever the system said; the
    folder tells what it was.
    """
    code = getattr(error, "sqlite_errorcode", None)
    cause = _SQLITE_REFUSALS.get(code & 0xFF) if isinstance(code, int) else None
    if cause is None or code & 0xFF not in (SQLITE_IOERR, SQLITE_CANTOPEN):
        return cause
    with contextlib.suppress(OSError):
        stat = os.statvfs(path.parent)
        if stat.f_bavail == 0 or (stat.f_favail == 0 and stat.f_files):
            return _SQLITE_REFUSALS[SQLITE_FULL]
        if not os.access(path.parent, os.W_OK):
            return _SQLITE_REFUSALS[SQLITE_READONLY]
    return cause


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_run_dir(value: Any) -> bool:
    """A relative folder that stays inside the study (tricklab trains and reads there)."""
    if not isinstance(value, str) or not value or "\\" in value:
        return False
    path = PurePosixPath(value)
    return not path.is_absolute() and ".." not in path.parts


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True  # another user's process (or a number no process has): leave its file
    return True


@contextmanager
def _refusals(path: Path) -> Iterator[None]:
    """Turn the machine's refusals while writing the store at `path` into `SystemRefusedError`.

    SQLite reports a full disk or a read-only file with its own codes, not an
    `OSError`; either way the message names the store and the cause.
    """
    try:
        yield
    except sqlite3.OperationalError as error:
        cause = _refusal_cause(error, path)
        if cause is None:
            raise
        raise SystemRefusedError(f"{path}: {cause}") from error
    except OSError as error:
        if isinstance(error, SystemRefusedError) or not is_environment_failure(error):
            raise
        line = system_error_line(error)
        raise SystemRefusedError(line if error.filename else f"{path}: {line}") from error
