"""Runs and studies logged to MLflow (`--mlflow URI`), read back from a real SQLite store."""

from __future__ import annotations

import csv
import json
import shutil
import sys
import time
import warnings
from pathlib import Path

import pytest
import torch
import yaml
from mlflow.tracking import MlflowClient

from tricklab.cli.main import main
from tricklab.recipe import recipe_from_dict
from tricklab.run.mlflow_client import PARAM_VALUE_LIMIT, MlflowRun, MlflowTarget, flat_params
from tricklab.run.mlflow_tracking import MlflowCallback
from tricklab.run.rundir import RunInterrupted
from tricklab.run.runner import train_recipe
from tricklab.run.study import run_study
from tricklab.train import Trainer

from ..conftest import TINY_RECIPE

VARIANTS = {
    "sgd": {},
    # Early stopping decides per run: its seeds cannot be batched, so they train one by one.
    "early": {"set": {"train.callbacks": ["early_stopping"]}},
}


EXPERIMENT = "tricklab-tests"


@pytest.fixture(scope="session")
def empty_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty SQLite tracking store, made once: MLflow's migrations take seconds."""
    path = tmp_path_factory.mktemp("mlflow") / "mlflow.db"
    MlflowClient(f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def store(empty_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A SQLite tracking store of this test's own, logging into the experiment `EXPERIMENT`
    (made by the first run, as `MLFLOW_EXPERIMENT_NAME` asks), its artifacts in `./mlruns`."""
    shutil.copyfile(empty_store, tmp_path / "mlflow.db")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", EXPERIMENT)
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


def logged_runs(store: str) -> tuple[MlflowClient, list]:
    client = MlflowClient(store)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    assert Path(experiment.artifact_location.removeprefix("file://")).is_relative_to(Path.cwd())
    return client, client.search_runs([experiment.experiment_id])


def recipe_file(folder: Path, epochs: int = 2) -> Path:
    path = folder / "tiny.yaml"
    recipe = {**TINY_RECIPE, "train": {**TINY_RECIPE["train"], "epochs": epochs}}
    path.write_text(yaml.safe_dump(recipe), encoding="utf-8")
    return path


def leaves(value: object, path: tuple = ()) -> dict[tuple, object]:
    """Every field of a recipe that holds a value, by its path (a list of plain values is one)."""
    if isinstance(value, dict) and value:
        pairs = value.items()
    elif isinstance(value, list) and any(isinstance(item, dict | list) for item in value):
        pairs = enumerate(value)
    else:
        return {path: value}
    return {key: item for k, v in pairs for key, item in leaves(v, (*path, k)).items()}


def history_csv(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    with (run_dir / "history.csv").open(encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    return {key: [(int(row["epoch"]), float(row[key])) for row in rows]
            for key in rows[0] if key != "epoch"}


def artifacts(client: MlflowClient, run_id: str, path: str | None = None) -> set[str]:
    found = set()
    for info in client.list_artifacts(run_id, path):
        found |= artifacts(client, run_id, info.path) if info.is_dir else {info.path}
    return found


def check_logged(client: MlflowClient, run, run_dir: Path) -> None:
    """The MLflow run holds the run directory's recipe, history, results and files."""
    recipe = yaml.safe_load((run_dir / "recipe.yaml").read_text(encoding="utf-8"))
    result = json.loads((run_dir / "result.json").read_text(encoding="utf-8"))
    params = run.data.params
    fields = leaves(recipe)
    assert len(params) == len(fields)
    for path, value in fields.items():
        logged = params[".".join(map(str, path))]
        assert logged == value if isinstance(value, str) else json.loads(logged) == value
    for key, rows in history_csv(run_dir).items():
        logged = sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, key))
        assert [step for step, _ in logged] == [step for step, _ in rows], key
        assert [value for _, value in logged] == pytest.approx([value for _, value in rows]), key
    for key, value in result["metrics"].items():
        assert run.data.metrics[f"final/{key}"] == pytest.approx(value)
    assert run.data.metrics["final/epochs_run"] == result["epochs_run"]
    files = {path.relative_to(run_dir).as_posix() for path in run_dir.rglob("*")
             if path.is_file() and path.parts[len(run_dir.parts)] in ("plots", "model")}
    assert "plots/learning_curves.png" in files and any(f.startswith("model/") for f in files)
    assert artifacts(client, run.info.run_id) == {
        "recipe.yaml", "result.json", "history.csv", *files}
    assert run.data.tags["seed"] == str(recipe["seed"])
    assert run.data.tags["status"] == result["status"]
    assert Path(run.data.tags["run_dir"]) == run_dir.resolve()


