"""`tricklab runs`: runs, studies, doctor and lr-find folders found by their files, sorted,
filtered, as JSON; `runs diff` of two runs.

One real run of the tiny recipe is trained once, then copied and varied (another
optimizer, another result) into a folder tree; a real two-variant study, a
doctor and a learning-rate range test are made once beside them.
"""

from __future__ import annotations

import copy
import json
import shutil
from datetime import datetime
from pathlib import Path

import pytest
import yaml

from tricklab.data import sources
from tricklab.errors import UserInputError
from tricklab.recipe import recipe_from_dict
from tricklab.run import lr_find_recipe, runs_store, runs_table, train_recipe
from tricklab.run.doctor import doctor_recipe
from tricklab.run.runs_diff import diff_runs, format_diff
from tricklab.run.runs_table import find_runs, key_metric
from tricklab.run.runs_view import filter_entries, format_table, sort_entries
from tricklab.run.study import run_study
from tricklab.run.study_folder import StudyLock
from tricklab.study.store import StudyStore

from ..conftest import FIXTURES, TINY_RECIPE

STUDY = "studies/adam-vs-sgd"


def vary(run: Path, to: Path, recipe: dict | None = None, **result: object) -> Path:
    """A copy of `run` at `to`, its recipe and `result.json` changed as given."""
    shutil.copytree(run, to)
    if recipe is not None:
        stored = yaml.safe_load((to / "recipe.yaml").read_text())
        stored["train"]["optimizer"] = recipe
        (to / "recipe.yaml").write_text(yaml.safe_dump(stored, sort_keys=False))
    content = json.loads((to / "result.json").read_text())
    metrics = result.pop("metrics", {})
    content.update(result, metrics={**content["metrics"], **metrics})
    (to / "result.json").write_text(json.dumps(content))
    return to


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """runs/: three runs (one copied from a real run twice over), a killed run, a folder with
    a run's history only, a study, a tricks folder, a doctor, an lr-find and a plain folder."""
    base = tmp_path_factory.mktemp("runs-table")
    root = base / "runs"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TRICKLAB_DATA", str(FIXTURES))
        patch.setenv("TRICKLAB_CACHE", str(base / "cache"))
        patch.setattr(sources, "SYSTEM_DATA_DIR", base / "system")
        recipe = recipe_from_dict(copy.deepcopy(TINY_RECIPE))
        real = train_recipe(recipe, out=root / "chapter11" / "sgd", progress="none").run_dir
        doctor_recipe(recipe, out=root / "checks" / "doctor", steps=20, progress="none")
        lr_find_recipe(recipe, out=root / "checks" / "lr", steps=20)
        spec = {"name": "adam-vs-sgd", "base": TINY_RECIPE, "seeds": 2,
                "variants": {"sgd": {}, "adam": {"set": {"train.optimizer": {"name": "adam"}}}}}
        (base / "study.yaml").write_text(yaml.safe_dump(spec))
        run_study(base / "study.yaml", out=root / STUDY, workers=1, progress="none")
    vary(real, root / "chapter11" / "adam", {"name": "adam", "learning_rate": 0.001},
         status="stopped_early", epochs_run=3, wall_time_s=4000.0,
         metrics={"test_accuracy": 0.91, "val_loss": 0.25})
    vary(real, root / "diverged", status="diverged", epochs_run=1,
         metrics={"test_accuracy": None, "val_loss": None, "test_loss": None})
    killed = shutil.copytree(real, root / "killed")
    (killed / "result.json").unlink()
    (root / "broken").mkdir()
    shutil.copyfile(real / "history.csv", root / "broken" / "history.csv")
    shutil.copytree(root / STUDY, root / "tricks-demo", ignore=shutil.ignore_patterns("runs"))
    (root / "tricks-demo" / "tricks.yaml").write_text(yaml.safe_dump(spec))
    (root / "notes").mkdir()
    (root / "notes" / "todo.txt").write_text("nothing tricklab made")
    return root


def by_name(root: Path) -> dict[str, runs_table.Entry]:
    return {entry.name: entry for entry in find_runs(root)}


def result(folder: Path) -> dict:
    return json.loads((folder / "result.json").read_text())


