"""The command line as a user meets it: real subprocesses, real signals, real files."""

from __future__ import annotations

import json
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import typer
import yaml

from tricklab.cli.main import FAMILIES, app, one_cycle_line
from tricklab.cli.main import main as cli_main
from tricklab.errors import UserInputError
from tricklab.nn import build_model
from tricklab.recipe import load_recipe
from tricklab.registries import REGISTRIES

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
    families = tricklab("list", env=cli_env)
    assert families.returncode == 0, families.stderr
    assert [line.split()[0] for line in families.stdout.splitlines()] == list(FAMILIES)
    assert "tricklab list FAMILY" in families.stderr
    unknown = tricklab("list", "nonsense", env=cli_env)
    assert unknown.returncode == 2 and unknown.stdout == ""
    assert unknown.stderr == ("error: family: unknown family 'nonsense'; known: "
                              f"{', '.join(sorted(REGISTRIES))}\n")
    summary = tricklab("summary", str(REPOSITORY / "recipes/chapter11/leaky_relu_he.yaml"),
                       env=cli_env)
    assert summary.returncode == 0, summary.stderr
    assert "266,610" in summary.stdout


def test_every_family_is_listed_with_one_line():
    assert set(FAMILIES) == set(REGISTRIES)
    assert all(description and "\n" not in description for description in FAMILIES.values())


def _commands(command, path=()):
    """Every command of the CLI, groups included, with the words that call it."""
    yield path, command
    for name, child in getattr(command, "commands", {}).items():
        yield from _commands(child, (*path, name))


def test_no_help_shows_bool_noise(capsys):
    from tricklab.cli.main import main

    commands = list(_commands(typer.main.get_command(app)))
    assert len(commands) > 12
    for path, command in commands:
        assert main([*path, "--help"]) == 0
        shown = capsys.readouterr().out
        assert "--help" in shown, path
        assert "<bool>" not in shown, path
        flags = [option for param in command.params if getattr(param, "is_flag", False)
                 for option in param.opts if option != "--help"]
        assert all(flag in shown for flag in flags), (path, flags)


def test_train_prints_results_on_stdout_and_progress_on_stderr(cli_env, tmp_path):
    run = tmp_path / "run"
    done = tricklab("train", write_recipe(tmp_path), "--out", str(run), "--quiet", env=cli_env)
    assert done.returncode == 0, done.stderr
    result = json.loads((run / "result.json").read_text())
    assert result["status"] == "completed"
    assert "epoch 2/2" in done.stderr and "epoch" not in done.stdout
    metrics, directory = done.stdout.splitlines()
    assert metrics.startswith("completed: train_loss=")
    assert metrics.endswith(f"test_accuracy={result['metrics']['test_accuracy']:.4f}")
    assert directory == f"run directory: {run}"
    assert "completed" not in done.stderr and "run directory" not in done.stderr


def test_default_run_directory_set_and_json(cli_env, tmp_path):
    done = tricklab("train", write_recipe(tmp_path), "--set", "train.epochs=1", "--quiet",
                    "--json", env=cli_env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    result = json.loads((tmp_path / "runs" / "cli-small" / "result.json").read_text())
    assert result["epochs_run"] == 1
    printed = json.loads(done.stdout)  # the one JSON object, nothing else on stdout
    assert printed == {**result, "run_dir": str(Path("runs") / "cli-small")}
    # The lines meant for a person went to stderr.
    assert "run directory: runs/cli-small" in done.stderr and "completed: " in done.stderr


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


def imports_and_errors(*args: str, env: dict[str, str]) -> tuple[int, set[str], str]:
    """Exit code, every module imported (`python -X importtime`) and stderr without those lines."""
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "tricklab", *args], env=env,
                          capture_output=True, text=True, timeout=300)
    lines = done.stderr.splitlines()
    modules = {line.rsplit("|", 1)[1].strip() for line in lines if line.startswith("import time:")}
    return done.returncode, modules, "\n".join(line for line in lines
                                                if not line.startswith("import time:"))


