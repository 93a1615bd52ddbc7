"""`tricklab tricks`: the quick pipeline end to end, and bad input refused before anything runs."""

from __future__ import annotations

import html
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tricklab.recipe import load_recipe
from tricklab.recipe.load import read_yaml
from tricklab.recipe.study import load_study
from tricklab.run import build
from tricklab.run.tricks import plan_tricks
from tricklab.study.store import StudyStore

from ..browser import render
from ..conftest import TINY_RECIPE

RECIPE = {**TINY_RECIPE, "data": {**TINY_RECIPE["data"], "validation": 200, "train_size": 600}}
"""The tests' 784-16-10 MLP on 600 fixture images: every run of the quick study is short."""


def write_recipe(folder: Path, document: dict = RECIPE) -> Path:
    path = folder / "tiny.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def test_quick_tricks_run_report_recommend_and_the_study_file_runs_again(
    cli_env, tmp_path, capsys
):
    from tricklab.cli.main import main

    recipe, out = write_recipe(tmp_path), tmp_path / "out"
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "tricklab", "tricks", str(recipe), "--quick", "--quiet",
         "--workers", "2", "--out", str(out), "--families", "preset,optimizer,batch_norm"],
        env=cli_env, capture_output=True, text=True, timeout=300)
    seconds = time.perf_counter() - started
    assert done.returncode == 0, done.stderr
    # The baseline and one variant of each family asked for, 2 seeds each (8 runs), and
    # momentum's search of 3 rates x 2 seeds (6), two of which its main runs reuse.
    assert "runs: 14 completed" in done.stderr
    skipped = json.loads((out / "skipped.json").read_text())
    assert skipped == {name: "--quick tries one variant per family: momentum here"
                       for name in ("nesterov", "rmsprop", "adam", "nadam")}
    for name, reason in skipped.items():
        assert f"skipped {name}: {reason}\n" in done.stderr
    lines = done.stdout.splitlines()
    assert lines[-3:] == [f"report: {out / 'report.html'}",
                          f"recommended: {out / 'recommended.yaml'}",
                          f"study: {out / 'tricks.yaml'}"]
    first = next(line for line in lines if line.startswith(("Recommended:", "Nothing helped")))
    report = (out / "report.html").read_text()
    assert report.index('<section id="recommendation">') < report.index('id="ranking"')
    assert f"<li>{html.escape(first)}</li>" in report
    rendered = render(out / "report.html", [
        "() => Array.from(document.querySelectorAll('#recommendation li'), li => li.textContent)",
        "() => Array.from(document.images, i => [i.complete, i.naturalWidth])",
        "() => Array.from(document.querySelectorAll('#ranking tbody tr'), r => r.dataset.variant)",
    ], "tricks_report.png")
    items, images, rows = rendered.values
    assert rendered.errors == [] and rendered.blocked == []
    assert items[0].startswith("The doctor found the baseline ") and first in items
    assert images and all(complete and width > 0 for complete, width in images), images
    assert sorted(rows) == ["baseline", "batch_norm", "default_dnn", "momentum"]

    # recommended.yaml trains as it is: the recipe itself when nothing helped detectably.
    recommended = load_recipe(out / "recommended.yaml")
    build(recommended)
    if first.startswith("Nothing helped"):
        assert read_yaml(out / "recommended.yaml") == RECIPE
    else:
        assert recommended.name == "tiny-recommended"
        assert recommended.to_dict() != load_recipe(recipe).to_dict() | {
            "name": "tiny-recommended"}

    # tricks.yaml is the study that ran: `tricklab study` finds every run finished, and
    # the same command again would make the same file.
    assert read_yaml(out / "tricks.yaml")["base"] == "../tiny.yaml"
    plan = plan_tricks(recipe, ("batch_norm", "optimizer", "preset"), quick=True)
    assert plan.study_text(out) == (out / "tricks.yaml").read_text()
    assert list(read_yaml(out / "tricks.yaml")["variants"]) == [
        "baseline", "batch_norm", "momentum", "default_dnn"]
    code = main(["study", str(out / "tricks.yaml"), "--quick", "--out", str(out), "--quiet"])
    assert code == 0
    assert "tiny-tricks: 8 runs, 8 already finished" in capsys.readouterr().err
    with StudyStore.open(out / "study.db") as store:
        assert store.fingerprint == load_study(out / "tricks.yaml", quick=True).fingerprint
    print(f"tricklab tricks --quick: {seconds:.1f} s")


@pytest.mark.parametrize(("arguments", "message"), [
    (["--families", "optimizer,dropuot"],
     "error: --families: 'dropuot' is not a family of tricks; known: init_activation, "
     "batch_norm, clipping, optimizer, schedule, regularization, preset"),
    (["--seeds", "0"], "error: --seeds: 0 is not a number of seeds from 1 to 1000"),
    (["--backend", "spark"], "error: --backend: 'spark' is not a backend (accepted: local, ray)"),
    (["--budget", "soon"], "error: --budget: 'soon' is not a duration; write e.g. 90s, 20m or "
                           "1.5h"),
    (["--budget", "5m", "--quick"], "error: --budget: --quick runs 2 seeds of 1 epoch whatever "
                                    "the budget; give one of the two"),
], ids=["family", "seeds", "backend", "budget", "budget-quick"])
def test_bad_options_are_one_line_and_exit_2_with_nothing_written(
    fixture_data, tmp_path, capsys, arguments, message
):
    from tricklab.cli.main import main

    out = tmp_path / "out"
    code = main(["tricks", str(write_recipe(tmp_path)), "--out", str(out), *arguments])
    error = capsys.readouterr().err
    assert (code, error) == (2, f"{message}\n")
    assert not out.exists()


