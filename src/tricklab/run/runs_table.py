"""`tricklab runs`: every run and study under a folder, found by their files; `runs diff`: two runs.

A folder is recognised by what tricklab wrote into it, never by its name:

- a **study** holds its store, `study.db` (a **tricks** folder is a study with
  `tricks.yaml` beside it); its runs (`runs/`) are counted from the store, not
  listed one by one, and its best variant is the one whose succeeded runs have
  the best mean of the study's metric;
- a **run** holds `recipe.yaml` with `result.json` or checkpoints; a folder
  with `doctor.json` or `lr_find.json` and no `result.json` is a **doctor** or
  **lr-find** run;
- a run or study missing a file it should have is listed as `incomplete`,
  naming what is missing, never an error.

Listing stays fast on thousands of runs: folders are read with `os.scandir`,
from a run only `result.json`, from a study a read-only query of its store;
nothing here imports PyTorch, NumPy or the recipe schema. `runs diff` reads two
runs' recipes with the bounded YAML reader and compares them field by field.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import math
import os
import re
import sqlite3
import warnings
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from tricklab.differences import ABSENT, recipe_differences
from tricklab.errors import UserInputError, did_you_mean, shown_value

try:
    import fcntl
except ImportError:  # Windows: no flock; a study there is never shown as running
    fcntl = None  # type: ignore[assignment]

# The names below are the study layer's (`tricklab.run.study_folder`, `tricklab.study.store`,
# `tricklab.run.tricks_plan`); importing them would import SciPy and the recipe schema, which
# a listing does not need. The tests hold them equal.
STORE_NAME = "study.db"
STORE_FORMAT = "tricklab-study"
STORE_VERSION = "1"
TRICKS_FILE = "tricks.yaml"
LOCK_NAME = "study.lock"
RUN_STATUSES = ("completed", "stopped_early", "diverged", "interrupted")
"""What `result.json` says of a run, in the order the table counts them."""
STUDY_RUN_STATUSES = ("completed", "stopped_early", "diverged", "failed", "running",
                      "interrupted", "pending")
"""A study's run statuses (the store's), finished first, in the order the table counts them."""
FINISHED = ("completed", "stopped_early", "diverged", "failed")
SUCCEEDED = ("completed", "stopped_early")

STUDY_OWN = frozenset({"runs", "pretrained"})
"""A study folder's own subfolders: its runs and the models they reuse, counted from the store."""
RUN_MARKERS = frozenset({"recipe.yaml", "result.json", "history.csv", "checkpoints",
                         "doctor.json", "lr_find.json"})
"""Files only a run folder holds: one of them makes a folder a run (complete or not)."""
STUDY_MARKERS = frozenset({STORE_NAME, TRICKS_FILE, "report.html", LOCK_NAME})
"""Files only a study folder holds; without `study.db` the study is incomplete."""
MAX_DEPTH = 8
"""How deep below the folder runs are looked for (`runs/<group>/<name>` is depth 2)."""
_CHECKPOINT = re.compile(r"^epoch_(\d{4,})\.pt$")

COLUMNS = ("name", "kind", "status", "runs", "epochs", "metric", "val_loss", "best",
           "wall_time", "date", "note")
"""The table's columns, the names `--sort` and `--filter` take (`--sort metric` sorts by
its value, `--filter metric=...` matches its name; `--sort runs` sorts by their count)."""
_ATTRIBUTES = {"wall_time": "wall_time_s", "runs": "run_count"}


