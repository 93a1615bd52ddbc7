"""Atomic file writes: a temporary file in the same folder, fsync, then rename.

A reader sees the old file or the new one, never half of either; a crash
leaves at most a stray `*.tmp` beside the target.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any, TypeVar

_Error = TypeVar("_Error", bound=BaseException)

# Read once at import, the only way to read it: setting and restoring it later
# could race with threads creating files.
_UMASK = os.umask(0)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "w") -> Iterator[IO[Any]]:
    """Open a temporary file that replaces `path` only when the block exits cleanly.

    Args:
        path: Final location of the file.
        mode: `"w"` for text or `"wb"` for bytes. Defaults to `"w"`.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(
        dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"
    )
    try:
        # mkstemp makes the file private (0600); the result gets the permissions
        # an ordinary `open` would give it.
        os.chmod(temporary, 0o666 & ~_UMASK)
        with os.fdopen(handle, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as file:
            yield file
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, target)
    except BaseException as error:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        interruption = _within(error, KeyboardInterrupt)
        if interruption is not None and interruption is not error:
            # A Ctrl-C (or SIGTERM) landing in torch.save comes out as its zip writer's
            # RuntimeError ("unexpected pos ..."): it stays a stop, not a crash.
            raise interruption from None
        cause = _within(error, OSError)
        if cause is not None and cause.errno is not None and cause.filename is None:
            # A failed write names no file: the message must say which one.
            raise OSError(cause.errno, cause.strerror, os.fspath(target)) from None
        if cause is not None and cause is not error:
            # A writer such as torch.save reports a full disk as its own RuntimeError
            # ("unexpected pos ..."); the OSError underneath says what happened.
            raise cause from None
        raise


def _within(error: BaseException, kind: type[_Error]) -> _Error | None:
    """The first `kind` in `error`'s chain of causes (itself included), if any."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, kind):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def write_text(path: str | os.PathLike[str], text: str) -> None:
    """Atomically write `text` to `path`."""
    with atomic_open(path, "w") as file:
        file.write(text)


def write_json(path: str | os.PathLike[str], data: Any) -> None:
    """Atomically write `data` as indented JSON; NaN and Inf become `null` (strict JSON)."""
    write_text(path, json.dumps(json_safe(data), indent=2, allow_nan=False) + "\n")


def write_with(path: str | os.PathLike[str], writer: Callable[[IO[bytes]], None]) -> None:
    """Atomically write bytes produced by `writer(file)` (e.g. `torch.save`, `savefig`)."""
    with atomic_open(path, "wb") as file:
        writer(file)


def json_safe(value: Any) -> Any:
    """`value` as strict JSON takes it: NaN and infinities as null, paths as text."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(item) for item in value]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return value
