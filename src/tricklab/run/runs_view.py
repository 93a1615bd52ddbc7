"""The `tricklab runs` table: its rows sorted, filtered and laid out as plain text.

Any column sorts (`--sort -metric`: largest first, empty cells last either
way) and filters (`--filter status=completed`, shell wildcards allowed); a
column no row fills is left out of the table, so a folder of plain runs shows
no study columns.
"""

from __future__ import annotations

import contextlib
import fnmatch
import math
from datetime import datetime

from tricklab.errors import UserInputError, did_you_mean, shown_value
from tricklab.run.runs_table import Entry, iso_date

COLUMNS = ("name", "kind", "status", "runs", "epochs", "metric", "val_loss", "best",
           "wall_time", "date", "note")
"""The table's columns, the names `--sort` and `--filter` take (`--sort metric` sorts by
its value, `--filter metric=...` matches its name; `--sort runs` sorts by their count)."""
_ATTRIBUTES = {"wall_time": "wall_time_s", "runs": "run_count"}


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
        value = iso_date(value)
    if value is None:
        return wanted in ("", "-")
    if isinstance(value, int | float):
        with contextlib.suppress(ValueError):
            return math.isclose(value, float(wanted), rel_tol=1e-9, abs_tol=1e-12)
        value = _number_text(value)
    return fnmatch.fnmatchcase(str(value), wanted)


def format_table(entries: list[Entry]) -> str:
    """The rows as a plain-text table, one line each; a column no row fills is left out.

    Args:
        entries: The rows, in the order shown.
    """
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
        metric = f"{entry.metric} {score_text(entry.value)}"
    return {
        "name": entry.name, "kind": entry.kind, "status": entry.status,
        "runs": ", ".join(f"{count} {status}" for status, count in (entry.runs or {}).items()),
        "epochs": "" if entry.epochs is None else str(entry.epochs),
        "metric": metric,
        "val_loss": "" if entry.val_loss is None else score_text(entry.val_loss),
        "best": entry.best or "",
        "wall_time": duration_text(entry.wall_time_s),
        "date": "" if entry.date is None else datetime.fromtimestamp(entry.date).strftime(
            "%Y-%m-%d %H:%M"),
        "note": note,
    }


def score_text(value: float | None) -> str:
    """A score to four decimals (`-` for none); a large one to four significant digits.

    Args:
        value: The score, or `None`.
    """
    if value is None:
        return "-"
    return f"{value:.4f}" if abs(value) < 1e4 else f"{value:.4g}"


def _number_text(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def duration_text(seconds: float | None) -> str:
    """`7.2s`, `4m05s`, `3h02m`: short enough for a column (`""` for none).

    Args:
        seconds: A duration in seconds, or `None`.
    """
    if seconds is None:
        return ""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, rest = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{rest:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


__all__ = ["COLUMNS", "duration_text", "filter_entries", "format_table", "score_text",
           "sort_entries"]
