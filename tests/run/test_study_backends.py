"""The local backend's workers under Ctrl-C (quiet between jobs, interrupted within one, once),
and the datasets a worker keeps between runs (one study's, never the next's)."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest
import yaml

from tricklab.recipe.study import load_study
from tricklab.run.study import run_study
from tricklab.run.study_backends import LocalBackend, execute_study_job
from tricklab.study.store import StudyStore

from ..conftest import TINY_RECIPE as BASE

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


# --- a second signal, and stopping the jobs under way -----------------------------------


def _saves_slowly_when_interrupted(started: str, saving: str) -> str:
    try:
        Path(started).touch()
        time.sleep(120)
    except KeyboardInterrupt:
        Path(saving).touch()
        time.sleep(1.0)  # writing its checkpoint: a second Ctrl-C must not cut this short
        return "saved"
    return "not interrupted"


def test_a_second_ctrl_c_within_a_job_is_remembered_not_raised(tmp_path, capfd):
    backend = LocalBackend(1)
    started, saving = tmp_path / "started", tmp_path / "saving"

    def interrupt_twice(worker: int) -> None:
        while not started.exists():
            time.sleep(0.01)
        os.kill(worker, signal.SIGINT)
        while not saving.exists():
            time.sleep(0.01)
        os.kill(worker, signal.SIGINT)

    try:
        worker = backend.call(os.getpid)
        threading.Thread(target=interrupt_twice, args=(worker,), daemon=True).start()
        try:
            saved = backend.call(_saves_slowly_when_interrupted, str(started), str(saving))
        except KeyboardInterrupt:  # raised to pytest, it would end the whole session
            pytest.fail("the second Ctrl-C interrupted the job while it saved")
        assert saved == "saved"
    finally:
        backend.close()
    assert "Traceback" not in capfd.readouterr().err


def test_stop_interrupts_the_runs_under_way_and_yields_how_they_ended(fixture_data, tmp_path):
    study_file = tmp_path / "study.yaml"
    study_file.write_text(yaml.safe_dump({
        "name": "stop", "base": BASE, "seeds": 1,
        "variants": {"short": {"set": {"train.epochs": 2}},
                     "long": {"set": {"train.epochs": 400}}},
    }))
    study = load_study(study_file)
    short, long = study.plan("short", 0), study.plan("long", 0)
    backend = LocalBackend(2)
    try:
        outcomes = backend.run(iter([((short,), str(tmp_path), False, False),
                                     ((long,), str(tmp_path), False, False)]))
        planned, result, error = next(outcomes)  # the short run; the long one trains on
        assert (planned.run_id, error, result["status"]) == ("short/seed-0", None, "completed")
        asked = time.monotonic()
        stopped = list(backend.stop())
        assert time.monotonic() - asked < 60  # 400 epochs take minutes
    finally:
        backend.close()
    assert [planned.run_id for planned, _, _ in stopped] == ["long/seed-0"]
    _, result, error = stopped[0]
    if error is None:  # stopped after its first epoch: a result to resume from
        assert result["status"] == "interrupted" and result["epochs_run"] < 400
        assert any((tmp_path / long.run_dir / "checkpoints").iterdir())
    else:  # stopped within its first epoch: nothing kept
        assert getattr(error, "exit_code", None) == 130 or isinstance(error, KeyboardInterrupt)


def _wine_study(folder: Path, rows: int) -> Path:
    """A one-run study of scikit-learn's wine table, written as a CSV of its first `rows` rows."""
    sklearn = pytest.importorskip("sklearn.datasets")
    sklearn.load_wine(as_frame=True).frame.head(rows).to_csv(folder / "wine.csv", index=False)
    study_file = folder / "study.yaml"
    study_file.write_text(yaml.safe_dump({
        "name": "wine", "seeds": 1, "variants": {"sgd": {}},
        "base": {"data": {"dataset": "csv", "path": str(folder / "wine.csv"), "target": "target"},
                 "model": {"input_shape": [13], "layers": [{"dense": {"units": 3}}]},
                 "train": {"optimizer": "sgd", "epochs": 1, "metrics": ["accuracy"]}},
    }))
    return study_file


def _trained_rows(result: dict) -> int:
    sizes = result["dataset"]
    return sizes["train"] + sizes["val"] + sizes["test"]


def test_a_second_study_in_the_same_process_reads_the_data_as_it_is_now(isolated, tmp_path):
    # A notebook runs a study, edits its CSV, runs it again: the driver's preloaded
    # copy of the first study's data must not stand in for the edited file.
    study_file = _wine_study(tmp_path, rows=178)
    first = run_study(study_file, out=tmp_path / "first", workers=1, progress="none")
    _wine_study(tmp_path, rows=100)
    second = run_study(study_file, out=tmp_path / "second", workers=1, progress="none")
    rows = []
    for outcome in (first, second):
        with StudyStore.open(outcome.study_dir / "study.db") as store:
            (record,) = store.runs()
        result = json.loads((outcome.study_dir / record.run_dir / "result.json").read_text())
        rows.append(_trained_rows(result))
    assert rows == [178, 100]


def test_a_worker_kept_for_another_study_loads_its_data_again(isolated, tmp_path):
    # A Ray worker trains the jobs of every study its driver runs, one after another.
    study_file = _wine_study(tmp_path, rows=178)
    planned = load_study(study_file).plan("sgd", 0)
    job = ((planned,), str(tmp_path / "study"), False, False, None, None)
    assert _trained_rows(execute_study_job("first", *job)[0]) == 178
    _wine_study(tmp_path, rows=100)
    assert _trained_rows(execute_study_job("first", *job)[0]) == 178  # within a study: kept
    assert _trained_rows(execute_study_job("second", *job)[0]) == 100