@dataclass
class Entry:
    """One row of `tricklab runs`: a run, a study, a doctor or an lr-find folder.

    Args:
        name: The folder, relative to the folder listed (the folder itself as given).
        kind: `run`, `study`, `tricks`, `doctor` or `lr-find`.
        status: A run's `result.json` status; a study's `completed` (every run
            finished), `running` (its driver holds the lock) or `unfinished`;
            `completed` for a doctor or lr-find folder; `incomplete` for any of
            them missing a file (named in `missing`).
        runs: A study's main runs per status (`None` for a run).
        epochs: Epochs trained (a run's `epochs_run`, or its newest checkpoint's).
        metric: The key metric: `test_accuracy`, another test score where there is
            none, or the study's own metric.
        value: Its value (a study's: the best variant's mean).
        val_loss: The final validation loss (a study's: the best variant's mean).
        best: A study's best variant.
        wall_time_s: Training wall time in seconds (a study's: its runs' summed).
        date: When the result was written (a study's: its last change), as a POSIX time.
        missing: The files an incomplete folder lacks.
        note: What else a person should know: a doctor's verdict, an lr-find's
            suggestion, how an incomplete run can go on.
    """

    name: str
    kind: str
    status: str
    runs: dict[str, int] | None = None
    epochs: int | None = None
    metric: str | None = None
    value: float | None = None
    val_loss: float | None = None
    best: str | None = None
    wall_time_s: float | None = None
    date: float | None = None
    missing: list[str] = field(default_factory=list)
    note: str | None = None

    @property
    def run_count(self) -> int | None:
        """A study's runs, all statuses together."""
        return None if self.runs is None else sum(self.runs.values())

    def to_dict(self) -> dict[str, Any]:
        """The row as `--json` prints it: the date in ISO 8601 with the local offset."""
        return {
            "name": self.name, "kind": self.kind, "status": self.status, "runs": self.runs,
            "epochs": self.epochs, "metric": self.metric, "value": self.value,
            "val_loss": self.val_loss, "best": self.best, "wall_time_s": self.wall_time_s,
            "date": _iso_date(self.date), "missing": self.missing, "note": self.note,
        }


def find_runs(folder: str | Path) -> list[Entry]:
    """Every run and study in `folder` and below it, by name.

    A folder tricklab cannot read is left out with a warning.

    Args:
        folder: Where to look, e.g. `runs`.

    Raises:
        UserInputError: `folder` does not exist or is not a folder.
    """
    root = Path(folder)
    if not root.is_dir():
        what = "is not a folder" if root.exists() else "does not exist"
        hint = ("tricklab writes runs and studies into runs/ by default; give the folder "
                "that holds them: tricklab runs FOLDER")
        raise UserInputError(f"{root} {what}; {hint}")
    entries: list[Entry] = []
    pending = [(root, 0)]
    while pending:
        path, depth = pending.pop()
        try:
            with os.scandir(path) as scan:
                children = {child.name: child for child in scan}
        except OSError as error:
            warnings.warn(f"{path}: cannot be read ({error.strerror or error}); left out",
                          stacklevel=2)
            continue
        name = str(root) if path == root else path.relative_to(root).as_posix()
        names = children.keys()
        if not names.isdisjoint(STUDY_MARKERS):
            entries.append(_study_entry(path, name, names))
            skipped = STUDY_OWN
        elif not names.isdisjoint(RUN_MARKERS):
            entries.append(_run_entry(path, name, names))
            continue
        else:
            skipped = frozenset()
        if depth < MAX_DEPTH:
            pending += [(path / child, depth + 1) for child in sorted(names, reverse=True)
                        if child not in skipped and not child.startswith(".")
                        and _is_folder(children[child])]
    entries.sort(key=lambda entry: entry.name)
    return entries


def _is_folder(entry: os.DirEntry) -> bool:
    with contextlib.suppress(OSError):
        return entry.is_dir()
    return False


def _run_entry(path: Path, name: str, names: Any) -> Entry:
    """A run folder's row, from its `result.json` (a doctor's or lr-find's from their JSON)."""
    if "result.json" not in names and "lr_find.json" in names:
        return _tool_entry(path, name, names, "lr-find", "lr_find.json", _lr_find_note)
    if "result.json" not in names and "doctor.json" in names:
        return _tool_entry(path, name, names, "doctor", "doctor.json", _doctor_note)
    entry = Entry(name, "run", "incomplete", missing=[
        file for file in ("recipe.yaml", "result.json") if file not in names])
    result = _read_json(path / "result.json") if "result.json" in names else None
    if result is None:
        epochs = _checkpoint_epochs(path / "checkpoints") if "checkpoints" in names else []
        entry.epochs = max(epochs, default=None)
        entry.date = _mtime(path)
        if "result.json" in names:
            entry.note = "result.json is not a run's result"
        elif epochs and "recipe.yaml" in names:
            entry.note = (f"stopped after epoch {epochs[-1]}: tricklab train "
                          f"{path / 'recipe.yaml'} --out {path} --resume continues it")
        elif epochs:
            entry.note = f"checkpoints to epoch {epochs[-1]}, no recipe to resume with"
        else:
            entry.note = "no result and no checkpoint: the run never finished an epoch"
        return entry
    status = result.get("status")
    if entry.missing:
        entry.note = f"result.json says {status}" if isinstance(status, str) else None
    elif status in RUN_STATUSES:
        entry.status = status
    else:
        entry.missing, entry.note = ["result.json status"], "result.json names no status"
    metrics = result.get("metrics") if isinstance(result.get("metrics"), dict) else {}
    entry.metric = key_metric(metrics)
    entry.value = _number(metrics.get(entry.metric)) if entry.metric else None
    entry.val_loss = _number(metrics.get("val_loss"))
    epochs = result.get("epochs_run")
    entry.epochs = epochs if isinstance(epochs, int) and not isinstance(epochs, bool) else None
    entry.wall_time_s = _number(result.get("wall_time_s"))
    entry.date = _mtime(path / "result.json")
    return entry