def test_errors_list_and_schema_answer_before_pytorch_is_imported(cli_env, tmp_path):
    good = write_recipe(tmp_path, SMALL)
    typo = tmp_path / "typo.yaml"
    typo.write_text(yaml.safe_dump({**SMALL, "model": {"layers": ["flaten"]}}))
    study = tmp_path / "study.yaml"
    study.write_text(yaml.safe_dump({"name": "s", "base": good, "variants": {
        "a": {}, "b": {"set": {"train.optimizer.name": "adma"}}}}))
    heavy = {"torch", "matplotlib", "pandas", "numpy"}
    # An empty cache: a wrong key is found from the recipe's structure alone, a wrong name
    # by the full check, which leaves the registry snapshot behind for the next command.
    empty = {**cli_env, "TRICKLAB_CACHE": str(tmp_path / "empty")}
    key = tmp_path / "key.yaml"
    key.write_text(yaml.safe_dump({**SMALL, "train": {**SMALL["train"], "optimizr": "adam"}}))
    code, modules, stderr = imports_and_errors("train", str(key), env=empty)
    assert code == 2 and not modules & heavy
    assert stderr.startswith("error: train: unknown key 'optimizr'; accepted keys: ")
    code, modules, first = imports_and_errors("train", str(typo), env=empty)
    assert code == 2 and "torch" in modules
    assert first.startswith("error: model.layers.0: unknown layer 'flaten'; did you mean "
                            "'flatten'? Known: activation, ")
    assert len(list((tmp_path / "empty" / "registries").glob("*.json"))) == 1
    for command in ("train", "doctor", "lr-find", "summary", "tricks"):
        code, modules, stderr = imports_and_errors(command, str(typo), env=empty)
        assert (code, stderr) == (2, first), command
        assert not modules & heavy, command
    code, modules, stderr = imports_and_errors("study", str(study), env=empty)
    assert code == 2 and not modules & heavy
    assert stderr.startswith(f"error: {study}: variants.b: train.optimizer.name: unknown "
                             "optimizer 'adma'; did you mean 'adam'?")
    for command in (("list", "layers"), ("schema",)):
        code, modules, _ = imports_and_errors(*command, env=empty)
        assert code == 0 and not modules & heavy, command


def test_summary_answers_without_pytorch_as_the_built_model_does(cli_env, tmp_path, monkeypatch,
                                                                  capsys):
    for name in ("leaky_relu_he", "default_dnn_preset"):  # the second prints its preset's lines
        recipe = str(REPOSITORY / "recipes" / "chapter11" / f"{name}.yaml")
        quick = subprocess.run([sys.executable, "-X", "importtime", "-m", "tricklab", "summary",
                                recipe], env=cli_env, capture_output=True, text=True, timeout=300)
        assert quick.returncode == 0, quick.stderr
        imported = {line.rsplit("|", 1)[1].strip() for line in quick.stderr.splitlines()
                    if line.startswith("import time:")}
        assert "torch" not in imported and "tricklab.nn" not in imported, name
        # Without a registry snapshot the command builds the model, as it always did.
        monkeypatch.setenv("TRICKLAB_CACHE", str(tmp_path / f"no-snapshot-{name}"))
        assert cli_main(["summary", recipe]) == 0
        assert quick.stdout == capsys.readouterr().out
        assert quick.stdout.startswith(f"Recipe: {load_recipe(recipe).name}\nModel: input ")
    # A model the rules leave to PyTorch (a convolution on flat samples): its own message.
    layers = ["flatten", {"conv2d": {"filters": 4, "kernel_size": 3}}]
    with pytest.raises(UserInputError) as refused:
        build_model([28, 28], layers)
    shape_error = {**SMALL, "model": {"input_shape": [28, 28], "layers": layers}}
    code, modules, stderr = imports_and_errors("summary", write_recipe(tmp_path, shape_error),
                                               env=cli_env)
    assert (code, stderr) == (2, f"error: {refused.value}")
    assert "torch" in modules


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


def test_lr_find_writes_plot_and_suggestion_and_the_line_to_paste(cli_env, tmp_path):
    recipe = write_recipe(tmp_path)
    done = tricklab("lr-find", recipe, "--steps", "120", "--out", str(tmp_path / "lrf"),
                    env=cli_env)
    assert done.returncode == 0, done.stderr
    assert "suggested max learning rate for 1cycle" in done.stdout
    summary = json.loads((tmp_path / "lrf" / "lr_find.json").read_text())
    assert len(summary["learning_rates"]) <= 120
    assert (tmp_path / "lrf" / "plots" / "lr_find.png").read_bytes()[:4] == b"\x89PNG"
    assert f"plot: {tmp_path / 'lrf' / 'plots' / 'lr_find.png'}" in done.stdout
    # The line after the suggestion, pasted as a shell would read it, trains with that peak.
    use = next(line for line in done.stdout.splitlines() if line.startswith("use it"))
    assert use.startswith("use it (adds a 1cycle schedule): --set ")
    pasted = shlex.split(use.split(": ", 1)[1])
    trained = tricklab("train", recipe, *pasted, "--set", "train.epochs=1", "--out",
                       str(tmp_path / "run"), "--quiet", env=cli_env)
    assert trained.returncode == 0, trained.stderr
    schedule = yaml.safe_load((tmp_path / "run" / "recipe.yaml").read_text())["train"]["schedule"]
    assert schedule["one_cycle"]["max_learning_rate"] == pytest.approx(
        summary["suggestion"], rel=5e-3)
    again = tricklab("lr-find", recipe, "--out", str(tmp_path / "lrf"), env=cli_env)
    assert again.returncode == 2 and "already holds a run" in again.stderr


