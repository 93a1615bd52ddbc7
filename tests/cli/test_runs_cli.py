"""`tricklab runs` and `tricklab runs diff` as a user runs them: tables on stdout, errors in one
line, and no PyTorch, NumPy, pandas or matplotlib imported on the way."""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tricklab.data import sources
from tricklab.recipe import recipe_from_dict
from tricklab.run import train_recipe

from ..conftest import FIXTURES, TINY_RECIPE

HEAVY = ("torch", "numpy", "pandas", "matplotlib", "scipy")


def tricklab(*args: str, env: dict[str, str], cwd: Path | None = None,
             python: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *python, "-m", "tricklab", *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One real run of the tiny recipe, trained once for the module."""
    folder = tmp_path_factory.mktemp("runs-cli")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TRICKLAB_DATA", str(FIXTURES))
        patch.setenv("TRICKLAB_CACHE", str(folder / "cache"))
        patch.setattr(sources, "SYSTEM_DATA_DIR", folder / "system")
        recipe = recipe_from_dict(copy.deepcopy(TINY_RECIPE))
        return train_recipe(recipe, out=folder / "run", progress="none").run_dir


@pytest.fixture
def runs(trained: Path, tmp_path: Path) -> Path:
    """runs/: the real run, a copy of it trained 'longer' to a better accuracy, a killed copy."""
    root = tmp_path / "runs"
    shutil.copytree(trained, root / "first")
    better = shutil.copytree(trained, root / "group" / "better")
    result = json.loads((better / "result.json").read_text())
    result["metrics"]["test_accuracy"] = 0.875
    result["epochs_run"] = 5
    (better / "result.json").write_text(json.dumps(result))
    recipe = (better / "recipe.yaml").read_text()
    (better / "recipe.yaml").write_text(re.sub(r"epochs: 1\b", "epochs: 5", recipe))
    killed = shutil.copytree(trained, root / "killed")
    (killed / "result.json").unlink()
    return root


def test_runs_prints_the_table_and_json_without_importing_torch(runs, cli_env):
    listed = tricklab("runs", str(runs), "--sort", "-metric", env=cli_env, python=("-X",
                                                                                  "importtime"))
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0].split()[:3] == ["name", "kind", "status"]
    assert [line.split()[0] for line in lines[1:]] == ["group/better", "first", "killed"]
    assert "test_accuracy 0.8750" in lines[1] and "incomplete" in lines[3]
    assert "missing result.json" in lines[3]
    imported = {line.split("|")[-1].strip() for line in listed.stderr.splitlines()
                if line.startswith("import time:")}
    assert imported, listed.stderr[-500:]
    assert not [name for name in imported if name.split(".")[0] in HEAVY]
    # The default folder is ./runs; --filter and --json as a script reads them.
    as_json = tricklab("runs", "--filter", "status=completed", "--json", env=cli_env,
                       cwd=runs.parent)
    assert as_json.returncode == 0, as_json.stderr
    rows = json.loads(as_json.stdout)
    assert [(row["name"], row["kind"], row["epochs"]) for row in rows] == [
        ("first", "run", 1), ("group/better", "run", 5)]


def test_runs_diff_shows_the_changed_fields_and_the_results(runs, cli_env):
    first, better = runs / "first", runs / "group" / "better"
    compared = tricklab("runs", "diff", str(first), str(better), env=cli_env)
    assert compared.returncode == 0, compared.stderr
    assert compared.stdout.splitlines()[:4] == [
        f"A: {first}", f"B: {better}", "recipe: 1 field differs", "  train.epochs: 1 → 5"]
    accuracy = json.loads((first / "result.json").read_text())["metrics"]["test_accuracy"]
    line = next(line for line in compared.stdout.splitlines() if "test_accuracy" in line)
    assert line.split() == ["test_accuracy", f"{accuracy:.4f}", "0.8750", f"{0.875 - accuracy:+.4f}"]
    as_json = tricklab("runs", "diff", str(first), str(better), "--json", env=cli_env)
    data = json.loads(as_json.stdout)
    assert data["recipe"] == [{"field": "train.epochs", "a": 1, "b": 5}]
    assert data["results"]["epochs"] == {"a": 1, "b": 5}


def test_a_folder_that_is_not_a_run_is_one_line_and_exit_2(runs, cli_env, tmp_path):
    (tmp_path / "notes").mkdir()
    for args, message in (
        (("runs", "diff", str(runs / "first"), str(tmp_path / "notes")),
         f"error: runs diff: {tmp_path / 'notes'} is not a run folder (no recipe.yaml); "
         "`tricklab runs` lists the runs there are"),
        (("runs", str(tmp_path / "nowhere")),
         f"error: {tmp_path / 'nowhere'} does not exist; tricklab writes runs and studies into "
         "runs/ by default; give the folder that holds them: tricklab runs FOLDER"),
        (("runs", str(runs), "--sort", "speed"),
         "error: --sort: 'speed' is not a column; choose one of name, kind, status, runs, "
         "epochs, metric, val_loss, best, wall_time, date, note, with a leading - for "
         "descending"),
    ):
        done = tricklab(*args, env=cli_env)
        assert (done.returncode, done.stdout, done.stderr) == (2, "", message + "\n")
