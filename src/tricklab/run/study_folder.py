"""A study's folder: one driver at a time, its store opened or made, an old study replaced safely.

`StudyLock` is an exclusive `flock` on `study.lock` in the study folder, held
for the driver's lifetime and taken before anything in the folder is created
or changed: a second `tricklab study` on the same folder is refused with the
first one's PID instead of training every unfinished run a second time (and
deleting folders the first is writing). The kernel drops the lock when its
holder dies, however it dies, so a killed driver never leaves the folder
locked.

`open_store` (called holding the lock) opens the folder's `study.db` or makes
it. Beforehand it clears what killed drivers left: temporary stores from
`StudyStore.create`, and an old study set aside by `--force-new`. `--force-new`
replaces only a study tricklab made (`check_replaceable`): the old study's
entries are moved into a hidden folder inside the study folder, put back if
the new store cannot be made, and deleted once it is.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from pathlib import Path
from types import TracebackType

from tricklab.errors import (
    SystemRefusedError,
    UserInputError,
    did_you_mean,
    edit_distance,
    system_error_line,
)
from tricklab.recipe.study import Study
from tricklab.run.replace import SET_ASIDE_PREFIX, check_replaceable, foreign_entries
from tricklab.run.study_backends import PRETRAINED
from tricklab.study.store import StudyStore

try:
    import fcntl
except ImportError:  # Windows: no flock; studies there are not guarded against a second driver
    fcntl = None  # type: ignore[assignment]

STORE_NAME = "study.db"
LOCK_NAME = "study.lock"
REPORTS = ("report.html", "report.md")
STUDY_ENTRIES = (
    STORE_NAME, f"{STORE_NAME}-wal", f"{STORE_NAME}-shm", f"{STORE_NAME}-journal",
    "runs", PRETRAINED, *REPORTS, LOCK_NAME,
)
"""What tricklab writes into a study folder: the store (and SQLite's companions), the
runs, the pretrained models runs reuse, the report and the lock."""

_ASIDE = f"{SET_ASIDE_PREFIX}study."
"""Name prefix of the hidden folder holding an old study while `--force-new` replaces it."""
_COMPLETE = ".complete"
"""Marker in that folder: every entry of the old study was moved into it."""


class StudyLock:
    """The exclusive right to change a study folder, for one driver at a time.

    Use as a context manager: entering creates the folder if needed and takes
    the lock, leaving gives it up.

    Args:
        study_dir: The study folder.
    """

    def __init__(self, study_dir: Path) -> None:
        self.study_dir = study_dir
        self.path = study_dir / LOCK_NAME
        self._fd: int | None = None

    def __enter__(self) -> StudyLock:
        self.acquire()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()

    def acquire(self) -> None:
        """Take the lock, making the study folder first if it does not exist.

        Raises:
            UserInputError: Another driver holds the lock (naming its PID), or the
                path cannot be a folder.
            SystemRefusedError: The folder or the lock file cannot be made.
        """
        for folder in (self.study_dir, *self.study_dir.parents):
            if folder.exists() and not folder.is_dir():
                raise UserInputError(f"--out: {folder} exists and is not a directory")
        try:
            self.study_dir.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise SystemRefusedError(
                f"{self.study_dir}: cannot make the study folder ({system_error_line(error)})"
            ) from None
        if fcntl is None:
            return
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as error:
                raise SystemRefusedError(
                    f"{self.path}: cannot make the study's lock file ({system_error_line(error)})"
                ) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _holder(fd)
                os.close(fd)
                pid = f" (PID {holder})" if holder else ""
                raise UserInputError(
                    f"another tricklab study{pid} is running in {self.study_dir}; "
                    "wait for it or stop it"
                ) from None
            # The holder before us deletes the file as it lets go: if it did so after we
            # opened it, we hold a lock on a file nobody else can see; take the one there.
            if _same_file(fd, self.path):
                break
            os.close(fd)
        with contextlib.suppress(OSError):  # a full disk: the lock holds, without the PID
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        """Give the lock up, deleting the lock file (while still holding it)."""
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            self.path.unlink()
        os.close(self._fd)
        self._fd = None


def _holder(fd: int) -> int | None:
    """The PID the lock's holder wrote into the file; it may not have written it yet."""
    for _ in range(20):
        with contextlib.suppress(OSError, ValueError):
            text = os.pread(fd, 32, 0).decode().strip()
            if text:
                return int(text)
        time.sleep(0.05)
    return None


def _same_file(fd: int, path: Path) -> bool:
    try:
        named = path.stat()
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (held.st_dev, held.st_ino) == (named.st_dev, named.st_ino)


def _holds_nothing(study_dir: Path) -> bool:
    """Whether the folder is empty but for the lock and hidden temporary files."""
    return not study_dir.is_dir() or not [
        name for name in foreign_entries(study_dir, ()) if name != LOCK_NAME
    ]


def open_store(study: Study, study_dir: Path, force_new: bool = False) -> StudyStore:
    """Open the study's store, or create it; refuse a store made from another spec.

    Call it holding the folder's `StudyLock` (`run_study` does): it cleans up
    after killed drivers, which is safe only when no other driver is at work.

    Args:
        study: The validated study.
        study_dir: The study directory.
        force_new: Discard what the folder holds, when tricklab made it (a study
            from another spec, or a study's files without a store), and start
            anew. Defaults to `False`.

    Raises:
        UserInputError: The store is corrupt, foreign or holds rows tricklab did
            not write, holds another spec without `force_new`, or the folder holds
            something that is not a study (with `force_new` too), or is the current
            directory, its parent, the home folder or `/` (with `force_new`).
        SystemRefusedError: The machine refused to write the store.
    """
    path = study_dir / STORE_NAME
    StudyStore.remove_stale_temporaries(path)
    _recover(study_dir)
    if path.exists():
        store = StudyStore.open(path)
        try:
            if store.fingerprint == study.fingerprint:
                # Read every row before changing anything: a damaged store is refused as it is.
                store.runs(phase=None)
                store.learning_rate_choices()
                store.update_spec(study.spec)
                return store
        except BaseException:
            store.close()
            raise
        stored = store.spec.get("overrides") or []
        store.close()
        if not force_new:
            given = study.spec.get("overrides") or []
            changed = "variants, budget, metric or search changed"
            if stored != given:
                changed = f"--set: {_shown_overrides(stored)} → {_shown_overrides(given)}"
            raise UserInputError(
                f"{study.source}: the study differs from the one stored in {path} "
                f"({changed}); pass --force-new to discard it and start over, or --out DIR "
                "to run it elsewhere"
            )
    elif _holds_nothing(study_dir):
        return StudyStore.create(path, study.spec, study.fingerprint)
    elif not force_new:
        raise UserInputError(
            f"--out: {study_dir} is not empty and holds no {STORE_NAME}; choose another "
            "folder or pass --force-new to replace what tricklab left there"
        )
    check_replaceable(study_dir, "--force-new", STUDY_ENTRIES, "study")
    aside = _SetAsideStudy(study_dir)
    try:
        store = StudyStore.create(path, study.spec, study.fingerprint)
    except BaseException:
        aside.restore()
        raise
    aside.discard()
    return store


def _shown_overrides(overrides: list[str]) -> str:
    return " ".join(f"'{text}'" for text in overrides) if overrides else "none"


def check_study_folder(folder: Path) -> None:
    """Refuse a folder without a study store, naming the study folders near it.

    Raises:
        UserInputError: `folder` holds no `study.db`: one line suggesting the study
            folders beside it and inside it whose names are close (`nearby_studies`).
    """
    if (folder / STORE_NAME).is_file():
        return
    what = (f"is not a study folder (it holds no {STORE_NAME})" if folder.is_dir()
            else "does not exist")
    nearby = nearby_studies(folder)
    if len(nearby) == 1:
        hint = f"did you mean {nearby[0]}?"
    elif nearby:
        hint = f"study folders nearby: {', '.join(map(str, nearby))}"
    else:
        hint = "a study folder is what `tricklab study STUDY.yaml` fills (runs/<name>)"
    raise UserInputError(f"{folder} {what}; {hint}")


NEARBY_LIMIT = 5
"""The most study folders `check_study_folder` suggests."""


def nearby_studies(folder: Path) -> list[Path]:
    """Study folders (holding `study.db`) a user may have meant by `folder`, the likeliest first.

    A study holding `folder` (a run directory inside it, up to three levels
    up) comes first, then the studies inside `folder` (two levels down), then
    its siblings whose names are close: the name with something added or left
    out (`runs/chapter11-quick` for `runs/chapter11`) or a few letters off. At
    most `NEARBY_LIMIT`.
    """
    holding = [parent for parent in list(folder.parents)[:3] if (parent / STORE_NAME).is_file()]
    inside = sorted(
        path.parent for pattern in (f"*/{STORE_NAME}", f"*/*/{STORE_NAME}")
        for path in _glob(folder, pattern)
    ) if folder.is_dir() else []
    name = folder.name.lower()
    ranked = []
    for sibling in _glob(folder.parent, f"*/{STORE_NAME}") if name else []:
        candidate = sibling.parent
        other = candidate.name.lower()
        if other.startswith(name) or name.startswith(other):
            ranked.append((0, abs(len(other) - len(name)), candidate))
        elif name in other or other in name or did_you_mean(name, [other]):
            ranked.append((1, edit_distance(name, other), candidate))
    siblings = [path for *_, path in sorted(ranked)]
    return [*holding[:1], *inside, *siblings][:NEARBY_LIMIT]


def _glob(folder: Path, pattern: str) -> list[Path]:
    """`folder.glob(pattern)`, empty where the folder cannot be read (its name is still shown)."""
    try:
        return list(folder.glob(pattern))
    except OSError:
        return []


class _SetAsideStudy:
    """A study's entries moved into a hidden folder inside the study folder while a new one starts.

    The folder itself stays, and with it the lock its driver holds (setting
    the whole folder aside would let a second driver take a new lock in a new
    folder meanwhile). `restore()` puts the entries back; `discard()` deletes them.

    Args:
        study_dir: The study folder; its entries were checked to be tricklab's.
    """

    def __init__(self, study_dir: Path) -> None:
        self.study_dir = study_dir
        self.folder: Path | None = study_dir / f"{_ASIDE}{os.getpid()}"
        entries = [entry for entry in study_dir.iterdir()
                   if entry.name in STUDY_ENTRIES and entry.name != LOCK_NAME]
        try:
            self.folder.mkdir()
            for entry in entries:
                entry.rename(self.folder / entry.name)
            # Says "all of it is here" to a later driver, should this one be killed now.
            (self.folder / _COMPLETE).touch(exist_ok=False)
        except OSError as error:
            self.restore()
            raise SystemRefusedError(
                f"--force-new: cannot set the old study in {study_dir} aside "
                f"({system_error_line(error)}); nothing was deleted"
            ) from None

    def restore(self) -> None:
        """Put the old study back where the new one failed to start."""
        if self.folder is not None:
            _put_back(self.folder, self.study_dir)
            self.folder = None

    def discard(self) -> None:
        """Delete the old study for good."""
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None


def _put_back(aside: Path, study_dir: Path) -> None:
    """Move what `aside` holds back into `study_dir` (never over something there), then drop it."""
    if aside.is_dir():
        for entry in aside.iterdir():
            target = study_dir / entry.name
            if entry.name != _COMPLETE and not target.exists():
                entry.rename(target)
    shutil.rmtree(aside, ignore_errors=True)


def _recover(study_dir: Path) -> None:
    """Finish what a driver killed during `--force-new` left: an old study set aside.

    An old study moved aside only in part, or whole with no new store made yet,
    is put back, as if the command had never run; once the new store exists,
    the new study had started and the old one goes.
    """
    if not study_dir.is_dir():
        return
    for aside in sorted(study_dir.glob(f"{_ASIDE}*")):
        if not aside.is_dir():
            continue
        if (aside / _COMPLETE).exists() and (study_dir / STORE_NAME).exists():
            shutil.rmtree(aside, ignore_errors=True)
        else:
            _put_back(aside, study_dir)


__all__ = [
    "LOCK_NAME", "STORE_NAME", "STUDY_ENTRIES", "StudyLock", "check_study_folder",
    "nearby_studies", "open_store",
]
