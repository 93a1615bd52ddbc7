"""`tricklab runs`: every run and study under a folder, found by their files.

A folder is recognised by what tricklab wrote into it, never by its name:

- a **study** holds its store, `study.db` (a **tricks** folder is a study with
  `tricks.yaml` beside it); its runs (`runs/`) are counted from the store, not
  listed one by one (`tricklab.run.runs_store`);
- a **run** holds `recipe.yaml` with `result.json` or checkpoints; a folder
  with `doctor.json` or `lr_find.json` and no `result.json` is a **doctor** or
  **lr-find** run;
- a run or study missing a file it should have is listed as `incomplete`,
  naming what is missing, never an error.

Listing stays fast on thousands of runs: folders are read with `os.scandir`,
from a run only `result.json`, from a study a read-only query of its store;
nothing here imports PyTorch, NumPy or the recipe schema. Sorting, filtering
and the table are `tricklab.run.runs_view`'s; comparing two runs is
`tricklab.run.runs_diff`'s.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sqlite3
import warnings
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from tricklab.errors import UserInputError
from tricklab.run.runs_store import (
    LOCK_NAME,
    STORE_NAME,
    TRICKS_FILE,
    finite_number,
    glance_at_study,
)

RUN_STATUSES = ("completed", "stopped_early", "diverged", "interrupted")
"""What `result.json` says of a run."""
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
            none (`key_metric`), or the study's own metric.
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
            "date": iso_date(self.date), "missing": self.missing, "note": self.note,
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
    result = read_json_object(path / "result.json") if "result.json" in names else None
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
        entry.note = "result.json names no run status"
    metrics = result.get("metrics") if isinstance(result.get("metrics"), dict) else {}
    entry.metric = key_metric(metrics)
    entry.value = finite_number(metrics.get(entry.metric)) if entry.metric else None
    entry.val_loss = finite_number(metrics.get("val_loss"))
    epochs = result.get("epochs_run")
    entry.epochs = epochs if isinstance(epochs, int) and not isinstance(epochs, bool) else None
    entry.wall_time_s = finite_number(result.get("wall_time_s"))
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
    """A doctor's or lr-find's row: `completed` with its summary as the note."""
    entry = Entry(name, kind, "completed", date=_mtime(path / file))
    content = read_json_object(path / file)
    entry.missing = ["recipe.yaml"] if "recipe.yaml" not in names else []
    if content is None:
        entry.missing.append(file)
    else:
        entry.note = note(content)
    if entry.missing:
        entry.status = "incomplete"
    return entry


def _doctor_note(content: dict[str, Any]) -> str | None:
    verdict = content.get("verdict")
    return f"verdict: {verdict}" if isinstance(verdict, str) else None


def _lr_find_note(content: dict[str, Any]) -> str:
    suggestion = finite_number(content.get("suggestion"))
    if suggestion is None:
        return "the loss never fell"
    return f"suggested max learning rate {suggestion:.3g}"


def _study_entry(path: Path, name: str, names: Any) -> Entry:
    """A study folder's row, from a read-only look at its store."""
    kind = "tricks" if TRICKS_FILE in names else "study"
    entry = Entry(name, kind, "incomplete", date=_mtime(path))
    if STORE_NAME not in names:
        entry.missing, entry.note = [STORE_NAME], "the study never made its store"
        return entry
    try:
        glance = glance_at_study(path)
    except (sqlite3.Error, ValueError) as error:
        entry.missing = [STORE_NAME]
        entry.note = f"{STORE_NAME} is not a readable tricklab study store ({error})"
        return entry
    entry.status, entry.runs, entry.metric = glance.status, glance.runs, glance.metric
    entry.best, entry.value, entry.val_loss = glance.best, glance.value, glance.val_loss
    entry.wall_time_s = glance.wall_time_s
    entry.date = glance.date if glance.date is not None else entry.date
    return entry


def read_json_object(path: Path) -> dict[str, Any] | None:
    """A JSON object from `path`, or `None` where it is missing, unreadable or not an object.

    Args:
        path: The JSON file, e.g. a run's `result.json`.
    """
    try:
        content = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    return content if isinstance(content, dict) else None


def iso_date(stamp: float | None) -> str | None:
    """A POSIX time in ISO 8601, to the second, with the local offset (`None` stays `None`).

    Args:
        stamp: Seconds since the epoch, or `None`.
    """
    if stamp is None:
        return None
    return datetime.fromtimestamp(stamp).astimezone().isoformat(timespec="seconds")


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


__all__ = ["Entry", "find_runs", "iso_date", "key_metric", "read_json_object"]