def key_metric(metrics: dict[str, Any]) -> str | None:
    """The metric a run is judged by: `test_accuracy`, else the first other test score, else
    `test_loss`, then the same on validation, then on training; `None` for no metrics.

    Args:
        metrics: `result.json`'s final metrics.
    """
    for split in ("test", "val", "train"):
        scores = [name for name in metrics if name.startswith(f"{split}_")]
        for wanted in (f"{split}_accuracy", *(n for n in scores if not n.endswith("loss")),
                       f"{split}_loss"):
            if wanted in metrics:
                return wanted
    return next(iter(metrics), None)


def _tool_entry(path: Path, name: str, names: Any, kind: str, file: str, note: Any) -> Entry:
    entry = Entry(name, kind, "completed", date=_mtime(path / file))
    content = _read_json(path / file)
    entry.missing = ["recipe.yaml"] if "recipe.yaml" not in names else []
    if content is None:
        entry.missing.append(file)
    if entry.missing:
        entry.status = "incomplete"
    if content is not None:
        entry.note = note(content)
    return entry


def _doctor_note(content: dict[str, Any]) -> str | None:
    verdict = content.get("verdict")
    return f"verdict: {verdict}" if isinstance(verdict, str) else None


def _lr_find_note(content: dict[str, Any]) -> str:
    suggestion = _number(content.get("suggestion"))
    if suggestion is None:
        return "the loss never fell"
    return f"suggested max learning rate {suggestion:.3g}"


def _study_entry(path: Path, name: str, names: Any) -> Entry:
    """A study folder's row, from a read-only look at its store."""
    kind = "tricks" if TRICKS_FILE in names else "study"
    entry = Entry(name, kind, "incomplete", date=_mtime(path))
    if STORE_NAME not in names:
        entry.missing, entry.note = [STORE_NAME], "the study never started its store"
        return entry
    try:
        spec, rows, created = _read_store(path / STORE_NAME)
    except (sqlite3.Error, ValueError, TypeError) as error:
        entry.missing = [STORE_NAME]
        entry.note = f"{STORE_NAME} is not a readable tricklab study store ({error})"
        return entry
    counts = {status: 0 for status in STUDY_RUN_STATUSES}
    for row in rows:
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    entry.runs = {status: count for status, count in counts.items() if count}
    unfinished = any(row["status"] not in FINISHED for row in rows)
    entry.status = ("running" if _lock_held(path / LOCK_NAME)
                    else "unfinished" if unfinished or not rows else "completed")
    metric = spec.get("metric")
    entry.metric = metric if isinstance(metric, str) else None
    entry.best, entry.value, entry.val_loss = _best_variant(spec, rows, entry.metric)
    times = [row["wall_time_s"] for row in rows if _number(row["wall_time_s"]) is not None]
    entry.wall_time_s = sum(times) if times else None
    entry.date = max((row["updated_at"] for row in rows), default=created or entry.date)
    return entry


def _read_store(path: Path) -> tuple[dict[str, Any], list[dict[str, Any]], float | None]:
    """A study store's spec, main runs and creation time, read without changing the folder.

    A store whose writer closed it has no `-wal` file: it is opened as immutable,
    which makes no lock or companion file. One with a `-wal` (a study running,
    or killed) is opened read-only, through the companions already there.

    Raises:
        sqlite3.Error: Not an SQLite database, or not readable.
        ValueError: Another program's database, or another version of the store.
    """
    wal = path.with_name(f"{path.name}-wal").exists()
    mode = "mode=ro" if wal else "immutable=1"
    try:
        return _query_store(path, mode)
    except sqlite3.DatabaseError:
        if wal:
            raise
        # The driver may have started writing while the file was read as unchanging.
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
        spec = json.loads(meta["spec"])
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
    return spec, rows, _number(_float(meta.get("created_at")))