def test_an_invalid_recipe_is_one_line_and_exit_2(fixture_data, tmp_path, capsys):
    from tricklab.cli.main import main

    recipe = write_recipe(tmp_path, {**RECIPE, "train": {**RECIPE["train"], "epoch": 3}})
    code = main(["tricks", str(recipe), "--out", str(tmp_path / "out")])
    error = capsys.readouterr().err
    assert code == 2 and error.count("\n") == 1 and "Traceback" not in error
    assert error.startswith("error: train: unknown key 'epoch'")
    assert not (tmp_path / "out").exists()


def test_an_out_folder_holding_another_study_is_refused_untouched(
    fixture_data, tmp_path, capsys
):
    from tricklab.cli.main import main

    recipe, out = write_recipe(tmp_path), tmp_path / "out"
    other = plan_tricks(recipe, ("schedule",))
    out.mkdir()
    (out / "tricks.yaml").write_text(other.study_text(out))
    study = load_study(out / "tricks.yaml")
    StudyStore.create(out / "study.db", study.spec, study.fingerprint).close()
    before = {path.name: path.read_bytes() for path in out.iterdir()}
    code = main(["tricks", str(recipe), "--out", str(out), "--families", "optimizer"])
    error = capsys.readouterr().err
    assert (code, error) == (2, f"error: --out: {out} holds another study ('tiny-tricks', made "
                                "from other variants, epochs, budget or metric); choose another "
                                "folder\n")
    assert {path.name: path.read_bytes() for path in out.iterdir()} == before


def test_a_budget_is_planned_from_one_epoch_and_kept(cli_env, tmp_path):
    recipe, out = write_recipe(tmp_path), tmp_path / "out"
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "tricklab", "tricks", str(recipe), "--budget", "40s", "--quiet",
         "--workers", "2", "--out", str(out), "--families", "batch_norm"],
        env=cli_env, capture_output=True, text=True, timeout=300)
    seconds = time.perf_counter() - started
    assert done.returncode == 0, done.stderr
    assert seconds <= 1.1 * 40
    planning = json.loads((out / "planning.json").read_text())
    probe, budget = planning["probe"], planning["budget"]
    # The probe trained exactly one epoch of the 600 training images, in batches of 32.
    assert probe["one_epoch"] and probe["steps"] == 19
    # One variant: no second round; the recipe's one epoch; as many seeds as asked (5) fit.
    assert (budget["seeds"], budget["epochs"], budget["runs"], budget["left_out"]) == (
        5, 1, 10, [])
    assert f"Budget 40.0s: one epoch of the baseline takes {seconds_of(budget)} on one core, " \
           "so 10 runs of 5 seeds x 1 epoch(s)" in done.stderr
    assert "runs: 10 completed" in done.stderr
    took = next(line for line in done.stdout.splitlines() if line.startswith("Took "))
    assert "against a budget of 40.0s: the runs " in took and "% of the runs." in took
    report = html.unescape((out / "report.html").read_text())
    block = report[report.index('<section id="recommendation">'):report.index('id="ranking"')]
    assert block.index("The doctor found the baseline") < block.index("Budget 40.0s") < (
        block.index("Took "))
    assert (out / "doctor" / "doctor.json").is_file()


def seconds_of(budget: dict) -> str:
    from tricklab.run.tricks_probe import seconds

    return seconds(budget["epoch_seconds"])


def test_a_budget_too_small_is_one_line_and_writes_nothing(fixture_data, tmp_path, capsys):
    from tricklab.cli.main import main

    recipe, out = write_recipe(tmp_path), tmp_path / "out"
    code = main(["tricks", str(recipe), "--budget", "1s", "--out", str(out), "--families",
                 "batch_norm"])
    error = capsys.readouterr().err
    assert code == 2 and error.count("\n") == 1, error
    assert error.startswith("error: --budget: 1.0s is too short: one epoch of the baseline "
                            "takes ")
    assert "give more time or leave --budget out" in error
    assert not out.exists()


def test_ctrl_c_stops_tricks_and_the_same_command_finishes_it(cli_env, tmp_path):
    recipe = write_recipe(tmp_path, {**RECIPE, "train": {**RECIPE["train"], "epochs": 3,
                                                         "batch_size": 8}})
    out = tmp_path / "out"
    command = [sys.executable, "-m", "tricklab", "tricks", str(recipe), "--quiet", "--seeds",
               "3", "--workers", "2", "--out", str(out), "--families", "batch_norm,clipping"]
    process = subprocess.Popen(command, env=cli_env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 240
    while not list(out.glob("runs/*/seed-*/result.json")):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "no run finished"
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGINT)  # Ctrl-C reaches the command and its workers
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    planned = (out / "planning.json").read_bytes()
    probed = (out / "doctor" / "doctor.json").stat().st_mtime_ns

    done = subprocess.run(command, env=cli_env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert re.search(r"tiny-tricks: 6 runs, [1-5] already finished", done.stderr), done.stderr
    # The planning was read back, not made again: the same study resumed.
    assert (out / "planning.json").read_bytes() == planned
    assert (out / "doctor" / "doctor.json").stat().st_mtime_ns == probed
    with StudyStore.open(out / "study.db") as store:
        assert {record.status for record in store.runs()} == {"completed"}
