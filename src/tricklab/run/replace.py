"""Replacing a folder tricklab made, and only such a folder, without losing it on the way.

`--overwrite` (train, doctor, lr-find) and `study --force-new` replace an
earlier run or study. They touch a folder only when everything in it is
tricklab's own (recognised by its file names), and never the current
directory, a parent of it, the home folder or `/`. The old folder is first set
aside under a hidden name beside it; it is removed once the new run has
trained its first epoch, and put back untouched if the new run fails before.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from pathlib import Path

from tricklab.errors import SystemRefusedError, UserInputError, system_error_line

SET_ASIDE_PREFIX = ".replaced-"
"""Hidden name prefix of a folder set aside while its replacement starts."""

TEMPORARY_SUFFIX = ".tmp"
"""Suffix of the temporary files `tricklab.atomic` writes (left by a killed writer)."""


def protected(path: Path) -> str | None:
    """Why `path` may never be replaced or deleted wholesale, or `None` when it may.

    The current directory, its parents, the home folder and the filesystem
    root hold what the user is working on, whatever is in them.
    """
    resolved = path.resolve()
    here = Path.cwd().resolve()
    if resolved == Path(resolved.anchor):
        return "it is the filesystem root"
    if resolved == Path.home().resolve():
        return "it is the home folder"
    if resolved == here:
        return "it is the current directory"
    if resolved in here.parents:
        return "it holds the current directory"
    return None


def foreign_entries(path: Path, own_names: Iterable[str]) -> list[str]:
    """Entries of the folder `path` that tricklab did not make, sorted (empty when all are its own).

    Args:
        path: An existing folder.
        own_names: The file and folder names tricklab writes there.
    """
    own = set(own_names)
    return sorted(
        entry.name for entry in path.iterdir()
        if entry.name not in own
        and not (entry.name.startswith(".") and entry.name.endswith(TEMPORARY_SUFFIX))
        and not entry.name.startswith(SET_ASIDE_PREFIX)
    )


def check_replaceable(path: Path, option: str, own_names: Iterable[str], kind: str) -> None:
    """Refuse to replace `path` unless it is a folder that holds only tricklab's own files.

    Args:
        path: The folder to replace.
        option: The option that asked for it, for the message, e.g. `"--overwrite"`.
        own_names: The names tricklab writes in such a folder.
        kind: What such a folder is, e.g. `"run"` or `"study"`.

    Raises:
        UserInputError: Naming the path and why it is not replaced.
    """
    reason = protected(path)
    if reason is not None:
        raise UserInputError(
            f"{option}: refusing to replace {path}: {reason}; give --out a folder of its own"
        )
    if not path.is_dir():
        return
    foreign = foreign_entries(path, own_names)
    if foreign:
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3
                                         else "")
        raise UserInputError(
            f"{option}: {path} is not a tricklab {kind} (it holds {shown}); tricklab replaces "
            f"only its own {kind}s: choose another folder with --out"
        )


class SetAside:
    """An old folder moved out of the way while its replacement starts.

    `restore()` puts it back (the new run failed before it had anything to
    show); `discard()` deletes it (the new run is under way).

    Args:
        path: The folder to set aside; nothing happens when it does not exist.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.aside: Path | None = None
        if path.is_dir():
            aside = path.with_name(f"{SET_ASIDE_PREFIX}{path.name}.{os.getpid()}")
            try:
                path.rename(aside)
            except OSError as error:
                raise SystemRefusedError(
                    f"--overwrite: cannot move {path} aside ({system_error_line(error)})"
                ) from None
            self.aside = aside

    def restore(self) -> None:
        """Put the old folder back, replacing whatever the failed new run left at its place."""
        if self.aside is None:
            return
        if self.path.exists():
            shutil.rmtree(self.path)
        self.aside.rename(self.path)
        self.aside = None

    def discard(self) -> None:
        """Delete the old folder for good."""
        if self.aside is not None:
            shutil.rmtree(self.aside, ignore_errors=True)
            self.aside = None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


def orphans(path: Path) -> list[Path]:
    """Folders set aside for `path` by processes killed before they finished, oldest first."""
    parent, prefix = path.parent, f"{SET_ASIDE_PREFIX}{path.name}."
    if not parent.is_dir():
        return []
    found = []
    for entry in parent.iterdir():
        pid = entry.name.removeprefix(prefix)
        if entry.name.startswith(prefix) and pid.isdigit() and not _alive(int(pid)):
            found.append(entry)
    return sorted(found, key=lambda entry: entry.stat().st_mtime)


def recover(path: Path, has_progress: bool) -> None:
    """Finish what a killed replacement of `path` left: keep the new folder or put the old one back.

    Args:
        path: The folder that was being replaced.
        has_progress: Whether `path` now holds a new run that got somewhere (a
            finished epoch): the old folder is then deleted, as the killed process
            would have done; otherwise the old folder takes its place again.
    """
    for aside in orphans(path):
        if not has_progress and path.is_dir() and not any(path.iterdir()):
            path.rmdir()
        if path.exists():
            shutil.rmtree(aside, ignore_errors=True)
        else:
            aside.rename(path)