def test_every_run_and_study_is_found_by_its_files_and_study_runs_are_counted(tree):
    entries = by_name(tree)
    assert sorted(entries) == ["broken", "chapter11/adam", "chapter11/sgd", "checks/doctor",
                               "checks/lr", "diverged", "killed", STUDY, "tricks-demo"]
    kinds = {name: entry.kind for name, entry in entries.items()}
    assert kinds == {"broken": "run", "chapter11/adam": "run", "chapter11/sgd": "run",
                     "checks/doctor": "doctor", "checks/lr": "lr-find", "diverged": "run",
                     "killed": "run", STUDY: "study", "tricks-demo": "tricks"}
    sgd, adam = entries["chapter11/sgd"], entries["chapter11/adam"]
    stored = result(tree / "chapter11" / "sgd")
    assert (sgd.status, sgd.epochs, sgd.metric) == ("completed", 1, "test_accuracy")
    assert sgd.value == stored["metrics"]["test_accuracy"]
    assert sgd.val_loss == stored["metrics"]["val_loss"]
    assert sgd.wall_time_s == stored["wall_time_s"]
    assert sgd.date == (tree / "chapter11" / "sgd" / "result.json").stat().st_mtime
    assert (adam.status, adam.epochs, adam.value, adam.val_loss) == ("stopped_early", 3, 0.91,
                                                                    0.25)
    diverged = entries["diverged"]
    assert diverged.status == "diverged" and diverged.value is None
    assert diverged.metric == "test_accuracy"
    doctor = entries["checks/doctor"]
    verdict = json.loads((tree / "checks" / "doctor" / "doctor.json").read_text())["verdict"]
    assert doctor.status == "completed" and doctor.note == f"verdict: {verdict}"
    suggestion = json.loads((tree / "checks" / "lr" / "lr_find.json").read_text())["suggestion"]
    assert entries["checks/lr"].note == (
        "the loss never fell" if suggestion is None
        else f"suggested max learning rate {suggestion:.3g}")
    # The study's four runs are its own: counted, not listed.
    assert entries[STUDY].runs == {"completed": 4}
    assert not any(name.startswith(f"{STUDY}/") for name in entries)


def test_a_study_row_names_its_best_variant_from_its_runs(tree):
    study = by_name(tree)[STUDY]
    finals: dict[str, list[dict]] = {}
    for run in (tree / STUDY / "runs").glob("*/seed-*"):
        finals.setdefault(run.parent.name, []).append(result(run))
    means = {variant: sum(r["metrics"]["test_accuracy"] for r in found) / len(found)
             for variant, found in finals.items()}
    best = max(means, key=means.__getitem__)
    assert (study.status, study.metric, study.best) == ("completed", "test_accuracy", best)
    assert study.value == pytest.approx(means[best])
    assert study.val_loss == pytest.approx(
        sum(r["metrics"]["val_loss"] for r in finals[best]) / len(finals[best]))
    assert study.wall_time_s == pytest.approx(
        sum(r["wall_time_s"] for found in finals.values() for r in found))
    # Read without a trace: no lock, journal or WAL companion was made.
    assert sorted(p.name for p in (tree / STUDY).iterdir()) == ["runs", "study.db"]


def test_a_study_with_runs_to_come_is_unfinished_and_one_being_run_is_running(tree, tmp_path):
    study = shutil.copytree(tree / STUDY, tmp_path / "study")
    with StudyStore.open(study / "study.db") as store:
        store.set_status("adam/seed-1", "pending")
        store.set_status("sgd/seed-0", "failed", error="crashed twice")
    entry = find_runs(study)[0]
    assert entry.name == str(study) and entry.kind == "study"
    assert entry.status == "unfinished"
    assert entry.runs == {"completed": 2, "failed": 1, "pending": 1}
    with StudyLock(study):
        assert find_runs(study)[0].status == "running"
    assert find_runs(study)[0].status == "unfinished"


