"""StudyStore: a real SQLite file, written and read through the API and checked with raw queries.

Concurrency is checked with two real processes writing the same store at once;
refusal of corrupt or foreign files is checked byte for byte.
"""

from __future__ import annotations

import math
import os
import random
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from tricklab.errors import SystemRefusedError, UserInputError, is_environment_failure
from tricklab.study.store import (
    BUSY_TIMEOUT_MS,
    FINISHED,
    LearningRateChoice,
    RunRecord,
    StudyStore,
)

from ..conftest import fill

SPEC = {"name": "unit", "seeds": [0, 1, 2], "variants": {"a": {}, "b": {}}}


def _record(run_id: str, phase: str = "main", learning_rate: float | None = None) -> RunRecord:
    variant, *_, seed = run_id.split("/")
    return RunRecord(
        run_id=run_id, variant=variant, seed=int(seed.removeprefix("seed-")), phase=phase,
        run_dir=f"runs/{run_id}", recipe={"name": run_id.replace("/", "-"), "seed": 0},
        learning_rate=learning_rate,
    )


def _result(status: str = "completed", epochs: int = 3, **extra: Any) -> dict[str, Any]:
    result = {
        "status": status,
        "metrics": {"test_accuracy": 0.8, "test_loss": 0.5},
        "history": {
            "loss": [1.0 - 0.1 * epoch for epoch in range(epochs)],
            "val_accuracy": [0.5 + 0.1 * epoch for epoch in range(epochs)],
        },
        "epochs_run": epochs,
        "wall_time_s": 12.5,
    }
    result.update(extra)
    return result


def _raw_history(path: Path, run_id: str | None = None) -> list[tuple[str, int, str, Any]]:
    connection = sqlite3.connect(path)
    try:
        where, arguments = ("WHERE run_id = ?", (run_id,)) if run_id else ("", ())
        return connection.execute(
            f"SELECT run_id, epoch, key, value FROM history {where} ORDER BY run_id, key, epoch",
            arguments,
        ).fetchall()
    finally:
        connection.close()


@pytest.fixture
def store(tmp_path: Path):
    with StudyStore.create(tmp_path / "study" / "study.db", SPEC, "fp-1") as created:
        yield created


# --- creating, adding, starting ------------------------------------------------------------


def test_create_makes_parent_folders_and_keeps_spec_and_fingerprint(tmp_path):
    path = tmp_path / "deep" / "er" / "study.db"
    with StudyStore.create(path, SPEC, "abc123") as store:
        assert path.is_file()
        assert store.spec == SPEC
        assert store.fingerprint == "abc123"
        assert store.runs(phase=None) == []
    with StudyStore.open(path) as reopened:
        assert reopened.spec == SPEC
        assert reopened.fingerprint == "abc123"


def test_create_on_an_existing_path_raises_file_exists(tmp_path):
    path = tmp_path / "study.db"
    StudyStore.create(path, SPEC, "fp").close()
    before = path.read_bytes()
    with pytest.raises(FileExistsError):
        StudyStore.create(path, {"other": True}, "fp-2")
    assert path.read_bytes() == before
    other = tmp_path / "anything.txt"
    other.write_text("not a store")
    with pytest.raises(FileExistsError):
        StudyStore.create(other, SPEC, "fp")
    assert other.read_text() == "not a store"


def test_add_runs_inserts_new_ones_and_ignores_known_ones(store):
    assert store.add_runs([_record("a/seed-0"), _record("a/seed-1")]) == 2
    assert store.add_runs([_record("a/seed-0"), _record("a/seed-1")]) == 0
    assert store.add_runs([_record("a/seed-1"), _record("b/seed-0")]) == 1
    assert store.add_runs([]) == 0
    assert [r.run_id for r in store.runs()] == ["a/seed-0", "a/seed-1", "b/seed-0"]


def test_re_adding_a_finished_run_does_not_reset_it(store):
    store.add_runs([_record("a/seed-0")])
    store.mark_started("a/seed-0")
    store.record_result("a/seed-0", _result())
    fresh = _record("a/seed-0")
    fresh.recipe = {"changed": True}
    assert store.add_runs([fresh]) == 0
    record = store.run("a/seed-0")
    assert record.status == "completed"
    assert record.attempts == 1
    assert record.recipe == {"name": "a-seed-0", "seed": 0}
    assert record.metrics == {"test_accuracy": 0.8, "test_loss": 0.5}
    assert len(_raw_history(store.path, "a/seed-0")) == 6


