"""A study's live progress: runs done, running, diverged and failed, and an ETA."""

from __future__ import annotations

import sys
from typing import Any

from tricklab.study.store import RunRecord


class StudyProgress:
    """Runs done, running and failed, and an ETA; a rich live line on a terminal.

    Args:
        mode: `"bar"` (live), `"lines"` (a line per finished run), `"none"`, or
            `"auto"` (live on a terminal). Defaults to `"auto"`.
    """

    def __init__(self, mode: str = "auto") -> None:
        if mode == "auto":
            mode = "bar" if sys.stderr.isatty() else "lines"
        self.mode = mode
        self._live: Any = None

    def begin(self, total: int, finished: int, workers: int, label: str) -> None:
        """Start showing a phase of `total` runs, `finished` of them done before."""
        self.total, self.finished, self.workers, self.label = total, finished, workers, label
        self.running, self.failed, self.diverged = 0, 0, 0
        self.durations: list[float] = []
        if self.mode == "bar":
            from rich.console import Console
            from rich.live import Live

            self._live = Live(self._line(), console=Console(stderr=True), refresh_per_second=2)
            self._live.start()
        elif self.mode == "lines":
            print(f"{label}: {total} runs, {finished} already finished, {workers} "
                  f"{'worker' if workers == 1 else 'workers'}", file=sys.stderr)

    def _line(self) -> str:
        remaining = self.total - self.finished
        eta = ""
        if self.durations and remaining:
            mean = sum(self.durations) / len(self.durations)
            eta = f", ETA {int(mean * remaining / self.workers)} s"
        return (f"{self.label}: {self.finished}/{self.total} done, {self.running} running, "
                f"{self.diverged} diverged, {self.failed} failed{eta}")

    def started(self) -> None:
        """Count a run that has started."""
        self.running += 1
        self._refresh()

    def ended(self, record: RunRecord, seconds: float) -> None:
        """Count a run that has ended (or will be retried), as the store now records it."""
        self.running -= 1
        if record.finished:
            self.finished += 1
        self.failed += record.status == "failed"
        self.diverged += record.status == "diverged"
        self.durations.append(seconds)
        if self.mode == "lines":
            shown = ", ".join(f"{k}={v:.4f}" for k, v in record.metrics.items()
                              if k.startswith(("val_", "test_")) and v is not None)
            print(f"[{self.finished}/{self.total}] {record.run_id}: {record.status}"
                  f"{' ' + shown if shown else ''} ({seconds:.1f} s)", file=sys.stderr)
        self._refresh()

    def _refresh(self) -> None:
        if self._live is not None:
            self._live.update(self._line())

    def close(self) -> None:
        """Stop the live line."""
        if self._live is not None:
            self._live.stop()
            self._live = None
