"""The local backend's workers under Ctrl-C: quiet between jobs, interrupted within one."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from tricklab.run.study_backends import LocalBackend

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="POSIX signals")


def _mark_then_sleep(marker: str) -> None:
    Path(marker).touch()
    time.sleep(120)


def test_a_ctrl_c_between_jobs_leaves_the_worker_quiet_and_starts_no_further_job(capfd):
    backend = LocalBackend(1)
    try:
        worker = backend.call(os.getpid)
        os.kill(worker, signal.SIGINT)
        time.sleep(0.5)  # the signal is handled while the worker waits for its next job
        os.kill(worker, 0)  # still alive: raises ProcessLookupError otherwise
        with pytest.raises(KeyboardInterrupt):
            backend.call(os.getpid)
    finally:
        backend.close()
    assert "Traceback" not in capfd.readouterr().err


def test_a_ctrl_c_within_a_job_interrupts_it(tmp_path):
    backend = LocalBackend(1)
    marker = tmp_path / "started"

    def interrupt_once_started(worker: int) -> None:
        while not marker.exists():
            time.sleep(0.01)
        os.kill(worker, signal.SIGINT)

    try:
        worker = backend.call(os.getpid)
        threading.Thread(target=interrupt_once_started, args=(worker,), daemon=True).start()
        started = time.monotonic()
        with pytest.raises(KeyboardInterrupt):
            backend.call(_mark_then_sleep, str(marker))
        assert time.monotonic() - started < 60
    finally:
        backend.close()
