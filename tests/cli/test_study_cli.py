"""`tricklab study`: the command, its report, a killed driver, and the Ray backend."""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from tricklab.run.study import run_study
from tricklab.study.store import StudyStore

from ..conftest import TINY_RECIPE as BASE
from ..conftest import fill, interruptible


def tricklab(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tricklab", *args], env=env,
                          capture_output=True, text=True, timeout=300)


def start_study(study: str, out: Path, env: dict[str, str], **options: object
                ) -> subprocess.Popen:
    """`tricklab study STUDY --out OUT --quiet --workers 2` in the background, interruptible."""
    options = {"preexec_fn": interruptible, **options}
    return subprocess.Popen(
        [sys.executable, "-m", "tricklab", "study", study, "--out", str(out), "--quiet",
         "--workers", "2"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **options,
    )


def write_study(folder: Path, seeds: int = 2, **train: object) -> str:
    base = {**BASE, "train": {**BASE["train"], **train}}
    spec = {"name": "cli-study", "question": "Adam or SGD?", "base": base, "seeds": seeds,
            "variants": {"sgd": {}, "adam": {"set": {"train.optimizer": {"name": "adam"}}}}}
    path = folder / "study.yaml"
    path.write_text(yaml.safe_dump(spec))
    return str(path)


def metrics_by_run(folder: Path) -> dict[str, tuple[str, dict]]:
    with StudyStore.open(folder / "study.db") as store:
        return {r.run_id: (r.status, r.metrics) for r in store.runs()}


def test_study_runs_reports_and_shows(cli_env, tmp_path):
    out = tmp_path / "study"
    done = tricklab("study", write_study(tmp_path), "--out", str(out), "--quiet", "--workers", "2",
                    env=cli_env)
    assert done.returncode == 0, done.stderr
    assert f"report: {out / 'report.html'}" in done.stdout
    assert (out / "report.html").is_file() and (out / "report.md").is_file()
    assert "runs: 4 completed" in done.stderr
    shown = tricklab("study", "show", str(out), env=cli_env)
    assert shown.returncode == 0, shown.stderr
    assert "sgd" in shown.stdout and "adam" in shown.stdout
    again = tricklab("study", "run", write_study(tmp_path), "--out", str(out), "--quiet",
                     env=cli_env)
    assert again.returncode == 0, again.stderr
    assert "4 runs, 4 already finished" in again.stderr


def test_study_set_and_json_then_resume_refuse_and_show(cli_env, tmp_path, capsys):
    from tricklab.cli.main import main

    study, out = write_study(tmp_path, epochs=3), tmp_path / "study-quick"
    sets = ["--set", "train.epochs=1", "--set", "data.train_size=300"]
    done = tricklab("study", study, "--out", str(out), "--quiet", "--workers", "2", *sets,
                    "--json", env=cli_env)
    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout)  # one JSON object and nothing else on stdout
    assert (printed["report"], printed["study_dir"]) == (str(out / "report.html"), str(out))
    assert printed["runs"] == {"completed": 4}
    assert printed["overrides"] == ["train.epochs=1", "data.train_size=300"]
    assert (printed["metric"], printed["baseline"]) == ("test_accuracy", "adam")
    with StudyStore.open(out / "study.db") as store:
        records = store.runs()
    values: dict[str, list[float]] = {}
    for record in records:
        assert record.recipe["train"]["epochs"] == 1, record.run_id
        assert record.recipe["data"]["train_size"] == 300, record.run_id
        values.setdefault(record.variant, []).append(record.metrics["test_accuracy"])
    for variant in printed["variants"]:
        assert variant["n"] == 2 and variant["counts"]["succeeded"] == 2
        assert variant["mean"] == pytest.approx(sum(values[variant["name"]]) / 2)
    assert {variant["verdict"] for variant in printed["variants"]} >= {"baseline"}
    assert "runs: 4 completed" in done.stderr and "report: " in done.stderr

    again = tricklab("study", study, "--out", str(out), "--quiet", *sets, env=cli_env)
    assert again.returncode == 0, again.stderr
    assert "4 runs, 4 already finished" in again.stderr
    assert again.stdout.splitlines()[-1] == f"report: {out / 'report.html'}"

    database = (out / "study.db").read_bytes()
    assert main(["study", study, "--out", str(out), "--quiet", "--set", "train.epochs=2"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == (
        f"error: {study}: the study differs from the one stored in {out / 'study.db'} (--set: "
        "'train.epochs=1' 'data.train_size=300' → 'train.epochs=2'); pass --force-new to "
        "discard it and start over, or --out DIR to run it elsewhere\n")
    assert (out / "study.db").read_bytes() == database

    assert main(["study", "show", str(out), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown == {key: value for key, value in printed.items() if key != "runs"}

    # The folder the README's quick study is not in: the one it is in is suggested.
    assert main(["study", "show", str(tmp_path / "study")]) == 2
    assert capsys.readouterr().err == (
        f"error: {tmp_path / 'study'} does not exist; did you mean {out}?\n")
    assert main(["study", "show", str(tmp_path)]) == 2
    assert capsys.readouterr().err == (
        f"error: {tmp_path} is not a study folder (it holds no study.db); did you mean {out}?\n")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name: x\nbase: {}\nvariants: {a: {}}\nseedz: 3\n", "unknown key 'seedz'"),
        ("name: x\nbase: missing.yaml\nvariants: {a: {}}\n", "recipe file not found"),
        (None, "error: study file not found: "),
    ],
)
@pytest.mark.parametrize("options_first", [False, True], ids=["file-first", "options-first"])
def test_a_bad_study_file_is_one_line_and_exit_2(cli_env, tmp_path, text, message,
                                                 options_first):
    path = tmp_path / "bad.yaml"
    if text is not None:
        path.write_text(text)
    options = ["--out", str(tmp_path / "study"), "--quick"]
    # Options may come before the file, as with any command: the file is still read.
    arguments = [*options, str(path)] if options_first else [str(path), *options]
    done = tricklab("study", *arguments, env=cli_env)
    assert done.returncode == 2
    assert message in done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "study").exists()


ACCEPTED_FINAL = ("train_loss, train_accuracy, val_loss, val_accuracy, test_loss, "
                  "test_accuracy")


@pytest.mark.parametrize(("changes", "options", "message"), [
    ({"metric": "test_acuracy"}, [],
     "{path}: metric: 'test_acuracy' is not reported by any run; did you mean 'test_accuracy'? "
     f"Accepted: {ACCEPTED_FINAL}"),
    ({"target": {"metric": "val_acuracy", "value": 0.8}}, [],
     "{path}: target.metric: 'val_acuracy' is not logged per epoch by any run; did you mean "
     "'val_accuracy'? Accepted: loss, accuracy, val_loss, val_accuracy"),
    ({"lr_search": {"grid": [0.1, 0.01], "metric": "test_accuracy"}}, [],
     "{path}: lr_search.metric: 'test_accuracy' is not a validation metric reported by any "
     "run; did you mean 'val_accuracy'? Accepted: val_loss, val_accuracy"),
    ({}, ["--seeds", "1000000000"], "--seeds: 1000000000 is not a number of seeds from 1 to 1000"),
    ({"seeds": list(range(20_000))}, [],
     "{path}: seeds: a list of seeds should hold at most 1000 seeds, not 20000 (got [0, 1, "),
], ids=["metric", "target-metric", "lr-search-metric", "seeds-option", "seed-list"])
def test_a_study_that_could_not_be_compared_is_refused_before_anything_runs(
    fixture_data, tmp_path, capsys, changes, options, message
):
    from tricklab.cli.main import main

    path = write_study(tmp_path)
    spec = yaml.safe_load(Path(path).read_text())
    Path(path).write_text(yaml.safe_dump({**spec, **changes}))
    out = tmp_path / "study"
    started = time.perf_counter()
    code = main(["study", path, "--out", str(out), "--quiet", "--workers", "1", *options])
    elapsed = time.perf_counter() - started
    error = capsys.readouterr().err
    assert code == 2
    assert error.startswith(f"error: {message.format(path=path)}")
    assert error.count("\n") == 1 and "Traceback" not in error
    assert not out.exists()
    assert elapsed < 2.0  # refused while loading the file: not one of the runs trained


def test_show_refuses_a_foreign_store_and_leaves_it_alone(cli_env, tmp_path):
    (tmp_path / "study").mkdir()
    foreign = tmp_path / "study" / "study.db"
    connection = sqlite3.connect(foreign)
    connection.execute("CREATE TABLE notes (text TEXT)")
    connection.commit()
    connection.close()
    before = foreign.read_bytes()
    done = tricklab("study", "show", str(tmp_path / "study"), env=cli_env)
    assert done.returncode == 2
    assert "belongs to another program" in done.stderr and "Traceback" not in done.stderr
    assert foreign.read_bytes() == before


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if text in (entry / "cmdline").read_bytes().decode(errors="replace"):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc to look for orphans")
def test_sigkill_of_the_driver_then_rerun_completes_with_the_same_numbers(cli_env, tmp_path):
    study = write_study(tmp_path, seeds=3, epochs=3, batch_size=8)
    straight = tmp_path / "straight"
    done = tricklab("study", study, "--out", str(straight), "--quiet", "--workers", "2",
                    env=cli_env)
    assert done.returncode == 0, done.stderr

    killed = tmp_path / "killed"
    process = start_study(study, killed, cli_env, preexec_fn=None)
    deadline = time.monotonic() + 240
    while True:
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "no run finished"
        if (killed / "study.db").exists():
            with sqlite3.connect(f"{(killed / 'study.db').as_uri()}?mode=ro", uri=True) as db:
                finished = db.execute(
                    "SELECT count(*) FROM runs WHERE status = 'completed'").fetchone()[0]
            if finished >= 2:
                break
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.communicate()
    # The killed driver leaves its lock file (with its PID) and, killed a moment earlier, it
    # would have left the temporary store it was building: neither stops the next command.
    assert (killed / "study.lock").read_text().strip() == str(process.pid)
    leftover = killed / f".study.db.{process.pid}.tmp"
    leftover.write_bytes(b"half a store")
    # The workers die with their driver instead of training on unseen.
    deadline = time.monotonic() + 10
    while _processes_mentioning(str(killed)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _processes_mentioning(str(killed)) == []
    interrupted = metrics_by_run(killed)
    assert 2 <= sum(status == "completed" for status, _ in interrupted.values()) < 6

    done = tricklab("study", study, "--out", str(killed), "--quiet", "--workers", "2",
                    env=cli_env)
    assert done.returncode == 0, done.stderr
    resumed, reference = metrics_by_run(killed), metrics_by_run(straight)
    assert sorted(resumed) == sorted(reference)  # exactly one record per (variant, seed)
    assert resumed == reference
    assert not leftover.exists() and not (killed / "study.lock").exists()
    # The starts the kill cut short are not held against the runs.
    with StudyStore.open(killed / "study.db") as store:
        assert [record.attempts for record in store.runs()] == [1] * 6
    for run_id, (status, metrics) in interrupted.items():
        if status == "completed":
            assert resumed[run_id][1] == metrics


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_ray_backend_on_a_local_ray_cluster_matches_the_local_backend(cli_env, tmp_path):
    pytest.importorskip("ray", reason="Ray is the optional extra tricklab[ray]")
    ray = str(Path(sys.executable).with_name("ray"))
    # Ray 2.59+ authenticates clients of local clusters with a token: one shared
    # by the cluster and the study, independent of any token in the home folder.
    env = {**cli_env, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "token",
           "RAY_AUTH_TOKEN": secrets.token_hex(16)}
    port = _free_port()
    started = subprocess.run(
        [ray, "start", "--head", "--num-cpus=2", f"--port={port}", "--include-dashboard=false",
         "--disable-usage-stats"], env=env, capture_output=True, text=True, timeout=180)
    assert started.returncode == 0, started.stderr
    try:
        study = write_study(tmp_path)
        on_ray = tricklab("study", study, "--out", str(tmp_path / "ray"), "--quiet",
                          "--backend", "ray", "--address", f"127.0.0.1:{port}", env=env)
        assert on_ray.returncode == 0, on_ray.stderr
    finally:
        subprocess.run([ray, "stop", "--force"], env=env, capture_output=True, timeout=120)
    local = tricklab("study", study, "--out", str(tmp_path / "local"), "--quiet", env=cli_env)
    assert local.returncode == 0, local.stderr
    assert metrics_by_run(tmp_path / "ray") == metrics_by_run(tmp_path / "local")
    assert all(status == "completed" for status, _ in metrics_by_run(tmp_path / "ray").values())


def test_ctrl_c_stops_the_study_with_130_and_a_rerun_finishes_it(cli_env, tmp_path):
    study = write_study(tmp_path, seeds=3, epochs=3, batch_size=8)
    out = tmp_path / "study"
    process = start_study(study, out, cli_env, start_new_session=True)
    deadline = time.monotonic() + 240
    while not (out / "study.db").exists() or sum(
        status == "completed" for status, _ in metrics_by_run(out).values()
    ) < 1:
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "no run finished"
        time.sleep(0.1)
    os.killpg(process.pid, signal.SIGINT)  # Ctrl-C reaches the driver and its workers
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    statuses = [status for status, _ in metrics_by_run(out).values()]
    assert "completed" in statuses and set(statuses) - {"completed"}

    done = tricklab("study", study, "--out", str(out), "--quiet", env=cli_env)
    assert done.returncode == 0, done.stderr
    assert [status for status, _ in metrics_by_run(out).values()] == ["completed"] * 6


# --- issue 13: one driver per study, a driver stopped alone, a full disk, a damaged store --


def _wait_until(condition: Callable[[], object], process: subprocess.Popen, what: str
                ) -> None:
    deadline = time.monotonic() + 240
    while not condition():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def _records(folder: Path) -> dict:
    with StudyStore.open(folder / "study.db") as store:
        return {record.run_id: record for record in store.runs()}


WAITING_DRIVER = textwrap.dedent("""
    import sys, time
    from pathlib import Path

    import tricklab.run.study  # imported before the go, so the command starts at once
    from tricklab.cli.main import main

    ready, go = Path(sys.argv[1]), Path(sys.argv[2])
    ready.touch()
    while not go.exists():
        time.sleep(0.01)
    sys.exit(main(sys.argv[3:]))
""")


def test_a_second_driver_on_the_same_study_is_refused_and_the_first_finishes(cli_env, tmp_path):
    study = write_study(tmp_path, seeds=3, epochs=3, batch_size=8)
    out = tmp_path / "study"
    command = ["study", study, "--out", str(out), "--quiet", "--workers", "2"]
    # The second command is started first and waits, its imports done: started later, it
    # could take longer to start than the first takes to finish.
    ready, go = tmp_path / "ready", tmp_path / "go"
    second = subprocess.Popen(
        [sys.executable, "-c", WAITING_DRIVER, str(ready), str(go), *command],
        env=cli_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    _wait_until(ready.exists, second, "the second command did not start")
    first = subprocess.Popen([sys.executable, "-m", "tricklab", *command], env=cli_env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_until((out / "study.db").exists, first, "the first driver made no store")
    go.touch()
    _, refused = second.communicate(timeout=120)
    _, stderr = first.communicate(timeout=300)
    assert second.returncode == 2, refused
    assert refused == (f"error: another tricklab study (PID {first.pid}) is running in "
                       f"{out}; wait for it or stop it\n")
    assert first.returncode == 0, stderr
    assert "runs: 6 completed" in stderr
    # Every run trained once, by the first driver alone.
    assert [record.attempts for record in _records(out).values()] == [1] * 6
    assert not (out / "study.lock").exists()


def test_sigterm_to_the_driver_alone_stops_its_workers_runs_and_it_still_reports(
    cli_env, tmp_path
):
    study = write_study(tmp_path, epochs=10, batch_size=8)
    out = tmp_path / "study"
    process = start_study(study, out, cli_env)
    # Both workers' runs are past their first epoch: each has a checkpoint to keep.
    _wait_until(lambda: len({p.parent for p in out.glob("runs/*/seed-*/checkpoints/*.pt")}) == 2,
                process, "the runs reached no checkpoint")
    process.send_signal(signal.SIGTERM)  # `kill PID`: the driver alone, not its workers
    # Once it has stopped its workers' runs, more signals while it records them and writes
    # the report are absorbed. (Sent at once, a SIGINT would be handled first: Python
    # runs the handlers of pending signals in the order of their numbers.)
    _wait_until(lambda: list(out.glob("runs/*/seed-*/result.json")), process,
                "the runs in the workers went on training")
    while not (out / "report.md").exists() and process.poll() is None:
        process.send_signal(signal.SIGINT)
        time.sleep(0.1)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 143, stderr
    assert "Traceback" not in stderr and "already stopping" in stderr
    assert f"report: {out / 'report.html'}" in stdout and "adam" in stdout
    assert (out / "report.html").read_text().rstrip().endswith("</html>")
    records = _records(out)
    stopped = [record for record in records.values() if record.status == "interrupted"]
    assert len(stopped) == 2, {run_id: r.status for run_id, r in records.items()}
    for record in stopped:
        result = json.loads((out / record.run_dir / "result.json").read_text())
        assert result["status"] == "interrupted" and 1 <= result["epochs_run"] < 10
        assert record.attempts == 0  # stopped, not failed: its attempts are unspent
    assert {record.status for record in records.values()} == {"interrupted", "pending"}

    done = tricklab("study", study, "--out", str(out), "--quiet", env=cli_env)
    assert done.returncode == 0, done.stderr
    assert [(r.status, r.attempts) for r in _records(out).values()] == [("completed", 1)] * 4


def test_a_full_disk_ends_the_study_in_one_line_and_exit_4_and_the_rerun_finishes(
    cli_env, tmp_path, small_disk
):
    study = write_study(tmp_path)
    disk = small_disk("4m")
    out = disk / "study"
    filler = fill(disk, leave=300 * 1024)  # the store and a run or so
    done = tricklab("study", study, "--out", str(out), "--quiet", "--workers", "2",
                    env=cli_env)
    assert done.returncode == 4, done.stderr
    lines = done.stderr.splitlines()
    assert [line for line in lines if line.startswith("error:")] == lines[-1:]
    ending = re.fullmatch(r"error: \S+: no space left on device; ([1-4]) run\(s\) left "
                          r"pending: free space and run the same command again", lines[-1])
    assert ending is not None, lines[-1]
    assert "Traceback" not in done.stderr, done.stderr
    filler.unlink()  # reading the store needs room for its journal too
    records = _records(out)
    unfinished = [record for record in records.values() if not record.finished]
    assert int(ending[1]) == len(unfinished)
    # The runs the disk refused go back to pending, their attempt not counted; when the
    # disk refused the store itself, the runs it could not record are stopped, and on a
    # disk still full left `running` for the next command to count as interrupted.
    statuses = {(record.status, record.attempts) for record in unfinished}
    assert statuses <= {("pending", 0), ("interrupted", 0), ("running", 1)}, {
        run_id: (record.status, record.attempts, record.error)
        for run_id, record in records.items()}
    assert all(record.attempts == 1 for record in records.values() if record.finished)

    again = tricklab("study", study, "--out", str(out), "--quiet", "--workers", "2",
                     env=cli_env)
    assert again.returncode == 0, again.stderr
    assert [(r.status, r.attempts) for r in _records(out).values()] == [("completed", 1)] * 4
    assert (out / "report.html").is_file()


def test_a_damaged_store_row_is_one_line_and_exit_2_for_show_and_run(
    fixture_data, cli_env, tmp_path
):
    study = write_study(tmp_path, seeds=1)
    out = tmp_path / "study"
    run_study(study, out=out, workers=2, progress="none")
    raw = sqlite3.connect(out / "study.db")
    raw.execute("UPDATE runs SET recipe = 'not json' WHERE run_id = 'adam/seed-0'")
    raw.commit()
    raw.close()
    before = (out / "study.db").read_bytes()
    expected = (f"error: study store: {out / 'study.db'}: run 'adam/seed-0': recipe is "
                "'not json', not a recipe as a JSON object; the store was changed outside "
                "tricklab; the file was left untouched\n")
    for command in (["study", "show", str(out)], ["study", study, "--out", str(out), "--quiet"]):
        done = tricklab(*command, env=cli_env)
        assert (done.returncode, done.stderr) == (2, expected)
    assert (out / "study.db").read_bytes() == before
    assert sorted(p.name for p in out.iterdir()) == ["runs", "study.db"]
