"""Nothing the user owns is lost, and every failure is one line: the CLI under misuse and signals."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ..conftest import interruptible
from .test_cli import SMALL, tricklab, write_recipe

# One step per sample through a wide layer: an epoch lasts a second or more, long enough
# to be interrupted in.
SLOW_EPOCH = {
    **SMALL,
    # An epoch of 500 single-sample steps: long enough (about a second) for a signal to
    # land in the middle of one, short enough to resume and finish quickly.
    "data": {**SMALL["data"], "train_size": 500},
    "model": {"layers": ["flatten", {"dense": {"units": 1024, "activation": "relu"}},
                         {"dense": {"units": 10, "activation": "softmax"}}]},
    "train": {**SMALL["train"], "epochs": 3, "batch_size": 1},
}


def contents(folder: Path) -> dict[str, bytes]:
    return {str(path.relative_to(folder)): path.read_bytes()
            for path in sorted(folder.rglob("*")) if path.is_file()}


def one_error_line(done: subprocess.CompletedProcess, code: int) -> str:
    assert done.returncode == code, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    return lines[0]


def test_overwrite_never_deletes_what_tricklab_did_not_make(cli_env, tmp_path):
    recipe = write_recipe(tmp_path)
    thesis = tmp_path / "thesis"
    thesis.mkdir()
    (thesis / "chapter1.tex").write_text("months of work")
    line = one_error_line(tricklab("train", recipe, "--out", str(thesis), "--overwrite",
                                   env=cli_env), 2)
    assert line == (f"error: --out: {thesis} is not a tricklab run (chapter1.tex); tricklab "
                    "writes runs only into a new or empty folder or one of its own runs: "
                    "choose another --out")
    assert contents(thesis) == {"chapter1.tex": b"months of work"}

    # `--out ""` (an unset variable) and `--out .` in the folder holding the recipe.
    line = one_error_line(tricklab("train", recipe, "--out", "", "--overwrite", env=cli_env), 2)
    assert "an empty path" in line
    before = contents(tmp_path)
    line = one_error_line(tricklab("train", "recipe.yaml", "--out", ".", "--overwrite",
                                   env=cli_env, cwd=tmp_path), 2)
    assert line.startswith("error: --out: . is not a tricklab run (")
    assert contents(tmp_path) == before


def test_a_path_through_a_file_and_a_read_only_folder_are_one_line(cli_env, tmp_path,
                                                                  small_disk):
    recipe = write_recipe(tmp_path)
    (tmp_path / "a_file").write_text("x")
    line = one_error_line(tricklab("train", recipe, "--out", str(tmp_path / "a_file" / "sub"),
                                   env=cli_env), 2)
    assert line == f"error: --out: {tmp_path / 'a_file'} exists and is not a directory"
    read_only = small_disk("1m", read_only=True)
    line = one_error_line(tricklab("train", recipe, "--out", str(read_only / "run"),
                                   env=cli_env), 4)
    assert line == (f"error: --out: {read_only}: cannot write there (a read-only filesystem "
                    "or no permission)")


def test_a_full_disk_during_training_is_one_line_and_leaves_no_folder(cli_env, tmp_path,
                                                                      small_disk):
    disk = small_disk("2m")
    large = {**SMALL, "model": {"layers": ["flatten", {"dense": {"units": 2000}},
                                           {"dense": {"units": 10, "activation": "softmax"}}]}}
    done = tricklab("train", write_recipe(tmp_path, large), "--out", str(disk / "run"),
                    "--quiet", env=cli_env)
    line = done.stderr.strip().splitlines()[-1]
    assert done.returncode == 4 and "Traceback" not in done.stderr, done.stderr
    assert line.startswith(f"error: {disk / 'run' / 'checkpoints'}") or line.startswith(
        f"error: {disk}"), line
    assert line.endswith(": no space left on device")
    assert list(disk.iterdir()) == []


def _start(arguments: list[str], env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "tricklab", *arguments], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=interruptible)


def _wait_for(process: subprocess.Popen, ready) -> None:
    deadline = time.monotonic() + 240
    while not ready():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "training never started"
        time.sleep(0.02)


def test_ctrl_c_in_the_first_epoch_of_an_overwrite_puts_the_old_run_back(cli_env, tmp_path):
    run = tmp_path / "run"
    done = tricklab("train", write_recipe(tmp_path), "--out", str(run), "--set",
                    "train.epochs=1", "--quiet", env=cli_env)
    assert done.returncode == 0, done.stderr
    before = contents(run)
    slow = write_recipe(tmp_path, SLOW_EPOCH)
    process = _start(["train", slow, "--out", str(run), "--overwrite", "--quiet"], cli_env)
    # The old run is set aside just before training starts.
    _wait_for(process, lambda: not run.exists())
    time.sleep(0.1)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert stderr.strip().splitlines()[-1] == (
        f"interrupted: stopped before the first epoch ended, so nothing was saved and the earlier "
        f"run in {run} is put back; run the same command again to start over")
    assert "Traceback" not in stderr
    assert contents(run) == before
    assert not [path for path in tmp_path.iterdir() if path.name.startswith(".")]


@pytest.mark.parametrize(("stop", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_stop_signal_twice_keeps_the_checkpoint_and_prints_no_traceback(cli_env, tmp_path,
                                                                          stop, code):
    run = tmp_path / "run"
    process = _start(["train", write_recipe(tmp_path, SLOW_EPOCH), "--out", str(run),
                      "--quiet"], cli_env)
    _wait_for(process, lambda: (run / "checkpoints" / "epoch_0001.pt").exists())
    process.send_signal(stop)
    time.sleep(0.05)
    process.send_signal(stop)  # an impatient second press while the run saves its state
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == code, stderr
    assert "Traceback" not in stderr
    result = json.loads((run / "result.json").read_text())
    assert result["status"] == "interrupted" and result["epochs_run"] >= 1
    # Only the newest two checkpoints are kept: on a fast machine epoch 1's may be gone.
    kept = sorted(path.name for path in (run / "checkpoints").glob("epoch_*.pt"))
    assert kept and kept[-1] == f"epoch_{result['epochs_run']:04d}.pt"
    resumed = tricklab("train", str(tmp_path / "recipe.yaml"), "--out", str(run), "--resume",
                       "--quiet", env=cli_env)
    assert resumed.returncode == 0, resumed.stderr
    result = json.loads((run / "result.json").read_text())
    assert result["status"] == "completed"
    assert result["resumed_from_epoch"] == int(kept[-1][6:10])


def test_resume_where_nothing_was_saved_starts_over_with_a_note(cli_env, tmp_path):
    # What a run stopped in its first epoch leaves: no folder. `--resume` then trains it
    # from the beginning, and says so on stderr.
    run = tmp_path / "run"
    done = tricklab("train", write_recipe(tmp_path), "--out", str(run), "--resume", "--quiet",
                    env=cli_env)
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines()[0] == (
        f"--resume: {run} holds no run yet (a run stopped before its first epoch ended saves "
        "nothing); training starts from the beginning")
    result = json.loads((run / "result.json").read_text())
    assert result["status"] == "completed" and result["resumed_from_epoch"] == 0