def test_a_run_logs_its_recipe_history_results_and_files(fixture_data, store, tmp_path, capsys):
    recipe = recipe_from_dict(yaml.safe_load(recipe_file(tmp_path).read_text()), "tiny.yaml")
    outcome = train_recipe(recipe, out=tmp_path / "run", progress="none", mlflow=store)
    assert outcome.result["status"] == "completed"
    client, [run] = logged_runs(store)
    assert run.info.status == "FINISHED" and run.info.run_name == "run"
    assert "mlflow.parentRunId" not in run.data.tags
    check_logged(client, run, outcome.run_dir)
    assert client.get_metric_history(run.info.run_id, "loss")[-1].step == 2
    assert capsys.readouterr().err.splitlines() == [
        f"mlflow: run {run.info.run_id} in experiment {run.info.experiment_id} of {store}"]


def test_a_diverged_run_is_failed_in_mlflow_and_keeps_its_nan(fixture_data, store, tmp_path):
    train = {**TINY_RECIPE["train"], "epochs": 3,
             "optimizer": {"name": "sgd", "learning_rate": 1e12}}
    recipe = recipe_from_dict({**TINY_RECIPE, "train": train}, "tiny.yaml")
    outcome = train_recipe(recipe, out=tmp_path / "run", progress="none", mlflow=store)
    assert outcome.result["status"] == "diverged"
    client, [run] = logged_runs(store)
    assert run.info.status == "FAILED" and run.data.tags["status"] == "diverged"
    losses = [m.value for m in client.get_metric_history(run.info.run_id, "loss")]
    assert len(losses) == outcome.result["epochs_run"] and losses[-1] != losses[-1]  # NaN


def test_each_epoch_is_logged_as_it_ends_once_the_run_exists(store, tmp_path):
    target, folder = MlflowTarget(store), tmp_path / "live"
    run = MlflowRun(target, {"name": "live"}, folder)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3))
    x, y = torch.randn(64, 4), torch.randint(0, 3, (64,))
    callback = MlflowCallback(run, target, {"name": "live"}, folder)
    trainer = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), callbacks=[callback],
                      progress="none")
    trainer.fit(x, y, epochs=3, validation_data=(x, y))
    client = MlflowClient(store)
    for key in ("loss", "accuracy", "val_loss", "lr"):  # before `finish`: logged live
        logged = sorted((m.step, m.value) for m in client.get_metric_history(run.run_id, key))
        assert [step for step, _ in logged] == [1, 2, 3]
        assert [value for _, value in logged] == pytest.approx(trainer.history[key])
    assert client.get_run(run.run_id).info.status == "RUNNING"


@pytest.mark.parametrize(("error", "status", "mlflow_status"), [
    (KeyboardInterrupt(), "interrupted", "KILLED"),
    (RunInterrupted("stopped before the first epoch ended"), "interrupted", "KILLED"),
    (RuntimeError("a bug"), "failed", "FAILED"),
])
def test_a_run_cut_short_is_ended_as_such(store, tmp_path, error, status, mlflow_status):
    target, folder = MlflowTarget(store), tmp_path / "cut"
    run = MlflowRun(target, {"name": "cut"}, folder)
    with pytest.raises(type(error)), MlflowCallback(run, target, {"name": "cut"}, folder):
        run.start()
        raise error
    [logged] = logged_runs(store)[1]
    assert logged.info.run_id == run.run_id and logged.info.status == mlflow_status
    assert logged.data.tags["status"] == status and logged.data.params == {"name": "cut"}