def _float(text: Any) -> float | None:
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def _lock_held(lock: Path) -> bool:
    """Whether a study's driver holds its lock now (a killed driver's lock file is not held)."""
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
        except ValueError:
            continue
        if not isinstance(metrics, dict):
            continue
        if (value := _number(metrics.get(metric))) is not None:
            values.setdefault(row["variant"], []).append(value)
        if (loss := _number(metrics.get("val_loss"))) is not None:
            losses.setdefault(row["variant"], []).append(loss)
    if not values:
        return None, None, None
    means = {variant: sum(found) / len(found) for variant, found in values.items()}
    higher = spec.get("higher_is_better")
    if not isinstance(higher, bool):
        # A store made from a quick check leaves the direction to the analysis; the names
        # of losses and errors say it as well.
        higher = not any(word in metric.lower() for word in
                         ("loss", "error", "mae", "mse", "rmse", "mape"))
    best = (max if higher else min)(means, key=means.__getitem__)
    loss = losses.get(best)
    return best, means[best], sum(loss) / len(loss) if loss else None


def _read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object from `path`, or `None` where it is missing, unreadable or not an object."""
    try:
        content = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    return content if isinstance(content, dict) else None


def _checkpoint_epochs(folder: Path) -> list[int]:
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    return sorted(int(match.group(1)) for name in names if (match := _CHECKPOINT.match(name)))


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except OSError:
        return None


def _number(value: Any) -> float | None:
    """A finite number, or `None` (a missing, NaN or non-numeric value)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return value


def _iso_date(stamp: float | None) -> str | None:
    if stamp is None:
        return None
    return datetime.fromtimestamp(stamp).astimezone().isoformat(timespec="seconds")


# --- sorting and filtering -----------------------------------------------------------------


def sort_entries(entries: list[Entry], column: str, descending: bool = False) -> list[Entry]:
    """The rows ordered by `column` (a leading `-` for descending); empty cells always last.

    Args:
        entries: The rows.
        column: One of `COLUMNS`, e.g. `date` or `-metric`.
        descending: Largest first (as a leading `-` says). Defaults to `False`.

    Raises:
        UserInputError: `column` is not one of `COLUMNS`.
    """
    if column.startswith("-"):
        column, descending = column[1:], True
    attribute = _attribute("--sort", column, column)
    if column == "metric":
        attribute = "value"
    present = [entry for entry in entries if getattr(entry, attribute) is not None]
    absent = [entry for entry in entries if getattr(entry, attribute) is None]
    present.sort(key=lambda entry: getattr(entry, attribute), reverse=descending)
    return present + absent


def _attribute(option: str, column: str, given: str) -> str:
    if column not in COLUMNS:
        raise UserInputError(
            f"{option}: {shown_value(given)} is not a column{did_you_mean(column, COLUMNS)}; "
            f"choose one of {', '.join(COLUMNS)}"
            + (", with a leading - for descending" if option == "--sort" else "")
        )
    return _ATTRIBUTES.get(column, column)


def filter_entries(entries: list[Entry], filters: list[str]) -> list[Entry]:
    """The rows matching every `COLUMN=VALUE` of `filters`.

    A value may hold shell wildcards (`name=chapter11/*`); a number matches a
    number of the same value (`epochs=10`); a date matches its ISO text
    (`date=2026-05-*`).

    Args:
        entries: The rows.
        filters: `COLUMN=VALUE` texts, e.g. `status=completed`.

    Raises:
        UserInputError: A filter without `=`, or naming no column.
    """
    tests = []
    for text in filters:
        column, equals, wanted = text.partition("=")
        if not equals or not column:
            raise UserInputError(
                f"--filter: {shown_value(text)} is not COLUMN=VALUE, e.g. status=completed")
        tests.append((_attribute("--filter", column.strip(), text), wanted.strip()))
    return [entry for entry in entries
            if all(_matches(entry, attribute, wanted) for attribute, wanted in tests)]