def test_mark_started_counts_attempts(store):
    store.add_runs([_record("a/seed-0"), _record("a/seed-1")])
    assert store.run("a/seed-0").attempts == 0
    assert store.run("a/seed-0").status == "pending"
    assert store.mark_started("a/seed-0") == 1
    assert store.run("a/seed-0").status == "running"
    store.set_status("a/seed-0", "interrupted")
    assert store.mark_started("a/seed-0") == 2
    assert store.mark_started("a/seed-0") == 3
    assert store.run("a/seed-0").attempts == 3
    assert store.run("a/seed-1").attempts == 0


# --- results -------------------------------------------------------------------------------


def test_record_result_stores_status_metrics_timing_and_history(store):
    store.add_runs([_record("a/seed-0")])
    store.mark_started("a/seed-0")
    store.record_result("a/seed-0", _result("stopped_early", epochs=3, wall_time_s=4.25))
    record = store.run("a/seed-0")
    assert record.status == "stopped_early"
    assert record.metrics == {"test_accuracy": 0.8, "test_loss": 0.5}
    assert record.epochs_run == 3
    assert record.wall_time_s == 4.25
    assert record.history == {"loss": [1.0, 0.9, 0.8], "val_accuracy": [0.5, 0.6, 0.7]}
    assert _raw_history(store.path) == [
        ("a/seed-0", 1, "loss", 1.0),
        ("a/seed-0", 2, "loss", 0.9),
        ("a/seed-0", 3, "loss", 0.8),
        ("a/seed-0", 1, "val_accuracy", 0.5),
        ("a/seed-0", 2, "val_accuracy", 0.6),
        ("a/seed-0", 3, "val_accuracy", 0.7),
    ]


def test_non_finite_metrics_and_history_values_become_none(store):
    store.add_runs([_record("a/seed-0")])
    store.record_result("a/seed-0", {
        "status": "diverged",
        "metrics": {"train_loss": math.nan, "val_loss": math.inf, "test_loss": -math.inf,
                    "train_accuracy": 0.1},
        "history": {"loss": [2.0, math.inf, math.nan], "lr": [0.1, 0.1, -math.inf]},
        "epochs_run": 3,
        "wall_time_s": 1.0,
    })
    record = store.run("a/seed-0")
    assert record.metrics == {"train_loss": None, "val_loss": None, "test_loss": None,
                              "train_accuracy": 0.1}
    assert record.history == {"loss": [2.0, None, None], "lr": [0.1, 0.1, None]}
    raw = sqlite3.connect(store.path)
    try:
        stored = raw.execute("SELECT metrics FROM runs WHERE run_id = 'a/seed-0'").fetchone()[0]
        nulls = raw.execute("SELECT count(*) FROM history WHERE value IS NULL").fetchone()[0]
    finally:
        raw.close()
    assert "NaN" not in stored and "Infinity" not in stored
    assert nulls == 3


def test_record_result_twice_replaces_the_history(store):
    store.add_runs([_record("a/seed-0"), _record("a/seed-1")])
    store.record_result("a/seed-1", _result(epochs=2))
    store.record_result("a/seed-0", _result(epochs=4))
    store.record_result("a/seed-0", {"status": "completed", "metrics": {"test_accuracy": 0.9},
                                     "history": {"loss": [0.3, 0.2]}, "epochs_run": 2,
                                     "wall_time_s": 3.0})
    assert _raw_history(store.path, "a/seed-0") == [
        ("a/seed-0", 1, "loss", 0.3), ("a/seed-0", 2, "loss", 0.2),
    ]
    assert len(_raw_history(store.path, "a/seed-1")) == 4  # the other run keeps its rows
    record = store.run("a/seed-0")
    assert record.history == {"loss": [0.3, 0.2]}
    assert record.metrics == {"test_accuracy": 0.9}
    assert (record.epochs_run, record.wall_time_s) == (2, 3.0)


def test_record_result_without_history_or_metrics(store):
    store.add_runs([_record("a/seed-0")])
    store.record_result("a/seed-0", _result())
    store.record_result("a/seed-0", {"status": "failed"})
    record = store.run("a/seed-0")
    assert record.status == "failed"
    assert record.history == {}
    assert record.metrics == {}
    assert record.epochs_run is None and record.wall_time_s is None
    assert _raw_history(store.path) == []


# --- reading back ----------------------------------------------------------------------------