def test_train_logs_through_a_process_of_its_own(fixture_data, store, tmp_path, capfd):
    # `train --mlflow` imports MLflow in a logging process while it imports PyTorch.
    code = main(["train", str(recipe_file(tmp_path)), "--out", str(tmp_path / "run"),
                 "--quiet", "--mlflow", store])
    assert code == 0
    client, [run] = logged_runs(store)
    assert run.info.status == "FINISHED"
    check_logged(client, run, tmp_path / "run")
    err = capfd.readouterr().err
    assert "warning" not in err
    assert f"mlflow: run {run.info.run_id} in experiment {run.info.experiment_id} of {store}" in err


def test_params_are_dotted_fields_cut_to_mlflows_limit():
    params = flat_params({"a": {"b": [1, 2], "c": [{"d": None}, {"e": {}}]}, "f": "x" * 900,
                          "g h?": True})
    assert params == {"a.b": "[1, 2]", "a.c.0.d": "null", "a.c.1.e": "{}",
                      "f": "x" * (PARAM_VALUE_LIMIT - 3) + "...", "g h_": "true"}


def test_a_study_is_a_parent_run_with_a_nested_run_per_run(fixture_data, store, tmp_path):
    spec = {"name": "tracked", "question": "Logged?", "base": TINY_RECIPE, "seeds": 2,
            "variants": VARIANTS}
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(spec), encoding="utf-8")
    out = tmp_path / "study"
    # sgd's seeds train as one batched model, early's one by one: both are logged.
    outcome = run_study(path, out=out, workers=2, progress="none", batch_seeds=True,
                        report=lambda folder: (folder / "report.md").write_text("# report"),
                        mlflow=store)
    assert outcome.counts == {"completed": 4}
    client, runs = logged_runs(store)
    [parent] = [run for run in runs if "mlflow.parentRunId" not in run.data.tags]
    nested = {run.info.run_name: run for run in runs if run is not parent}
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["study"] == "tracked" and parent.data.tags["status"] == "completed"
    assert parent.data.metrics["runs/completed"] == 4
    assert artifacts(client, parent.info.run_id) == {"report.md"}
    assert sorted(nested) == ["early/seed-0", "early/seed-1", "sgd/seed-0", "sgd/seed-1"]
    for name, run in nested.items():
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert run.data.tags["study"] == "tracked"
        assert run.data.tags["variant"] == name.split("/")[0]
        assert run.data.tags["phase"] == "main"
        assert run.info.status == "FINISHED"
        check_logged(client, run, out / "runs" / name)
    batched = json.loads((out / "runs/sgd/seed-0/result.json").read_text())
    assert batched["batched_seeds"] == 2


def one_run_study(folder: Path, name: str) -> Path:
    """A study of the tiny recipe with SGD, one seed."""
    spec = {"name": name, "question": "?", "base": TINY_RECIPE, "seeds": 1,
            "variants": {"sgd": {}}}
    path = folder / "study.yaml"
    path.write_text(yaml.safe_dump(spec), encoding="utf-8")
    return path


def test_a_study_carried_on_by_a_later_command_stays_one_parent_run(
    fixture_data, store, tmp_path
):
    path = one_run_study(tmp_path, "grown")
    out = tmp_path / "study"
    run_study(path, out=out, workers=1, progress="none", mlflow=store)
    # More seeds is the same study: the second command carries on the parent run.
    run_study(path, out=out, seeds=2, workers=1, progress="none", mlflow=store)
    client, runs = logged_runs(store)
    [parent] = [run for run in runs if "mlflow.parentRunId" not in run.data.tags]
    assert parent.info.status == "FINISHED" and parent.data.tags["status"] == "completed"
    assert parent.data.metrics["runs/completed"] == 2
    assert parent.data.params["seeds"] == "[0]"  # MLflow keeps a param's first value
    assert sorted(run.info.run_name for run in runs if run is not parent) == [
        "sgd/seed-0", "sgd/seed-1"]
    # A parent deleted in MLflow is not carried on: the next command makes another.
    client.delete_run(parent.info.run_id)
    run_study(path, out=out, seeds=3, workers=1, progress="none", mlflow=store)
    _, runs = logged_runs(store)
    [new_parent] = [run for run in runs if "mlflow.parentRunId" not in run.data.tags]
    assert new_parent.info.run_id != parent.info.run_id
    assert [run.info.run_name for run in runs
            if run.data.tags.get("mlflow.parentRunId") == new_parent.info.run_id] == ["sgd/seed-2"]