@pytest.mark.parametrize("direction", [False, None])
def test_a_study_of_a_loss_ranks_the_lowest_mean_best(tree, tmp_path, direction):
    # None: a store that leaves the direction to the analysis; the metric's name says it.
    study = shutil.copytree(tree / STUDY, tmp_path / "study")
    with StudyStore.open(study / "study.db") as store:
        store.update_spec({**store.spec, "metric": "test_loss", "higher_is_better": direction})
        losses: dict[str, list[float]] = {}
        for record in store.runs():
            losses.setdefault(record.variant, []).append(record.metrics["test_loss"])
    means = {variant: sum(found) / len(found) for variant, found in losses.items()}
    entry = find_runs(study)[0]
    assert (entry.metric, entry.best) == ("test_loss", min(means, key=means.__getitem__))
    assert entry.value == pytest.approx(min(means.values()))


def test_folders_missing_files_are_incomplete_naming_what_is_missing(tree, tmp_path):
    entries = by_name(tree)
    killed, broken = entries["killed"], entries["broken"]
    assert (killed.status, killed.missing, killed.epochs) == ("incomplete", ["result.json"], 1)
    assert "--resume" in killed.note and str(tree / "killed") in killed.note
    assert (broken.status, broken.missing) == ("incomplete", ["recipe.yaml", "result.json"])
    (tmp_path / "bad-store").mkdir()
    (tmp_path / "bad-store" / "study.db").write_bytes(b"not a database at all")
    (tmp_path / "no-store").mkdir()
    (tmp_path / "no-store" / "report.html").write_text("<html></html>")
    shutil.copytree(tree / "chapter11" / "sgd", tmp_path / "cut")
    (tmp_path / "cut" / "result.json").write_text('{"status": "compl')
    entries = by_name(tmp_path)
    assert entries["bad-store"].status == "incomplete"
    assert "not a readable tricklab study store" in entries["bad-store"].note
    assert entries["no-store"].missing == ["study.db"]
    assert (entries["cut"].status, entries["cut"].note) == (
        "incomplete", "result.json is not a run's result")
    table = format_table(list(entries.values()))
    assert "missing study.db" in table


def test_sorting_puts_empty_cells_last_either_way_and_refuses_unknown_columns(tree):
    entries = find_runs(tree)
    ranked = sort_entries(entries, "-metric")
    values = [entry.value for entry in ranked]
    known = [value for value in values if value is not None]
    assert known == sorted(known, reverse=True) and known[0] == 0.91
    assert values == known + [None] * (len(values) - len(known))
    assert [e.name for e in sort_entries(entries, "metric", descending=True)] == [
        e.name for e in ranked]
    ascending = [e.value for e in sort_entries(entries, "metric") if e.value is not None]
    assert ascending == sorted(known)
    assert sort_entries(entries, "-wall_time")[0].name == "chapter11/adam"
    with pytest.raises(UserInputError, match=r"^--sort: 'acuracy' is not a column; choose one "
                       r"of name, kind, status, .*with a leading - for descending$"):
        sort_entries(entries, "acuracy")
    with pytest.raises(UserInputError, match="did you mean 'epochs'"):
        sort_entries(entries, "-epoch")


def test_filters_match_any_column_with_wildcards_and_numbers(tree):
    entries = find_runs(tree)
    completed = filter_entries(entries, ["status=completed"])
    assert {e.name for e in completed} == {"chapter11/sgd", "checks/doctor", "checks/lr", STUDY,
                                           "tricks-demo"}
    assert [e.name for e in filter_entries(entries, ["kind=run", "name=chapter11/*"])] == [
        "chapter11/adam", "chapter11/sgd"]
    assert [e.name for e in filter_entries(entries, ["epochs=3"])] == ["chapter11/adam"]
    assert [e.name for e in filter_entries(entries, ["best=*", "kind=tricks"])] == ["tricks-demo"]
    today = datetime.fromtimestamp(by_name(tree)["killed"].date).strftime("%Y-%m-%d")
    assert len(filter_entries(entries, [f"date={today}*"])) == len(entries)
    with pytest.raises(UserInputError, match=r"^--filter: 'status' is not COLUMN=VALUE"):
        filter_entries(entries, ["status"])
    with pytest.raises(UserInputError, match=r"^--filter: 'colour=red' is not a column"):
        filter_entries(entries, ["colour=red"])


