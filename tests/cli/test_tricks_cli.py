"""`tricklab tricks`: the quick pipeline end to end, and bad input refused before anything runs."""

from __future__ import annotations

import html
import json
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
], ids=["family", "seeds", "backend"])
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
                                "from other variants, epochs or metric); choose another folder\n")
    assert {path.name: path.read_bytes() for path in out.iterdir()} == before
