"""`tricklab study`: the command, its report, a killed driver, and the Ray backend."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tricklab.study.store import StudyStore

from ..conftest import TINY_RECIPE as BASE
from ..conftest import interruptible


def tricklab(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tricklab", *args], env=env,
                          capture_output=True, text=True, timeout=300)


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


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name: x\nbase: {}\nvariants: {a: {}}\nseedz: 3\n", "unknown key 'seedz'"),
        ("name: x\nbase: missing.yaml\nvariants: {a: {}}\n", "recipe file not found"),
    ],
)
def test_a_bad_study_file_is_one_line_and_exit_2(cli_env, tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    done = tricklab("study", str(path), "--out", str(tmp_path / "study"), env=cli_env)
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
    process = subprocess.Popen(
        [sys.executable, "-m", "tricklab", "study", study, "--out", str(killed), "--quiet",
         "--workers", "2"],
        env=cli_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
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
    process = subprocess.Popen(
        [sys.executable, "-m", "tricklab", "study", study, "--out", str(out), "--quiet",
         "--workers", "2"],
        env=cli_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=interruptible,
        start_new_session=True,
    )
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
