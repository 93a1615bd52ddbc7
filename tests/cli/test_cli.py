"""The command line as a user meets it: real subprocesses, real signals, real files."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from ..conftest import REPOSITORY, interruptible

SMALL = {
    "name": "cli-small",
    "seed": 5,
    "data": {"dataset": "fashion_mnist", "validation": 500},
    "model": {
        "layers": [
            "flatten",
            {"dense": {"units": 64, "kernel_initializer": "he_normal"}},
            "leaky_relu",
            {"dense": {"units": 10, "activation": "softmax"}},
        ]
    },
    "train": {"optimizer": {"name": "sgd", "learning_rate": 0.01, "momentum": 0.9},
              "epochs": 2, "metrics": ["accuracy"]},
}


def tricklab(*args: str, env: dict[str, str], cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tricklab", *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def write_recipe(folder: Path, document: dict | str = SMALL) -> str:
    path = folder / "recipe.yaml"
    path.write_text(document if isinstance(document, str) else yaml.safe_dump(document))
    return str(path)


def final_weights(run: Path) -> dict[str, torch.Tensor]:
    latest = sorted((run / "checkpoints").glob("epoch_*.pt"))[-1]
    return torch.load(latest, weights_only=True)["model"]


def test_version_schema_list_and_summary(cli_env, tmp_path):
    assert tricklab("--version", env=cli_env).stdout.startswith("tricklab ")
    schema = json.loads(tricklab("schema", env=cli_env).stdout)
    assert schema["title"] == "tricklab recipe"
    listing = tricklab("list", "layers", env=cli_env)
    assert listing.returncode == 0 and "batch_norm" in listing.stdout
    summary = tricklab("summary", str(REPOSITORY / "recipes/chapter11/leaky_relu_he.yaml"),
                       env=cli_env)
    assert summary.returncode == 0, summary.stderr
    assert "266,610" in summary.stdout


def test_train_writes_the_run_directory(cli_env, tmp_path):
    done = tricklab("train", write_recipe(tmp_path), "--out", str(tmp_path / "run"), "--quiet",
                    env=cli_env)
    assert done.returncode == 0, done.stderr
    assert "epoch 2/2" in done.stderr and "completed" in done.stderr
    assert json.loads((tmp_path / "run" / "result.json").read_text())["status"] == "completed"


def test_default_run_directory_and_set(cli_env, tmp_path):
    done = tricklab("train", write_recipe(tmp_path), "--set", "train.epochs=1", "--quiet",
                    env=cli_env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    result = json.loads((tmp_path / "runs" / "cli-small" / "result.json").read_text())
    assert result["epochs_run"] == 1


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ({"extra": 1}, "unknown key 'extra'"),
        ({"train": {**SMALL["train"], "epochs": "three"}}, "train.epochs: input should be a valid integer"),
        ({"model": {"layers": ["flaten"]}}, "model.layers.0: unknown layer 'flaten'; did you mean 'flatten'?"),
        ({"train": {**SMALL["train"], "optimizer": {"name": "adma"}}},
         "train.optimizer.name: unknown optimizer 'adma'; did you mean 'adam'?"),
    ],
)
def test_bad_recipes_exit_2_with_one_line_and_touch_nothing(cli_env, tmp_path, edit, message):
    run = tmp_path / "run"
    run.mkdir()
    (run / "result.json").write_text("{}")
    done = tricklab("train", write_recipe(tmp_path, {**SMALL, **edit}), "--out", str(run),
                    "--overwrite", env=cli_env)
    assert done.returncode == 2
    assert message in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
    assert (run / "result.json").read_text() == "{}"


def test_missing_recipe_file_and_missing_dataset(cli_env, tmp_path):
    missing = tricklab("train", str(tmp_path / "nope.yaml"), env=cli_env)
    assert missing.returncode == 2 and missing.stderr.strip() == (
        f"error: recipe file not found: {tmp_path / 'nope.yaml'}")
    offline = {**cli_env, "TRICKLAB_DATA_URL": "http://127.0.0.1:9/"}
    mnist = {**SMALL, "data": {"dataset": "mnist"}}
    done = tricklab("train", write_recipe(tmp_path, mnist), "--out", str(tmp_path / "run"),
                    env=offline)
    assert done.returncode == 2
    assert "dataset 'mnist' not found" in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_diverged_run_exits_3(cli_env, tmp_path):
    document = {**SMALL, "data": {"dataset": "fashion_mnist", "validation": 500, "scale": "none"},
                "train": {**SMALL["train"], "optimizer": {"name": "sgd", "learning_rate": 100.0}}}
    done = tricklab("train", write_recipe(tmp_path, document), "--out", str(tmp_path / "run"),
                    "--quiet", env=cli_env)
    assert done.returncode == 3, done.stderr
    assert json.loads((tmp_path / "run" / "result.json").read_text())["status"] == "diverged"


def _start_and_wait_for(recipe: str, run: Path, env: dict[str, str], checkpoint: str):
    process = subprocess.Popen(
        [sys.executable, "-m", "tricklab", "train", recipe, "--out", str(run), "--quiet"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=interruptible,
    )
    deadline = time.monotonic() + 240
    while not (run / "checkpoints" / checkpoint).exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.02)
    time.sleep(0.15)  # let it get into the middle of the next epoch
    return process


SLOW = {**SMALL, "train": {**SMALL["train"], "epochs": 5, "batch_size": 4}}


def test_sigkill_then_resume_matches_an_uninterrupted_run(cli_env, tmp_path):
    recipe = write_recipe(tmp_path, SLOW)
    straight = tricklab("train", recipe, "--out", str(tmp_path / "straight"), "--quiet",
                        env=cli_env)
    assert straight.returncode == 0, straight.stderr

    killed = tmp_path / "killed"
    process = _start_and_wait_for(recipe, killed, cli_env, "epoch_0002.pt")
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (killed / "result.json").exists()
    corrupt = tmp_path / "corrupt"
    shutil.copytree(killed, corrupt)

    resumed = tricklab("train", recipe, "--out", str(killed), "--resume", "--quiet", env=cli_env)
    assert resumed.returncode == 0, resumed.stderr
    result = json.loads((killed / "result.json").read_text())
    assert result["resumed_from_epoch"] >= 2 and result["epochs_run"] == 5
    reference = final_weights(tmp_path / "straight")
    assert all(torch.equal(reference[k], v) for k, v in final_weights(killed).items())

    # A corrupt newest checkpoint: warn, fall back to the one before, same final weights.
    newest = sorted((corrupt / "checkpoints").glob("epoch_*.pt"))[-1]
    newest.write_bytes(newest.read_bytes()[:100])
    fallback = tricklab("train", recipe, "--out", str(corrupt), "--resume", "--quiet",
                        env=cli_env)
    assert fallback.returncode == 0, fallback.stderr
    assert "unreadable" in fallback.stderr and "falling back" in fallback.stderr
    assert all(torch.equal(reference[k], v) for k, v in final_weights(corrupt).items())


def test_lr_find_writes_plot_and_suggestion(cli_env, tmp_path):
    done = tricklab("lr-find", write_recipe(tmp_path), "--steps", "120", "--out",
                    str(tmp_path / "lrf"), env=cli_env)
    assert done.returncode == 0, done.stderr
    assert "suggested max learning rate for 1cycle" in done.stdout
    summary = json.loads((tmp_path / "lrf" / "lr_find.json").read_text())
    assert len(summary["learning_rates"]) <= 120
    assert (tmp_path / "lrf" / "plots" / "lr_find.png").read_bytes()[:4] == b"\x89PNG"
    again = tricklab("lr-find", write_recipe(tmp_path), "--out", str(tmp_path / "lrf"),
                     env=cli_env)
    assert again.returncode == 2 and "already holds a run" in again.stderr


def test_doctor_prints_the_verdict_and_writes_doctor_json(cli_env, tmp_path):
    dead = {**SMALL, "model": {**SMALL["model"], "layers": [
        "flatten",
        {"dense": {"units": 32, "activation": "relu",
                   "bias_initializer": {"constant": {"value": -10.0}}}},
        {"dense": {"units": 10, "activation": "softmax"}},
    ]}}
    done = tricklab("doctor", write_recipe(tmp_path, dead), "--out", str(tmp_path / "doc"),
                    "--steps", "100", "--quiet", env=cli_env)
    assert done.returncode == 0, done.stderr
    assert "dead_units" in done.stdout.replace("\n", "") or "dead units" in done.stdout
    assert json.loads((tmp_path / "doc" / "doctor.json").read_text())["verdict"] == "unhealthy"
    trained = tricklab("train", write_recipe(tmp_path, SMALL), "--out", str(tmp_path / "run"),
                       "--doctor", "--quiet", env=cli_env)
    assert trained.returncode == 0, trained.stderr
    assert (tmp_path / "run" / "doctor.json").is_file()