def _pasted(line: str) -> list[str]:
    """The `--set` values of a `use it` line, as a shell passes them."""
    words = shlex.split(line.split(": ", 1)[1])
    assert words[::2] == ["--set"] * (len(words) // 2)
    return words[1::2]


@pytest.mark.parametrize(("recipe", "sets", "begins", "schedule_of"), [
    ("chapter11/one_cycle.yaml", [], "use it: --set train.schedule.one_cycle.max_learning_rate=",
     lambda train: train["schedule"]),
    ("chapter11/leaky_relu_he.yaml", [], "use it (adds a 1cycle schedule): --set ",
     lambda train: train["schedule"]),
    ("chapter11/exponential_scheduling.yaml", [],
     "use it (1cycle in place of the exponential schedule): --set 'train.schedule=",
     lambda train: train["schedule"]),
    ("chapter11/rmsprop.yaml", [], "use it (adds a 1cycle schedule): --set ",
     lambda train: train["schedule"]),
    ("transfer/task_b_on_a.yaml", ["train.phases.0.schedule=cosine_decay"],
     "use it (1cycle in place of the cosine_decay schedule of the first phase): ",
     lambda train: train["phases"][0]["schedule"]),
    ("transfer/task_b_on_a.yaml", [], "use it (adds a 1cycle schedule to the first phase): ",
     lambda train: train["phases"][0]["schedule"]),
], ids=["one-cycle", "none", "exponential", "rmsprop", "phase-schedule", "phases"])
@pytest.mark.parametrize("rate", [0.0123, 1.5e-5])
def test_the_line_to_paste_gives_each_recipe_a_1cycle_peak(recipe, sets, begins, schedule_of,
                                                          rate):
    path = REPOSITORY / "recipes" / recipe
    resolved = load_recipe(path, sets)
    line = one_cycle_line(resolved.to_dict(), rate)
    assert line.startswith(begins)
    trained = load_recipe(path, [*sets, *_pasted(line)]).to_dict()
    config = schedule_of(trained["train"])["one_cycle"]
    assert config["max_learning_rate"] == pytest.approx(rate, rel=5e-3)
    optimizer = resolved.to_dict()["train"]["optimizer"]
    # RMSprop runs without momentum: 1cycle must not switch one on.
    assert config["cycle_momentum"] is (optimizer["name"] != "rmsprop")
    untouched = {key: value for key, value in trained.items() if key != "train"}
    assert untouched == {key: value for key, value in resolved.to_dict().items()
                         if key != "train"}


def test_doctor_prints_the_verdict_and_writes_doctor_json(cli_env, tmp_path):
    dead = {**SMALL, "model": {**SMALL["model"], "layers": [
        "flatten",
        {"dense": {"units": 32, "activation": "relu",
                   "bias_initializer": {"constant": {"value": -10.0}}}},
        {"dense": {"units": 10, "activation": "softmax"}},
    ]}}
    done = tricklab("doctor", write_recipe(tmp_path, dead), "--out", str(tmp_path / "doc"),
                    "--steps", "100", "--quiet", "--json", env=cli_env)
    assert done.returncode == 0, done.stderr
    stored = json.loads((tmp_path / "doc" / "doctor.json").read_text())
    assert stored["verdict"] == "unhealthy"
    printed = json.loads(done.stdout)
    # 100 steps are more than an epoch of the fixture data: whole epochs are trained.
    assert printed.pop("steps") >= 100
    assert printed == {"verdict": "unhealthy", "findings": stored["findings"],
                       "run_dir": str(tmp_path / "doc")}
    assert "dead_units" in [finding["kind"] for finding in stored["findings"]]
    assert "dead units" in done.stderr  # the table for a person, out of the JSON's way
    trained = tricklab("train", write_recipe(tmp_path, SMALL), "--out", str(tmp_path / "run"),
                       "--doctor", "--quiet", env=cli_env)
    assert trained.returncode == 0, trained.stderr
    verdict = json.loads((tmp_path / "run" / "doctor.json").read_text())["verdict"]
    assert trained.stdout.splitlines()[1].startswith(verdict)
    assert trained.stdout.splitlines()[-1] == f"run directory: {tmp_path / 'run'}"
