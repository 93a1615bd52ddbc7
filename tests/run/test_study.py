"""Running studies: variants × seeds in worker processes, recorded in the store, resumable."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tricklab.errors import UserInputError
from tricklab.run.study import run_study
from tricklab.study.store import StudyStore

from ..conftest import TINY_RECIPE as BASE


def write_study(folder: Path, **changes: object) -> Path:
    """A two-variant, two-seed study of a tiny MLP on the fixture data."""
    spec = {
        "name": "tiny",
        "question": "Does Adam beat SGD here?",
        "base": BASE,
        "seeds": 2,
        "variants": {"sgd": {}, "adam": {"set": {"train.optimizer": {"name": "adam"}}}},
        **changes,
    }
    path = folder / "study.yaml"
    path.write_text(yaml.safe_dump(spec), encoding="utf-8")
    return path


def stored(folder: Path, phase: str | None = "main") -> dict:
    with StudyStore.open(folder / "study.db") as store:
        return {record.run_id: record for record in store.runs(phase)}


def test_a_study_trains_every_variant_and_seed_once_and_records_each(fixture_data, tmp_path):
    out = tmp_path / "study"
    outcome = run_study(write_study(tmp_path), out=out, workers=2, progress="none")
    assert outcome.exit_code == 0
    assert outcome.counts == {"completed": 4}
    records = stored(out)
    assert sorted(records) == ["adam/seed-0", "adam/seed-1", "sgd/seed-0", "sgd/seed-1"]
    for record in records.values():
        result = json.loads((out / record.run_dir / "result.json").read_text())
        assert record.status == result["status"] == "completed"
        assert record.attempts == 1
        assert record.metrics == result["metrics"]
        assert record.history["loss"] == result["history"]["loss"]
        assert result["seed"] == record.seed == record.recipe["seed"]
    # Seeds differ within a variant, and the variants really differ.
    assert records["sgd/seed-0"].metrics != records["sgd/seed-1"].metrics
    assert records["sgd/seed-0"].recipe["train"]["optimizer"]["name"] == "sgd"
    assert records["adam/seed-0"].recipe["train"]["optimizer"]["name"] == "adam"


def test_running_the_same_study_again_trains_nothing_and_more_seeds_add_runs(
    fixture_data, tmp_path
):
    out, path = tmp_path / "study", write_study(tmp_path)
    run_study(path, out=out, workers=2, progress="none")
    before = stored(out)
    run_study(path, out=out, workers=2, progress="none")
    again = stored(out)
    assert {k: (r.attempts, r.metrics) for k, r in again.items()} == {
        k: (r.attempts, r.metrics) for k, r in before.items()
    }
    outcome = run_study(path, out=out, workers=2, seeds=3, progress="none")
    after = stored(out)
    assert outcome.counts == {"completed": 6}
    assert set(after) - set(before) == {"sgd/seed-2", "adam/seed-2"}
    assert all(after[k].attempts == 1 for k in after)
    with StudyStore.open(out / "study.db") as store:
        assert store.spec["seeds"] == [0, 1, 2]


def test_a_changed_study_is_refused_unless_force_new(fixture_data, tmp_path):
    out = tmp_path / "study"
    run_study(write_study(tmp_path), out=out, workers=1, progress="none")
    database = (out / "study.db").read_bytes()
    changed = write_study(tmp_path, variants={"sgd": {}, "nadam": {
        "set": {"train.optimizer": {"name": "nadam"}}}})
    with pytest.raises(UserInputError, match=r"differs from the one stored.*--force-new"):
        run_study(changed, out=out, workers=1, progress="none")
    assert (out / "study.db").read_bytes() == database
    run_study(changed, out=out, workers=1, progress="none", force_new=True)
    assert sorted(stored(out)) == ["nadam/seed-0", "nadam/seed-1", "sgd/seed-0", "sgd/seed-1"]
    assert not (out / "runs" / "adam").exists()


def test_a_diverging_variant_is_recorded_and_the_study_goes_on(fixture_data, tmp_path):
    path = write_study(tmp_path, variants={
        "sgd": {},
        "huge_lr": {"set": {"train.optimizer.learning_rate": 1.0e12}},
    })
    outcome = run_study(path, out=tmp_path / "study", workers=2, progress="none")
    records = stored(tmp_path / "study")
    assert {k: r.status for k, r in records.items()} == {
        "sgd/seed-0": "completed", "sgd/seed-1": "completed",
        "huge_lr/seed-0": "diverged", "huge_lr/seed-1": "diverged",
    }
    assert outcome.exit_code == 0
    assert all(r.attempts == 1 for r in records.values())


def test_a_crashing_run_is_retried_once_then_recorded_as_failed(fixture_data, tmp_path):
    # A 10-feature input shape passes the study's validation, which loads no data; the
    # run raises inside its worker when it meets the 784-pixel images.
    path = write_study(tmp_path, variants={
        "sgd": {},
        "broken": {"set": {"model.input_shape": [10], "model.layers.0": "flatten"}},
    })
    outcome = run_study(path, out=tmp_path / "study", workers=2, progress="none")
    records = stored(tmp_path / "study")
    assert outcome.counts == {"completed": 2, "failed": 2}
    for seed in (0, 1):
        broken = records[f"broken/seed-{seed}"]
        assert (broken.status, broken.attempts) == ("failed", 2)
        assert "model.input_shape: [10] does not fit" in broken.error
        assert records[f"sgd/seed-{seed}"].status == "completed"


def test_learning_rate_search_picks_the_best_mean_validation_rate_per_variant(
    fixture_data, tmp_path
):
    path = write_study(tmp_path, seeds=2, variants={"sgd": {}},
                       lr_search={"grid": [1.0e-5, 0.05], "seeds": 1})
    out = tmp_path / "study"
    run_study(path, out=out, workers=2, progress="none")
    search = stored(out, "lr_search")
    assert sorted(search) == ["sgd/lr-0.05/seed-0", "sgd/lr-1e-05/seed-0"]
    with StudyStore.open(out / "study.db") as store:
        choice = store.learning_rate_choices()["sgd"]
    scores = {r.learning_rate: r.metrics["val_accuracy"] for r in search.values()}
    assert choice.scores == scores
    assert choice.learning_rate == max(scores, key=scores.get) == 0.05
    main = stored(out)
    assert {r.recipe["train"]["optimizer"]["learning_rate"] for r in main.values()} == {0.05}
    # Seed 0 at the chosen rate is the search run itself: reused, not trained twice.
    assert main["sgd/seed-0"].run_dir == search["sgd/lr-0.05/seed-0"].run_dir
    assert main["sgd/seed-0"].metrics == search["sgd/lr-0.05/seed-0"].metrics
    assert main["sgd/seed-0"].attempts == 0
    assert main["sgd/seed-1"].attempts == 1


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"workers": 0}, "--workers: 0 is not a number of processes"),
        ({"backend": "dask"}, "--backend: 'dask' is not a backend"),
        ({"address": "127.0.0.1:6379"}, "--address: only used with --backend ray"),
    ],
)
def test_bad_options_are_refused_before_anything_is_written(
    fixture_data, tmp_path, options, message
):
    with pytest.raises(UserInputError, match=message):
        run_study(write_study(tmp_path), out=tmp_path / "study", progress="none", **options)
    assert not (tmp_path / "study").exists()


def test_a_folder_holding_something_else_is_refused(fixture_data, tmp_path):
    (tmp_path / "study").mkdir()
    (tmp_path / "study" / "notes.txt").write_text("mine")
    with pytest.raises(UserInputError, match=r"not empty and holds no study\.db"):
        run_study(write_study(tmp_path), out=tmp_path / "study", progress="none")
    assert [p.name for p in (tmp_path / "study").iterdir()] == ["notes.txt"]


def test_a_study_with_the_doctor_probes_every_run_and_reports_it(fixture_data, tmp_path):
    from tricklab.report.study_report import write_study_report

    out = tmp_path / "study"
    outcome = run_study(write_study(tmp_path), out=out, workers=2, progress="none",
                        doctor=True, report=lambda folder: write_study_report(folder)[0])
    records = stored(out)
    for record in records.values():
        doctor = json.loads((out / record.run_dir / "doctor.json").read_text())
        assert doctor["verdict"] in ("healthy", "unhealthy")
    page = outcome.report.read_text()
    assert "<h2>Doctor</h2>" in page and 'alt="sgd: doctor by depth"' in page
    # The same study without the doctor has no doctor section.
    plain = run_study(write_study(tmp_path), out=tmp_path / "plain", workers=2,
                      progress="none", report=lambda folder: write_study_report(folder)[0])
    assert "<h2>Doctor</h2>" not in plain.report.read_text()


def test_a_reused_recipe_is_pretrained_once_before_the_runs(fixture_data, tmp_path, monkeypatch):
    """Transfer studies: every B-on-A run reuses one model A, trained first in `pretrained/`."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a.yaml").write_text(yaml.safe_dump({**BASE, "name": "task-a"}), encoding="utf-8")
    on_a = {"set": {"model.reuse": {"from": "a.yaml", "trainable": False},
                    "model.layers": [{"dense": {"units": 10, "activation": "softmax"}}],
                    "train.phases": [{"epochs": 1}, {"epochs": 1, "trainable": "all"}]}}
    path = write_study(tmp_path, variants={"scratch": {}, "on_a": on_a},
                       quick={"seeds": 2, "epochs": 1})
    out = tmp_path / "study"
    outcome = run_study(path, out=out, workers=2, progress="none", quick=True)
    assert outcome.counts == {"completed": 4}
    pretrained = out / "pretrained" / "task-a"
    assert json.loads((pretrained / "result.json").read_text())["status"] == "completed"
    records = stored(out)
    # --quick cut the phases to its one epoch: the frozen phase only.
    assert records["on_a/seed-0"].recipe["train"]["phases"] == [
        {"epochs": 1, "optimizer": records["on_a/seed-0"].recipe["train"]["optimizer"],
         "schedule": None, "trainable": None}]
    for seed in (0, 1):
        result = json.loads((out / records[f"on_a/seed-{seed}"].run_dir / "result.json").read_text())
        assert result["cached_frozen_layers"] == 2 and result["epochs_run"] == 1