def test_a_driver_stopped_by_an_error_leaves_its_parent_run_failed_not_running(
    fixture_data, store, tmp_path
):
    path = one_run_study(tmp_path, "broken")

    def broken_report(folder: Path) -> Path:
        raise ValueError("a bug in the report")

    with pytest.raises(ValueError, match="a bug in the report"):
        run_study(path, out=tmp_path / "study", workers=1, progress="none",
                  report=broken_report, mlflow=store)
    _, runs = logged_runs(store)
    [parent] = [run for run in runs if "mlflow.parentRunId" not in run.data.tags]
    assert parent.info.status == "FAILED" and parent.data.tags["status"] == "failed"


def test_an_unreachable_server_is_one_warning_and_training_goes_on(
    fixture_data, store, tmp_path, capsys
):
    started = time.perf_counter()
    code = main(["train", str(recipe_file(tmp_path, epochs=1)), "--out", str(tmp_path / "run"),
                 "--quiet", "--mlflow", "http://127.0.0.1:9"])
    assert code == 0
    assert json.loads((tmp_path / "run" / "result.json").read_text())["status"] == "completed"
    lines = [line for line in capsys.readouterr().err.splitlines() if "mlflow" in line]
    assert lines == ["warning: mlflow: cannot log to http://127.0.0.1:9 (Connection refused); "
                     "the run goes on without MLflow"]
    # MLflow's own retries would take minutes; a refused connection is given up at once.
    assert time.perf_counter() - started < 30


def test_an_invalid_uri_is_one_warning_and_training_goes_on(fixture_data, store, tmp_path):
    recipe = recipe_from_dict({**TINY_RECIPE}, "tiny.yaml")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        outcome = train_recipe(recipe, out=tmp_path / "run", progress="none",
                               mlflow="nosuchscheme://somewhere")
    assert outcome.result["status"] == "completed"
    logged = [str(w.message) for w in caught if "mlflow" in str(w.message)]
    assert len(logged) == 1 and logged[0].startswith(
        "mlflow: cannot log to nosuchscheme://somewhere (")


def test_without_mlflow_installed_the_option_is_refused_and_mlflow_never_imported(
    fixture_data, tmp_path, capsys, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setitem(sys.modules, "mlflow", None)  # as Python marks a module it cannot import
    recipe = str(recipe_file(tmp_path, epochs=1))
    study = tmp_path / "study.yaml"
    study.write_text(yaml.safe_dump({"name": "refused", "question": "?", "base": TINY_RECIPE,
                                     "seeds": 1, "variants": {"sgd": {}}}), encoding="utf-8")
    for command in (["train", recipe, "--out", str(tmp_path / "refused")],
                    ["study", str(study), "--out", str(tmp_path / "refused")]):
        assert main([*command, "--mlflow", "sqlite:///mlflow.db"]) == 2
    assert capsys.readouterr().err.splitlines() == 2 * [
        "error: --mlflow: sqlite:///mlflow.db needs MLflow, which is not installed; "
        "pip install 'tricklab[mlflow]'"]
    assert not (tmp_path / "refused").exists() and not (tmp_path / "mlflow.db").exists()
    # Neither --mlflow nor MLFLOW_TRACKING_URI: training never tries to import MLflow.
    assert main(["train", recipe, "--out", str(tmp_path / "plain"), "--quiet"]) == 0
    assert "mlflow" not in capsys.readouterr().err
    # Set in the environment only, a URI without MLflow is a warning; the run trains.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db")
    assert main(["train", recipe, "--out", str(tmp_path / "env"), "--quiet"]) == 0
    lines = [line for line in capsys.readouterr().err.splitlines() if "mlflow" in line.lower()]
    assert lines == ["warning: mlflow: MLFLOW_TRACKING_URI is sqlite:///mlflow.db, but MLflow "
                     "is not installed, so this run is not logged; pip install 'tricklab[mlflow]'"]
