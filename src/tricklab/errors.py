"""Exceptions that carry tricklab's exit-code contract.

`UserInputError` is the user's mistake (bad recipe, unknown name, missing
file): the CLI prints its one-line message and exits with code 2, never a
traceback. `SystemRefusedError` is the machine's refusal (disk full, read-only
folder, permission denied, out of memory): one line naming the path and the
cause, exit code 4. Everything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import difflib
import errno
import os
import reprlib
from collections.abc import Iterable

EXIT_OK = 0
EXIT_USER_ERROR = 2
EXIT_DIVERGED = 3
EXIT_SYSTEM = 4
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143


class TricklabError(Exception):
    """Base class of every error tricklab raises on purpose."""


class UserInputError(TricklabError, ValueError):
    """The user's input is wrong; the message names the field or path and what is accepted.

    Args:
        message: One line: the field or path, the value, and what would be accepted.
    """

    exit_code = EXIT_USER_ERROR


class SystemRefusedError(TricklabError, OSError):
    """The machine refused what tricklab asked: disk full, read-only, no permission, no memory.

    Not the user's input and not a bug: the same command works once the cause is
    gone (space freed, permissions given).

    Args:
        message: One line: the path and the cause.
    """

    exit_code = EXIT_SYSTEM


ENVIRONMENT_ERRNOS = frozenset({
    errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOMEM,
    errno.EMFILE, errno.ENFILE, errno.EIO,
})
"""OS error numbers that say "the machine refused", not "the input is wrong"."""


def is_environment_failure(error: BaseException) -> bool:
    """Whether `error` comes from the machine (full disk, read-only, memory), not from the run.

    A run that failed this way is not at fault: it trains again once the cause is gone.
    """
    if isinstance(error, SystemRefusedError | MemoryError):
        return True
    if isinstance(error, OSError):
        return error.errno in ENVIRONMENT_ERRNOS
    # torch reports a failed allocation as a RuntimeError ("DefaultCPUAllocator: can't
    # allocate memory", "CUDA out of memory").
    text = str(error)
    return isinstance(error, RuntimeError) and (
        "can't allocate memory" in text or "out of memory" in text
    )


def system_error_line(error: BaseException) -> str:
    """One line for an environment failure: the path (where the error names one) and the cause."""
    if isinstance(error, SystemRefusedError):
        return str(error)
    if isinstance(error, OSError):
        cause = error.strerror or (os.strerror(error.errno) if error.errno else str(error))
        path = error.filename
        where = f"{os.fsdecode(path)}: " if path is not None else ""
        return f"{where}{cause.lower() if cause else type(error).__name__}"
    if isinstance(error, MemoryError):
        return "out of memory: the machine could not allocate what the run needs"
    return str(error).splitlines()[0] if str(error) else type(error).__name__


def edit_distance(a: str, b: str) -> int:
    """Optimal-string-alignment distance: insertions, deletions, substitutions and
    swaps of two adjacent letters each cost 1, so the typo 'adma' is 1 from 'adam'."""
    previous2: list[int] = []
    previous = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        current = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                current[j] = min(current[j], previous2[j - 2] + 1)
        previous2, previous = previous, current
    return previous[-1]


def did_you_mean(value: str, known: Iterable[str]) -> str:
    """Return `"; did you mean 'x'?"` for the closest known name, or `""` if none is close.

    Closest is the smallest edit distance (ties broken by difflib's similarity);
    a name counts as close within a third of its length, and at least 2 edits.
    """
    value = str(value)
    scored = []
    for name in known:
        within = max(2, len(name) // 3)
        # The distance is at least the difference in length: skipping those names is
        # exact, and a megabyte-long value is never compared letter by letter.
        if abs(len(value) - len(name)) > within:
            continue
        distance = edit_distance(value.lower(), name.lower())
        if distance <= within:
            scored.append((distance, -difflib.SequenceMatcher(None, value, name).ratio(), name))
    return f"; did you mean '{min(scored)[2]}'?" if scored else ""


SHOWN_CHARACTERS = 80
"""The most characters of a user's value that a one-line message shows."""


def shown_value(value: object, limit: int = SHOWN_CHARACTERS) -> str:
    """A user's value as a one-line message shows it: its repr, at most `limit` characters.

    Longer values end in `...`; a character that would break the line (a newline
    in a custom object's repr) is escaped, so the message stays one line.
    """
    # Bounded while it is built: a huge value never becomes a huge string first.
    short = reprlib.Repr()
    short.maxstring = short.maxother = limit
    short.maxlist = short.maxtuple = short.maxset = short.maxdict = 8
    short.maxlevel = 3
    text = short.repr(value)
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return "".join(char if char.isprintable() else ascii(char)[1:-1] for char in text)


def unknown_name_message(path: str, family: str, value: object, known: Iterable[str]) -> str:
    """Format the standard one-line error for a name that is not in a registry."""
    known = sorted(known)
    suggestion = did_you_mean(str(value), known)
    listing = f" Known: {', '.join(known)}" if suggestion else f"; known: {', '.join(known)}"
    return f"{path}: unknown {family} {shown_value(str(value))}{suggestion}{listing}"