def _matches(entry: Entry, attribute: str, wanted: str) -> bool:
    value = getattr(entry, attribute)
    if attribute == "date":
        value = _iso_date(value)
    if value is None:
        return wanted in ("", "-")
    if isinstance(value, int | float):
        number = _float(wanted)
        if number is not None:
            return math.isclose(value, number, rel_tol=1e-9, abs_tol=1e-12)
        value = _number_text(value)
    return fnmatch.fnmatchcase(str(value), wanted)


# --- what a person reads -------------------------------------------------------------------


def format_table(entries: list[Entry]) -> str:
    """The rows as a plain-text table, one line each; a column no row fills is left out."""
    header = {"name": "name", "kind": "kind", "status": "status", "runs": "runs",
              "epochs": "epochs", "metric": "metric", "val_loss": "val_loss", "best": "best",
              "wall_time": "wall time", "date": "date", "note": "note"}
    rows = [_cells(entry) for entry in entries]
    shown = [column for column in COLUMNS
             if column in ("name", "kind", "status") or any(row[column] for row in rows)]
    widths = {column: max(len(header[column]), *(len(row[column]) for row in rows))
              for column in shown}
    right = {"epochs", "val_loss", "wall_time"}

    def line(cells: dict[str, str]) -> str:
        return "  ".join(cells[c].rjust(widths[c]) if c in right else cells[c].ljust(widths[c])
                         for c in shown).rstrip()

    return "\n".join([line(header), *map(line, rows)])


def _cells(entry: Entry) -> dict[str, str]:
    note = entry.note or ""
    if entry.missing:
        note = f"missing {', '.join(entry.missing)}" + (f"; {note}" if note else "")
    metric = ""
    if entry.metric is not None:
        metric = f"{entry.metric} {_score(entry.value)}"
    return {
        "name": entry.name, "kind": entry.kind, "status": entry.status,
        "runs": ", ".join(f"{count} {status}" for status, count in (entry.runs or {}).items()),
        "epochs": "" if entry.epochs is None else str(entry.epochs),
        "metric": metric,
        "val_loss": "" if entry.val_loss is None else _score(entry.val_loss),
        "best": entry.best or "",
        "wall_time": _duration(entry.wall_time_s),
        "date": "" if entry.date is None else datetime.fromtimestamp(entry.date).strftime(
            "%Y-%m-%d %H:%M"),
        "note": note,
    }


def _score(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.4f}" if abs(value) < 1e4 else f"{value:.4g}"