def test_rows_as_json_and_as_a_table(tree):
    entries = find_runs(tree)
    rows = json.loads(json.dumps([entry.to_dict() for entry in entries]))
    study = next(row for row in rows if row["name"] == STUDY)
    assert study["runs"] == {"completed": 4} and study["kind"] == "study"
    assert datetime.fromisoformat(study["date"]).timestamp() == pytest.approx(
        by_name(tree)[STUDY].date, abs=1)
    killed = next(row for row in rows if row["name"] == "killed")
    assert killed["missing"] == ["result.json"] and killed["value"] is None
    lines = format_table(entries).splitlines()
    assert lines[0].split() == ["name", "kind", "status", "runs", "epochs", "metric", "val_loss",
                                "best", "wall", "time", "date", "note"]
    assert len(lines) == len(entries) + 1
    adam = next(line for line in lines if line.startswith("chapter11/adam "))
    assert "stopped_early" in adam and "test_accuracy 0.9100" in adam and "1h06m" in adam
    # Columns no row fills are left out.
    only_runs = format_table(filter_entries(entries, ["kind=run", "status=completed"]))
    assert "best" not in only_runs.splitlines()[0] and "runs" not in only_runs.splitlines()[0]


def test_key_metric_prefers_test_accuracy_then_other_test_scores():
    assert key_metric({"val_accuracy": 0.5, "test_loss": 1.0, "test_accuracy": 0.4}) == (
        "test_accuracy")
    assert key_metric({"test_loss": 1.0, "test_mae": 0.3}) == "test_mae"
    assert key_metric({"val_loss": 1.0, "train_loss": 2.0}) == "val_loss"
    assert key_metric({}) is None


def test_diff_names_the_fields_that_differ_and_the_results_side_by_side(tree):
    sgd, adam = tree / "chapter11" / "sgd", tree / "chapter11" / "adam"
    diff = diff_runs(sgd, adam)
    fields = {item["field"]: item for item in diff["recipe"]}
    assert fields["train.optimizer.name"] == {"field": "train.optimizer.name", "a": "sgd",
                                              "b": "adam"}
    assert fields["train.optimizer.learning_rate"]["b"] == 0.001
    assert "b" not in fields["train.optimizer.momentum"]
    assert "data.dataset" not in fields
    assert diff["results"]["status"] == {"a": "completed", "b": "stopped_early"}
    assert diff["results"]["test_accuracy"] == {"a": result(sgd)["metrics"]["test_accuracy"],
                                                "b": 0.91}
    text = format_diff(diff)
    assert "  train.optimizer.name: sgd → adam" in text
    assert "  train.optimizer.momentum: 0.0 → (not set)" in text
    accuracy = next(line for line in text.splitlines() if "test_accuracy" in line).split()
    first = result(sgd)["metrics"]["test_accuracy"]
    assert accuracy == ["test_accuracy", f"{first:.4f}", "0.9100", f"{0.91 - first:+.4f}"]
    assert "recipe: the same" in format_diff(diff_runs(sgd, tree / "diverged"))


def test_diff_of_a_folder_that_is_not_a_run_is_refused(tree):
    sgd = tree / "chapter11" / "sgd"
    for folder, why in ((tree / STUDY, "is a study, not a run"),
                        (tree / "notes", r"is not a run folder \(no recipe.yaml\)"),
                        (tree / "nowhere", "does not exist")):
        with pytest.raises(UserInputError, match=f"^runs diff: {folder} {why}"):
            diff_runs(sgd, folder)


def test_a_missing_folder_is_refused_in_one_line(tmp_path):
    with pytest.raises(UserInputError, match=r"^.*nowhere does not exist; tricklab writes runs"):
        find_runs(tmp_path / "nowhere")


def test_the_names_copied_from_the_study_layer_are_its_own():
    from tricklab.run import study_folder, tricks_plan
    from tricklab.study import store

    assert runs_store.STORE_NAME == study_folder.STORE_NAME
    assert runs_store.LOCK_NAME == study_folder.LOCK_NAME
    assert runs_store.TRICKS_FILE == tricks_plan.STUDY_FILE
    assert runs_store.STORE_FORMAT == store.FORMAT
    assert str(store.VERSION) == runs_store.STORE_VERSION
    assert set(runs_store.STUDY_RUN_STATUSES) == set(store.STATUSES)
    assert runs_store.FINISHED == store.FINISHED
    assert set(runs_table.STUDY_OWN) <= set(study_folder.STUDY_ENTRIES)
