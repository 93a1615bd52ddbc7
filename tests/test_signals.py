"""SIGTERM handled as Ctrl-C, the exit code saying which, and a second signal absorbed."""

from __future__ import annotations

import os
import signal
import time

import pytest

from tricklab.signals import stop_signals


@pytest.mark.parametrize(
    ("signals", "code"),
    [((signal.SIGINT, signal.SIGINT), 130), ((signal.SIGTERM, signal.SIGINT), 143),
     ((signal.SIGINT, signal.SIGTERM), 143)],
)
def test_the_first_signal_interrupts_and_later_ones_are_absorbed(signals, code, capsys):
    before = signal.getsignal(signal.SIGTERM)
    with stop_signals() as received:
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signals[0])
            signal.sigtimedwait([], 0)  # a point where Python runs the handler
        os.kill(os.getpid(), signals[1])
        os.kill(os.getpid(), signals[1])
    assert received.received == [signals[0], signals[1], signals[1]]
    assert received.exit_code == code
    assert capsys.readouterr().err.count("already stopping") == 1
    assert signal.getsignal(signal.SIGTERM) is before


def test_an_ignored_sigint_stays_ignored():
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with stop_signals():
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)


def test_a_stop_landing_in_a_finalizer_is_delivered_again(capsys):
    class Finalized:
        def __del__(self) -> None:
            # The handler runs here, inside the finalizer, where Python cannot raise.
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(KeyboardInterrupt), stop_signals() as state:
        Finalized()
        time.sleep(5)  # the signal sent again is raised here, at once
    assert state.received == [signal.SIGINT]
    assert "Traceback" not in capsys.readouterr().err