def test_runs_and_run_round_trip_every_field(tmp_path):
    path = tmp_path / "study.db"
    original = RunRecord(
        run_id="b/lr-0.001/seed-7", variant="b", seed=7, phase="lr_search",
        run_dir="runs/b/lr-0.001/seed-7", recipe={"name": "x", "train": {"epochs": [1, 2]}},
        learning_rate=0.001,
    )
    with StudyStore.create(path, SPEC, "fp") as store:
        store.add_runs([original])
        store.mark_started(original.run_id)
        store.set_status(original.run_id, "interrupted", "killed")
        store.mark_started(original.run_id)
        store.record_result(original.run_id, _result())
    expected = RunRecord(
        run_id="b/lr-0.001/seed-7", variant="b", seed=7, phase="lr_search",
        run_dir="runs/b/lr-0.001/seed-7", recipe={"name": "x", "train": {"epochs": [1, 2]}},
        learning_rate=0.001, status="completed", attempts=2,
        metrics={"test_accuracy": 0.8, "test_loss": 0.5},
        history={"loss": [1.0, 0.9, 0.8], "val_accuracy": [0.5, 0.6, 0.7]},
        epochs_run=3, wall_time_s=12.5, error="killed",
    )
    with StudyStore.open(path) as store:
        assert store.run(original.run_id) == expected
        assert store.runs("lr_search") == [expected]
        assert store.runs(phase=None) == [expected]
        assert store.runs() == []
        assert store.run("b/seed-7") is None


def test_runs_filters_by_phase_and_keeps_insertion_order(store):
    ids = ["z/seed-0", "a/seed-9", "m/seed-1"]
    store.add_runs([_record(ids[0]), _record("a/lr-0.1/seed-0", "lr_search", 0.1)])
    store.add_runs([_record(ids[1]), _record("a/lr-0.01/seed-0", "lr_search", 0.01)])
    store.add_runs([_record(ids[2])])
    for run_id in reversed(ids):  # updates in another order do not change the order
        store.record_result(run_id, _result())
    assert [r.run_id for r in store.runs()] == ids
    assert [r.run_id for r in store.runs(phase="main")] == ids
    assert [r.run_id for r in store.runs(phase="lr_search")] == ["a/lr-0.1/seed-0",
                                                                  "a/lr-0.01/seed-0"]
    assert [r.learning_rate for r in store.runs("lr_search")] == [0.1, 0.01]
    assert [r.run_id for r in store.runs(phase=None)] == [
        "z/seed-0", "a/lr-0.1/seed-0", "a/seed-9", "a/lr-0.01/seed-0", "m/seed-1",
    ]
    histories = {r.run_id: r.history for r in store.runs()}
    assert all(h == {"loss": [1.0, 0.9, 0.8], "val_accuracy": [0.5, 0.6, 0.7]}
               for h in histories.values())
    assert all(r.history == {} for r in store.runs("lr_search"))


def test_a_phase_outside_main_and_lr_search_is_refused(store):
    with pytest.raises(sqlite3.IntegrityError):
        store.add_runs([_record("a/seed-0", phase="warmup")])
    assert store.runs(phase=None) == []


def test_set_status_keeps_the_last_error_and_leaves_results(store):
    store.add_runs([_record("a/seed-0")])
    store.record_result("a/seed-0", _result())
    store.set_status("a/seed-0", "interrupted", "KeyboardInterrupt")
    assert (store.run("a/seed-0").status, store.run("a/seed-0").error) == (
        "interrupted", "KeyboardInterrupt")
    store.set_status("a/seed-0", "failed", "RuntimeError: boom")
    store.set_status("a/seed-0", "pending")  # no new error: the last one is kept
    record = store.run("a/seed-0")
    assert record.status == "pending"
    assert record.error == "RuntimeError: boom"
    assert record.metrics == {"test_accuracy": 0.8, "test_loss": 0.5}
    assert record.epochs_run == 3
    assert len(_raw_history(store.path, "a/seed-0")) == 6


def test_set_run_dir(store):
    store.add_runs([_record("a/seed-0"), _record("a/seed-1")])
    store.set_run_dir("a/seed-0", "runs/a/lr-0.01/seed-0")
    assert store.run("a/seed-0").run_dir == "runs/a/lr-0.01/seed-0"
    assert store.run("a/seed-1").run_dir == "runs/a/seed-1"


