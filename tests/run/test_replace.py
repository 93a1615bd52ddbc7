"""Replacing only tricklab's own folders, and putting an old run back when its replacement fails."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tricklab.errors import UserInputError
from tricklab.run.replace import SET_ASIDE_PREFIX, SetAside, check_replaceable, recover
from tricklab.run.rundir import RUN_ENTRIES


def make_run(folder: Path, marker: str = "old") -> Path:
    (folder / "checkpoints").mkdir(parents=True)
    (folder / "recipe.yaml").write_text(f"name: {marker}\n")
    (folder / "result.json").write_text('{"epochs_run": 1}')
    (folder / "checkpoints" / "epoch_0001.pt").write_bytes(marker.encode())
    return folder


def contents(folder: Path) -> dict[str, bytes]:
    return {str(path.relative_to(folder)): path.read_bytes()
            for path in sorted(folder.rglob("*")) if path.is_file()}


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


@pytest.mark.parametrize("foreign", ["thesis.tex", "data", ".git"])
def test_a_folder_with_anything_tricklab_did_not_make_is_refused(tmp_path, foreign):
    run = make_run(tmp_path / "run")
    (run / foreign).write_text("mine")
    with pytest.raises(UserInputError) as error:
        check_replaceable(run, "--overwrite", RUN_ENTRIES, "run")
    assert str(error.value) == (
        f"--overwrite: {run} is not a tricklab run (it holds {foreign}); tricklab replaces "
        "only its own runs: choose another folder with --out"
    )


def test_a_run_and_its_leftover_temporary_files_are_replaceable(tmp_path):
    run = make_run(tmp_path / "run")
    (run / ".result.json.abc.tmp").write_text("{")
    check_replaceable(run, "--overwrite", RUN_ENTRIES, "run")


@pytest.mark.parametrize(
    ("target", "reason"),
    [(".", "it is the current directory"), ("..", "it holds the current directory"),
     ("HOME", "it is the home folder"), ("/", "it is the filesystem root")],
)
def test_the_working_directory_its_parents_home_and_root_are_never_replaced(
    tmp_path, monkeypatch, target, reason
):
    # Even when they hold nothing but a run's files.
    home = make_run(tmp_path / "home")
    working = home / "plots" / "epochs"
    working.mkdir(parents=True)
    monkeypatch.chdir(working)
    monkeypatch.setenv("HOME", str(home))
    path = home if target == "HOME" else Path(target)
    with pytest.raises(UserInputError, match=f"refusing to replace .*: {reason}; give --out"):
        check_replaceable(path, "--overwrite", [*RUN_ENTRIES, "plots"], "run")


def test_set_aside_then_restore_gives_back_the_old_folder_untouched(tmp_path):
    run = make_run(tmp_path / "run")
    before = contents(run)
    aside = SetAside(run)
    assert not run.exists() and aside.aside.name == f"{SET_ASIDE_PREFIX}run.{os.getpid()}"
    make_run(run, "new")  # the replacement started writing, then failed
    aside.restore()
    assert contents(run) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_set_aside_then_discard_deletes_only_the_old_folder(tmp_path):
    run = make_run(tmp_path / "run")
    aside = SetAside(run)
    make_run(run, "new")
    aside.discard()
    assert contents(run)["recipe.yaml"] == b"name: new\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


@pytest.mark.parametrize(
    ("replacement", "kept"),
    [(None, "old"), ("empty", "old"), ("progressed", "new")],
)
def test_recover_finishes_what_a_killed_replacement_left(tmp_path, replacement, kept):
    run = tmp_path / "run"
    make_run(tmp_path / f"{SET_ASIDE_PREFIX}run.{dead_pid()}", "old")
    if replacement == "empty":
        run.mkdir()
    elif replacement == "progressed":
        make_run(run, "new")
    recover(run, has_progress=replacement == "progressed")
    assert contents(run)["recipe.yaml"] == f"name: {kept}\n".encode()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_recover_leaves_a_folder_set_aside_by_a_live_process(tmp_path):
    live = make_run(tmp_path / f"{SET_ASIDE_PREFIX}run.{os.getpid()}")
    recover(tmp_path / "run", has_progress=False)
    assert live.is_dir() and not (tmp_path / "run").exists()