def _number_text(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _duration(seconds: float | None) -> str:
    """`7.2s`, `4m05s`, `3h02m`: short enough for a column."""
    if seconds is None:
        return ""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, rest = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{rest:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


# --- runs diff -----------------------------------------------------------------------------


@dataclass(frozen=True)
class RunSide:
    """What `runs diff` reads of one run: its recipe and its `result.json` (if any).

    Args:
        path: The run folder.
        recipe: Its resolved recipe.
        result: Its result (`{}` for a run that has none yet).
    """

    path: Path
    recipe: dict[str, Any]
    result: dict[str, Any]

    @property
    def metrics(self) -> dict[str, Any]:
        """The final metrics of `result.json`."""
        metrics = self.result.get("metrics")
        return metrics if isinstance(metrics, dict) else {}

    @property
    def status(self) -> str:
        """The result's status, or `incomplete` without one."""
        status = self.result.get("status")
        return status if isinstance(status, str) else "incomplete"


def read_run(folder: str | Path) -> RunSide:
    """A run folder's recipe and result, for `runs diff`.

    Raises:
        UserInputError: The folder does not exist, is a study, holds no
            `recipe.yaml`, or its recipe is not a mapping.
    """
    from tricklab.recipe.yaml_input import read_yaml_file  # PyYAML: only a diff needs it

    path = Path(folder)
    recipe_path = path / "recipe.yaml"
    if not recipe_path.is_file():
        if not path.exists():
            why = "does not exist"
        elif (path / STORE_NAME).is_file():
            example = path / "runs" / "<variant>" / "seed-0"
            why = f"is a study, not a run; compare two of its runs, e.g. {example}"
        else:
            why = "is not a run folder (no recipe.yaml)"
        raise UserInputError(f"runs diff: {path} {why}; `tricklab runs` lists the runs there are")
    recipe = read_yaml_file(recipe_path)
    if not isinstance(recipe, dict):
        raise UserInputError(f"runs diff: {recipe_path} is not a run's resolved recipe (a mapping)")
    return RunSide(path, recipe, _read_json(path / "result.json") or {})


def diff_runs(a: str | Path, b: str | Path) -> dict[str, Any]:
    """Two runs compared: the recipe fields that differ and the metrics side by side.

    Args:
        a: The first run folder.
        b: The second.

    Returns:
        `a` and `b` (the folders), `recipe`: one `{"field", "a", "b"}` per field
        that differs, in document order (a side without the field has no key),
        and `results`: `status`, `epochs`, `wall_time_s` and every metric of either
        run, each `{"a": value, "b": value}` (`None` where a run has none).

    Raises:
        UserInputError: Either folder is not a run (`read_run`).
    """
    first, second = read_run(a), read_run(b)
    fields = []
    for path, left, right in recipe_differences(first.recipe, second.recipe):
        item: dict[str, Any] = {"field": path}
        if left is not ABSENT:
            item["a"] = left
        if right is not ABSENT:
            item["b"] = right
        fields.append(item)
    results: dict[str, dict[str, Any]] = {
        "status": {"a": first.status, "b": second.status},
        "epochs": {"a": first.result.get("epochs_run"), "b": second.result.get("epochs_run")},
        "wall_time_s": {"a": first.result.get("wall_time_s"),
                        "b": second.result.get("wall_time_s")},
    }
    for name in [*first.metrics, *(n for n in second.metrics if n not in first.metrics)]:
        results[name] = {"a": first.metrics.get(name), "b": second.metrics.get(name)}
    return {"a": str(first.path), "b": str(second.path), "recipe": fields, "results": results}


def format_diff(diff: dict[str, Any]) -> str:
    """`diff_runs`'s answer as lines: each differing field `path: A → B`, then the results
    in two columns with B − A beside the numbers."""
    lines = [f"A: {diff['a']}", f"B: {diff['b']}"]
    if diff["recipe"]:
        count = len(diff["recipe"])
        lines.append(f"recipe: {count} field{'s' * (count != 1)} differ{'s' * (count == 1)}")
        lines += [f"  {item['field']}: {_shown(item, 'a')} → {_shown(item, 'b')}"
                  for item in diff["recipe"]]
    else:
        lines.append("recipe: the same")
    rows = [(_LABELS.get(name, name), _result_text(name, pair["a"]), _result_text(name, pair["b"]),
             _change(name, pair["a"], pair["b"])) for name, pair in diff["results"].items()]
    widths = [max(len(row[i]) for row in [("", "A", "B", "B - A"), *rows]) for i in range(4)]
    lines.append("results:")
    for row in [("", "A", "B", "B - A"), *rows]:
        lines.append("  " + "  ".join(
            cell.ljust(width) if i == 0 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))).rstrip())
    return "\n".join(lines)


_LABELS = {"wall_time_s": "wall time"}


def _shown(item: dict[str, Any], side: str) -> str:
    if side not in item:
        return "(not set)"
    value = item[side]
    if isinstance(value, str):
        return shown_value(value, limit=60).strip("'\"") if value else "''"
    text = json.dumps(value, separators=(", ", ": "), default=str)
    if len(text) > 60:
        return f"a list of {len(value)}" if isinstance(value, list) else f"{text[:57]}..."
    return text


def _result_text(name: str, value: Any) -> str:
    if name == "wall_time_s":
        return _duration(_number(value)) or "-"
    if name == "epochs" or isinstance(value, str):
        return "-" if value is None else str(value)
    return _score(_number(value))


def _change(name: str, a: Any, b: Any) -> str:
    left, right = _number(a), _number(b)
    if name in ("status", "epochs") or left is None or right is None:
        if name == "epochs" and left is not None and right is not None:
            return f"{right - left:+g}"
        return ""
    if name == "wall_time_s":
        return f"{right - left:+.1f}s"
    return f"{right - left:+.4f}"


__all__ = [
    "COLUMNS", "Entry", "RunSide", "diff_runs", "filter_entries", "find_runs", "format_diff",
    "format_table", "key_metric", "read_run", "sort_entries",
]