def test_update_spec_replaces_the_spec_and_keeps_the_fingerprint(tmp_path):
    path = tmp_path / "study.db"
    with StudyStore.create(path, SPEC, "fp-1") as store:
        bigger = {**SPEC, "seeds": [0, 1, 2, 3, 4]}
        store.update_spec(bigger)
        assert store.spec == bigger
    with StudyStore.open(path) as store:
        assert store.spec == bigger
        assert store.fingerprint == "fp-1"


def test_learning_rate_choices_round_trip(tmp_path):
    path = tmp_path / "study.db"
    first = LearningRateChoice("a", 0.01, "val_accuracy", {0.001: 0.71, 0.01: 0.83, 0.1: None})
    other = LearningRateChoice("b", 0.1, "val_loss", {0.01: 0.6, 0.1: 0.4})
    with StudyStore.create(path, SPEC, "fp") as store:
        assert store.learning_rate_choices() == {}
        store.set_learning_rate_choice(first)
        store.set_learning_rate_choice(other)
        assert store.learning_rate_choices() == {"a": first, "b": other}
        replaced = LearningRateChoice("a", 0.001, "val_accuracy", {0.001: 0.9, 0.01: 0.8})
        store.set_learning_rate_choice(replaced)
    with StudyStore.open(path) as store:
        choices = store.learning_rate_choices()
    assert choices == {"a": replaced, "b": other}
    assert all(isinstance(rate, float) for rate in choices["a"].scores)
    assert list(choices["b"].scores) == [0.01, 0.1]


@pytest.mark.parametrize("status", [*FINISHED, "pending", "running", "interrupted"])
def test_run_record_finished(status):
    record = RunRecord("a/seed-0", "a", 0, "main", "runs/a/seed-0", {}, status=status)
    assert record.finished is (status in ("completed", "stopped_early", "diverged", "failed"))


def test_run_record_defaults():
    record = RunRecord("a/seed-0", "a", 0, "main", "runs/a/seed-0", {})
    assert (record.status, record.attempts, record.learning_rate) == ("pending", 0, None)
    assert record.finished is False
    other = RunRecord("a/seed-1", "a", 1, "main", "runs/a/seed-1", {})
    record.metrics["x"] = 1.0
    assert other.metrics == {}  # no shared mutable default


# --- SQLite settings and concurrency -------------------------------------------------------


def test_file_is_in_wal_mode_with_a_busy_timeout(tmp_path):
    path = tmp_path / "study.db"
    with StudyStore.create(path, SPEC, "fp") as store:
        assert store._connection.execute("PRAGMA busy_timeout").fetchone()[0] == BUSY_TIMEOUT_MS
    raw = sqlite3.connect(path)
    try:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        raw.close()
    with StudyStore.open(path) as store:
        assert store._connection.execute("PRAGMA busy_timeout").fetchone()[0] == BUSY_TIMEOUT_MS
        assert store._connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert BUSY_TIMEOUT_MS >= 1000


WRITER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from tricklab.study.store import RunRecord, StudyStore

    path, name, go = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
    store = StudyStore.open(path)
    (go.parent / f"ready-{name}").touch()
    while not go.exists():
        time.sleep(0.0005)
    for i in range(200):
        run_id = f"{name}/seed-{i}"
        record = RunRecord(run_id, name, i, "main", f"runs/{run_id}", {"name": run_id})
        assert store.add_runs([record]) == 1
        assert store.mark_started(run_id) == 1
        store.record_result(run_id, {
            "status": "completed", "metrics": {"test_accuracy": i / 200},
            "history": {"loss": [1.0, 0.5, 0.25], "val_accuracy": [0.1, 0.2, 0.3]},
            "epochs_run": 3, "wall_time_s": 0.1,
        })
    store.close()
