"""Stopping signals: SIGTERM is handled as Ctrl-C, and a second signal while stopping is absorbed.

`kill`, `timeout`, batch schedulers and containers stop a program with SIGTERM;
a person presses Ctrl-C (SIGINT). Both raise `KeyboardInterrupt` in the main
thread, so a run records `interrupted`, keeps its checkpoint and can be resumed.
Once the first has arrived, later ones are remembered but raise nothing: the run
is already writing its result or report, and an exception inside that would
print a traceback and could leave it half-written.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator
from types import FrameType

from tricklab.errors import EXIT_INTERRUPTED, EXIT_TERMINATED


class StopSignals:
    """What arrived while `stop_signals()` was active.

    Args:
        received: The signals received, in order.
    """

    def __init__(self) -> None:
        self.received: list[int] = []

    @property
    def terminated(self) -> bool:
        """Whether a SIGTERM arrived (Python runs pending handlers in signal-number order,
        so a SIGINT landing just after a SIGTERM may be handled first)."""
        return signal.SIGTERM in self.received

    @property
    def exit_code(self) -> int:
        """143 after a SIGTERM, else 130 (128 + the signal's number, as shells report)."""
        return EXIT_TERMINATED if self.terminated else EXIT_INTERRUPTED

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.received.append(signum)
        if len(self.received) == 1:
            raise KeyboardInterrupt
        if len(self.received) == 2:
            print("already stopping: the run is saving its state, then tricklab exits",
                  file=sys.stderr)


@contextlib.contextmanager
def stop_signals() -> Iterator[StopSignals]:
    """Within the block, SIGINT and SIGTERM raise one `KeyboardInterrupt`, later ones nothing.

    The previous handlers are restored on exit. Outside the main thread (where
    Python delivers signals) it changes nothing.
    """
    state = StopSignals()
    if threading.current_thread() is not threading.main_thread():
        yield state
        return
    previous = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM)}
    # A SIGINT ignored by whoever started us (a backgrounded shell job) stays ignored.
    for number, handler in previous.items():
        if handler is not signal.SIG_IGN:
            signal.signal(number, state._handle)
    previous_hook = sys.unraisablehook

    def unraisable(details: sys.UnraisableHookArgs) -> None:
        # The stop landed in a finalizer, where Python can only print it (a traceback)
        # and lose it: send it again a moment later, once this hook and the finalizer
        # are over, to be raised where the run can stop.
        if details.exc_type is KeyboardInterrupt and state.received:
            again = threading.Timer(0.05, os.kill, (os.getpid(), state.received.pop()))
            again.daemon = True
            again.start()
        else:
            previous_hook(details)

    sys.unraisablehook = unraisable
    try:
        yield state
    finally:
        sys.unraisablehook = previous_hook
        for number, handler in previous.items():
            signal.signal(number, handler)
