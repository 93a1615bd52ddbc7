"""A study at a glance, for `tricklab runs`: its runs counted, its best variant, read-only.

The store is queried directly, read-only, and leaves the folder exactly as it
was: a store its writer closed (no `-wal` file) is opened as immutable, which
makes no lock or companion file; one with a `-wal` (a study running, or
killed) is read through the companions already there. Whether the study is
being run now is its driver's lock (`StudyLock`), tested without taking it.

The names below are the study layer's (`tricklab.run.study_folder`,
`tricklab.study.store`, `tricklab.run.tricks_plan`), copied: importing them
would import SciPy and the recipe schema, which a listing does not need. The
tests hold them equal.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

try:
    import fcntl
except ImportError:  # Windows: no flock; a study there is never shown as running
    fcntl = None  # type: ignore[assignment]

STORE_NAME = "study.db"
STORE_FORMAT = "tricklab-study"
STORE_VERSION = "1"
LOCK_NAME = "study.lock"
TRICKS_FILE = "tricks.yaml"
STUDY_RUN_STATUSES = ("completed", "stopped_early", "diverged", "failed", "running",
                      "interrupted", "pending")
"""A study's run statuses (the store's), finished first, in the order they are counted."""
FINISHED = ("completed", "stopped_early", "diverged", "failed")
SUCCEEDED = ("completed", "stopped_early")
LOWER_IS_BETTER_WORDS = ("loss", "error", "mae", "mse", "rmse", "mape")
"""Words in a metric's name that say smaller is better, where the store does not say."""


@dataclass(frozen=True)
class StudyGlance:
    """What `tricklab runs` shows of a study.

    Args:
        status: `running` (its driver holds the lock), `completed` (every run
            finished) or `unfinished`.
        runs: Its main runs per status, in `STUDY_RUN_STATUSES` order, none empty.
        metric: The metric the study compares (`None` when its spec names none).
        best: The variant whose succeeded runs have the best mean `metric`.
        value: That mean.
        val_loss: The mean final validation loss of the best variant's runs.
        wall_time_s: Its runs' training time, summed.
        date: Its last change (a run's), else its creation, as a POSIX time.
    """

    status: str
    runs: dict[str, int]
    metric: str | None
    best: str | None
    value: float | None
    val_loss: float | None
    wall_time_s: float | None
    date: float | None


def glance_at_study(folder: Path) -> StudyGlance:
    """Read a study folder's store and sum it up.

    Args:
        folder: The study folder, holding `study.db`.

    Raises:
        sqlite3.Error: `study.db` is not an SQLite database, or cannot be read.
        ValueError: It is another program's database, another version of the
            store, or its spec is not a JSON object.
    """
    spec, rows, created = _read_store(folder / STORE_NAME)
    counts = dict.fromkeys(STUDY_RUN_STATUSES, 0)
    for row in rows:
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    unfinished = not rows or any(row["status"] not in FINISHED for row in rows)
    metric = spec.get("metric") if isinstance(spec.get("metric"), str) else None
    best, value, val_loss = _best_variant(spec, rows, metric)
    times = [time for row in rows if (time := finite_number(row["wall_time_s"])) is not None]
    changes = [stamp for row in rows if (stamp := finite_number(row["updated_at"])) is not None]
    return StudyGlance(
        status="running" if _lock_held(folder / LOCK_NAME)
        else "unfinished" if unfinished else "completed",
        runs={status: count for status, count in counts.items() if count},
        metric=metric, best=best, value=value, val_loss=val_loss,
        wall_time_s=sum(times) if times else None,
        date=max(changes, default=created),
    )


def finite_number(value: Any) -> float | None:
    """`value` if it is a finite number, else `None` (missing, NaN, text, a boolean).

    Args:
        value: Anything read from JSON or SQLite.
    """
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return value


def _read_store(path: Path) -> tuple[dict[str, Any], list[dict[str, Any]], float | None]:
    """The store's spec, main runs and creation time (see the module's docstring on how)."""
    wal = path.with_name(f"{path.name}-wal").exists()
    try:
        return _query_store(path, "mode=ro" if wal else "immutable=1")
    except sqlite3.DatabaseError:
        if wal:
            raise
        # Its driver may have started writing while the file was read as unchanging.
        return _query_store(path, "mode=ro")


def _query_store(path: Path, mode: str) -> tuple[dict[str, Any], list[dict[str, Any]],
                                                 float | None]:
    connection = sqlite3.connect(f"{path.resolve().as_uri()}?{mode}", uri=True)
    try:
        meta = dict(connection.execute("SELECT key, value FROM meta").fetchall())
        if meta.get("format") != STORE_FORMAT:
            raise ValueError("another program's database")
        if meta.get("version") != STORE_VERSION:
            raise ValueError(f"format version {meta.get('version')}")
        spec = json.loads(meta.get("spec") or "null")
        if not isinstance(spec, dict):
            raise ValueError("its spec is not a JSON object")
        rows = [
            {"variant": variant, "status": status, "metrics": metrics,
             "wall_time_s": wall_time, "updated_at": updated}
            for variant, status, metrics, wall_time, updated in connection.execute(
                "SELECT variant, status, metrics, wall_time_s, updated_at FROM runs"
                " WHERE phase = 'main' ORDER BY rowid")
        ]
    finally:
        connection.close()
    try:
        created = finite_number(float(meta.get("created_at")))
    except (TypeError, ValueError):
        created = None
    return spec, rows, created


def _lock_held(lock: Path) -> bool:
    """Whether a driver holds the study's lock now (a killed driver's lock file is not held)."""
    if fcntl is None:
        return False
    try:
        fd = os.open(lock, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        os.close(fd)
    return False


def _best_variant(spec: dict[str, Any], rows: list[dict[str, Any]], metric: str | None
                  ) -> tuple[str | None, float | None, float | None]:
    """The variant whose succeeded runs have the best mean `metric`: name, mean, mean val_loss."""
    if metric is None:
        return None, None, None
    values: dict[str, list[float]] = {}
    losses: dict[str, list[float]] = {}
    for row in rows:
        if row["status"] not in SUCCEEDED:
            continue
        try:
            metrics = json.loads(row["metrics"] or "{}")
        except (TypeError, ValueError):
            continue
        if not isinstance(metrics, dict):
            continue
        if (value := finite_number(metrics.get(metric))) is not None:
            values.setdefault(row["variant"], []).append(value)
        if (loss := finite_number(metrics.get("val_loss"))) is not None:
            losses.setdefault(row["variant"], []).append(loss)
    if not values:
        return None, None, None
    means = {variant: sum(found) / len(found) for variant, found in values.items()}
    higher = spec.get("higher_is_better")
    if not isinstance(higher, bool):
        # Left to the analysis by a store made after a quick check; the name says it too.
        higher = not any(word in metric.lower() for word in LOWER_IS_BETTER_WORDS)
    best = (max if higher else min)(means, key=means.__getitem__)
    loss = losses.get(best)
    return best, means[best], sum(loss) / len(loss) if loss else None


__all__ = ["LOCK_NAME", "STORE_NAME", "TRICKS_FILE", "StudyGlance", "finite_number",
           "glance_at_study"]