""")


def test_two_processes_write_the_same_store_at_once(tmp_path):
    path = tmp_path / "study.db"
    StudyStore.create(path, SPEC, "fp").close()
    go = tmp_path / "go"
    writers = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(path), name, str(go)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for name in ("p0", "p1")
    ]
    try:
        while not all((tmp_path / f"ready-{name}").exists() for name in ("p0", "p1")):
            assert all(w.poll() is None for w in writers), "a writer exited before the start"
            time.sleep(0.001)
        go.touch()
        outputs = [w.communicate(timeout=120) for w in writers]
    finally:
        for writer in writers:
            if writer.poll() is None:
                writer.kill()
                writer.wait()
    for writer, (_, stderr) in zip(writers, outputs, strict=True):
        assert "database is locked" not in stderr
        assert writer.returncode == 0, stderr
    with StudyStore.open(path) as store:
        runs = store.runs()
        assert len(runs) == 400
        assert {r.run_id for r in runs} == {f"p{p}/seed-{i}" for p in (0, 1) for i in range(200)}
        assert all(r.status == "completed" and r.attempts == 1 for r in runs)
        assert all(r.history == {"loss": [1.0, 0.5, 0.25], "val_accuracy": [0.1, 0.2, 0.3]}
                   for r in runs)
    raw = sqlite3.connect(path)
    try:
        assert raw.execute("SELECT count(*) FROM history").fetchone()[0] == 400 * 6
        assert raw.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        raw.close()


# --- refusing what is not a tricklab store ------------------------------------------------


def _filled_store(path: Path) -> None:
    with StudyStore.create(path, SPEC, "fp") as store:
        store.add_runs([_record(f"a/seed-{i}") for i in range(60)])
        for i in range(60):
            store.record_result(f"a/seed-{i}", _result(epochs=10))


def _text(path: Path) -> None:
    path.write_text("name: not a database\nseeds: 5\n")


def _empty(path: Path) -> None:
    path.write_bytes(b"")


def _foreign(path: Path) -> None:
    connection = sqlite3.connect(path)
    connection.execute("CREATE TABLE foo (id INTEGER PRIMARY KEY, text TEXT)")
    connection.executemany("INSERT INTO foo (text) VALUES (?)", [("a",), ("b",)])
    connection.commit()
    connection.close()


def _foreign_wal(path: Path) -> None:
    connection = sqlite3.connect(path)
    connection.execute("PRAGMA journal_mode = WAL")
    connection.execute("CREATE TABLE foo (id INTEGER PRIMARY KEY, text TEXT)")
    connection.commit()
    connection.close()


def _foreign_meta(path: Path) -> None:
    """Another program's database that happens to have `meta` and `runs` tables."""
    connection = sqlite3.connect(path)
    connection.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
    connection.execute("CREATE TABLE runs (id INTEGER)")
    connection.execute("INSERT INTO meta VALUES ('owner', 'someone else')")
    connection.commit()
    connection.close()


def _corrupt_first_pages(path: Path) -> None:
    _filled_store(path)
    data = bytearray(path.read_bytes())
    rng = random.Random(11)
    data[100:4096] = bytes(rng.randrange(256) for _ in range(4096 - 100))
    path.write_bytes(bytes(data))


def _corrupt_last_page(path: Path) -> None:
    _filled_store(path)
    data = bytearray(path.read_bytes())
    rng = random.Random(12)
    data[-4096:] = bytes(rng.randrange(256) for _ in range(4096))
    path.write_bytes(bytes(data))


