"""What the trainer shows while it works: a live bar on a terminal, one line per epoch elsewhere."""

from __future__ import annotations

import sys
import time
from typing import Literal

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn

ProgressMode = Literal["auto", "bar", "lines", "none"]


def _format_logs(logs: dict[str, float]) -> str:
    # The epoch's duration is printed on its own ("12.3s"), not again as time_s.
    return " - ".join(f"{key}: {value:.4g}" for key, value in logs.items() if key != "time_s")


class ProgressReporter:
    """Shows training progress.

    Args:
        mode: `"bar"` (rich progress bar with step, loss, metrics and ETA),
            `"lines"` (one plain line per epoch), `"none"`, or `"auto"` (bar on a
            terminal, lines otherwise). Defaults to `"auto"`.
        refresh_seconds: Minimum time between bar refreshes; the bar reads the
            running loss, which costs a host sync, so it is not read every step.
            Defaults to `0.2`.
    """

    def __init__(self, mode: ProgressMode = "auto", refresh_seconds: float = 0.2) -> None:
        if mode == "auto":
            mode = "bar" if sys.stderr.isatty() else "lines"
        self.mode = mode
        self.refresh_seconds = refresh_seconds
        self._console = Console(stderr=True)
        self._progress: Progress | None = None
        self._task = None
        self._next_refresh = 0.0
        self._epochs = 0

    def train_begin(self, epochs: int) -> None:
        self._epochs = epochs

    def epoch_begin(self, epoch: int, steps: int) -> None:
        if self.mode != "bar":
            return
        self._progress = Progress(
            TextColumn(f"epoch {epoch + 1}/{self._epochs}"),
            BarColumn(),
            TaskProgressColumn(),
            TextColumn("{task.completed}/{task.total} steps"),
            TextColumn("{task.fields[logs]}"),
            TimeRemainingColumn(),
            console=self._console,
            transient=True,
        )
        self._progress.start()
        self._task = self._progress.add_task("train", total=steps, logs="")
        self._next_refresh = 0.0

    def wants_update(self) -> bool:
        """Whether the bar is due for a refresh (cheap: one clock read)."""
        return self.mode == "bar" and time.monotonic() >= self._next_refresh

    def step(self, done: int, logs: dict[str, float]) -> None:
        """Refresh the bar with `done` steps and the running metrics."""
        if self._progress is None:
            return
        self._progress.update(self._task, completed=done, logs=_format_logs(logs))
        self._next_refresh = time.monotonic() + self.refresh_seconds

    def epoch_end(self, epoch: int, logs: dict[str, float], seconds: float) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
        if self.mode == "none":
            return
        line = f"epoch {epoch + 1}/{self._epochs} - {seconds:.1f}s - {_format_logs(logs)}"
        if self.mode == "bar":
            self._console.print(line, highlight=False)
        else:
            print(line, file=sys.stderr, flush=True)

    def note(self, message: str) -> None:
        """Print one line about the run (not an epoch's), unless the mode is `"none"`."""
        if self.mode == "bar":
            self._console.print(message, highlight=False)
        elif self.mode == "lines":
            print(message, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