def _truncated(path: Path) -> None:
    _filled_store(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _other_version(path: Path) -> None:
    _filled_store(path)
    connection = sqlite3.connect(path)
    connection.execute("UPDATE meta SET value = '2' WHERE key = 'version'")
    connection.commit()
    connection.close()


# case -> (maker, phrases of which the message must hold one)
FOREIGN = ("belongs to another program", "is not a readable tricklab study store")
CORRUPT = ("is corrupt", "malformed", "is not a readable tricklab study store")
REFUSED = {
    "text": (_text, ("is not an SQLite database",)),
    "empty": (_empty, ("is not an SQLite database",)),
    "foreign": (_foreign, FOREIGN),
    "foreign-wal": (_foreign_wal, FOREIGN),
    "foreign-meta": (_foreign_meta, ("belongs to another program",)),
    "corrupt-first-pages": (_corrupt_first_pages, CORRUPT),
    "corrupt-last-page": (_corrupt_last_page, CORRUPT),
    "truncated": (_truncated, CORRUPT),
    "other-version": (_other_version, ("has format version 2, this tricklab reads version 1",)),
}

def _prepare(tmp_path: Path, case: str) -> Path:
    folder = tmp_path / case
    folder.mkdir()
    path = folder / "study.db"
    REFUSED[case][0](path)
    assert sorted(p.name for p in folder.iterdir()) == ["study.db"]
    return path


@pytest.mark.parametrize("case", list(REFUSED))
def test_a_file_that_is_not_a_store_is_refused_and_left_byte_for_byte(tmp_path, case):
    path = _prepare(tmp_path, case)
    before, mtime = path.read_bytes(), path.stat().st_mtime_ns
    with pytest.raises(UserInputError) as raised:
        StudyStore.open(path)
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith(f"study store: {path} ")
    assert any(phrase in message for phrase in REFUSED[case][1]), message
    assert message.endswith("the file was left untouched")
    assert path.read_bytes() == before
    assert path.stat().st_mtime_ns == mtime


@pytest.mark.parametrize("case", list(REFUSED))
def test_a_refused_file_leaves_no_wal_or_shm_files_beside_it(tmp_path, case):
    path = _prepare(tmp_path, case)
    with pytest.raises(UserInputError):
        StudyStore.open(path)
    assert sorted(p.name for p in path.parent.iterdir()) == ["study.db"]


def test_opening_a_missing_file_is_a_user_error(tmp_path):
    path = tmp_path / "nowhere" / "study.db"
    with pytest.raises(UserInputError, match="does not exist") as raised:
        StudyStore.open(path)
    assert str(raised.value) == f"study store: {path} does not exist"
    assert not path.parent.exists()
    with pytest.raises(UserInputError, match="does not exist"):
        StudyStore.open(tmp_path)  # a folder is not a store file either


def test_a_valid_store_opens_after_the_checks_and_keeps_its_runs(tmp_path):
    path = tmp_path / "study.db"
    _filled_store(path)
    with StudyStore.open(path) as store:
        assert len(store.runs()) == 60
        assert store.run("a/seed-59").history["loss"][:2] == [1.0, 0.9]


def test_create_appears_whole_and_leaves_no_temporary_file(tmp_path):
    path = tmp_path / "study.db"
    with StudyStore.create(path, {"name": "x"}, "abc") as created:
        assert created.fingerprint == "abc"
        names = {p.name for p in tmp_path.iterdir()}
        assert names <= {"study.db", "study.db-wal", "study.db-shm"}
    # Opened again by another connection, it is complete.
    with StudyStore.open(path) as reader:
        assert reader.spec == {"name": "x"}


# --- rows tricklab did not write, refunded attempts, a full disk, temporary leftovers ------


def _damaged_store(path: Path) -> None:
    with StudyStore.create(path, SPEC, "fp") as store:
        store.add_runs([_record("a/seed-0"), _record("a/seed-1")])
        store.record_result("a/seed-0", _result())
        store.set_learning_rate_choice(LearningRateChoice("a", 0.01, "val_accuracy",
                                                          {0.01: 0.8, 0.1: None}))


# (statement, what the message names, how it is read)
DAMAGED = {
    "recipe not json": ("UPDATE runs SET recipe = 'not json' WHERE run_id = 'a/seed-1'",
                        "run 'a/seed-1': recipe is 'not json'", "runs"),
    "recipe a list": ("UPDATE runs SET recipe = '[1, 2]' WHERE run_id = 'a/seed-1'",
                      "run 'a/seed-1': recipe", "runs"),
    "metrics not json": ("UPDATE runs SET metrics = '{oops' WHERE run_id = 'a/seed-0'",
                         "run 'a/seed-0': metrics is '{oops'", "runs"),
    "metric not a number": (
        """UPDATE runs SET metrics = '{"test_accuracy": "high"}' WHERE run_id = 'a/seed-0'""",
        "run 'a/seed-0': metrics", "runs"),
    "unknown status": ("UPDATE runs SET status = 'finished' WHERE run_id = 'a/seed-1'",
                       "run 'a/seed-1': status is 'finished', not one of pending", "runs"),
    "seed text": ("UPDATE runs SET seed = 'seven' WHERE run_id = 'a/seed-1'",
                  "run 'a/seed-1': seed is 'seven'", "runs"),
    "negative attempts": ("UPDATE runs SET attempts = -1 WHERE run_id = 'a/seed-1'",
                          "run 'a/seed-1': attempts is -1", "runs"),
    "run_dir outside": ("UPDATE runs SET run_dir = '../../home' WHERE run_id = 'a/seed-1'",
                        "run 'a/seed-1': run_dir is '../../home', not a folder inside", "runs"),
    "wall time text": ("UPDATE runs SET wall_time_s = 'slow' WHERE run_id = 'a/seed-0'",
                       "run 'a/seed-0': wall_time_s", "runs"),
    "history value text": ("UPDATE history SET value = 'abc' WHERE run_id = 'a/seed-0'",
                           "run 'a/seed-0': history", "runs"),
    "spec not an object": ("UPDATE meta SET value = '[1, 2]' WHERE key = 'spec'",
                           "meta 'spec' is '[1, 2]'", "spec"),
    "spec missing": ("DELETE FROM meta WHERE key = 'spec'", "meta 'spec' is missing", "spec"),
    "scores not json": ("UPDATE lr_choices SET scores = 'x'",
                        "learning-rate choice 'a': scores is 'x'", "choices"),
}


@pytest.mark.parametrize("case", list(DAMAGED))
def test_a_row_tricklab_did_not_write_is_one_line_naming_the_file_and_run(tmp_path, case):
    statement, named, read = DAMAGED[case]
    path = tmp_path / "study.db"
    _damaged_store(path)
    raw = sqlite3.connect(path)
    raw.execute(statement)
    raw.commit()
    raw.close()
    before = path.read_bytes()
    with StudyStore.open(path) as store:
        readers = {"runs": [lambda: store.runs(phase=None), lambda: store.run(named.split("'")[1])],
                   "spec": [lambda: store.spec],
                   "choices": [store.learning_rate_choices]}[read]
        if case.startswith("history"):
            readers.append(store.runs)  # the history of main runs is read with them
        for reader in readers:
            with pytest.raises(UserInputError) as raised:
                reader()
            message = str(raised.value)
            assert "\n" not in message
            assert message.startswith(f"study store: {path}: {named}"), message
            assert message.endswith("changed outside tricklab; the file was left untouched")
    assert path.read_bytes() == before


def test_refunded_starts_do_not_count_and_running_runs_become_interrupted(store):
    store.add_runs([_record("a/seed-0"), _record("a/seed-1"), _record("a/seed-2")])
    store.mark_started("a/seed-0")
    store.set_status("a/seed-0", "pending", "OSError: no space left on device", refund=True)
    assert (store.run("a/seed-0").status, store.run("a/seed-0").attempts) == ("pending", 0)
    store.set_status("a/seed-0", "pending", refund=True)  # never below zero
    assert store.run("a/seed-0").attempts == 0
    store.mark_started("a/seed-1")
    store.record_result("a/seed-1", _result("interrupted", epochs=1), refund=True)
    assert (store.run("a/seed-1").status, store.run("a/seed-1").attempts) == ("interrupted", 0)
    assert store.run("a/seed-1").epochs_run == 1
    store.mark_started("a/seed-1")
    store.mark_started("a/seed-2")
    store.record_result("a/seed-2", _result())
    assert store.interrupt_running() == 1
    assert [(r.status, r.attempts) for r in store.runs()] == [
        ("pending", 0), ("interrupted", 0), ("completed", 1)]
    assert store.interrupt_running() == 0


def test_a_full_disk_is_a_system_refusal_naming_the_store_and_changes_nothing(
    tmp_path, small_disk
):
    disk = small_disk("1m")
    path = disk / "study.db"
    with StudyStore.create(path, SPEC, "fp") as store:
        store.add_runs([_record("a/seed-0")])
        filler = fill(disk, leave=64 * 1024)
        with pytest.raises(SystemRefusedError) as raised:
            for i in range(200):  # the WAL grows until the disk is full
                store.add_runs([_record(f"b/seed-{i}")])
                store.record_result(f"b/seed-{i}", _result(epochs=50))
        assert str(raised.value) == f"{path}: no space left on device"
        assert is_environment_failure(raised.value)
        # The failed transaction left nothing half-written; the store still reads.
        written = store.runs()
        assert len(written) >= 2
        assert all((r.status, r.epochs_run, len(r.history.get("loss", []))) in
                   (("pending", None, 0), ("completed", 50, 50)) for r in written)
        filler.unlink()
        store.add_runs([_record("c/seed-0")])
        assert store.run("c/seed-0").status == "pending"


def test_temporary_stores_of_dead_processes_are_removed_others_kept(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    dead_pid = int(dead.stdout)
    names = [f".study.db.{dead_pid}.tmp", f".study.db.{dead_pid}.tmp-journal",
             f".study.db.{os.getpid()}.tmp", ".study.db.1.tmp", ".other.db.123.tmp", "notes.tmp"]
    for name in names:
        (tmp_path / name).write_text("x")
    removed = StudyStore.remove_stale_temporaries(tmp_path / "study.db")
    assert sorted(p.name for p in removed) == sorted(names[:2])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names[2:])
