"""Running studies: variants × seeds in worker processes, recorded in the store, resumable."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml

from tricklab.errors import SystemRefusedError, UserInputError
from tricklab.run import runner, seed_group
from tricklab.run.study import MAX_ATTEMPTS, run_study
from tricklab.run.study_folder import StudyLock
from tricklab.study.store import StudyStore

from ..conftest import TINY_RECIPE as BASE
from ..conftest import fill


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


def crash_variant(monkeypatch: pytest.MonkeyPatch, variant: str) -> None:
    """Make every run of `variant` crash where it trains, alone or batched with its seeds.

    Patched before the study forks its workers, which inherit it: a bug that
    only shows while training, which no check before the study can find.
    """
    train_alone, train_together = runner.train_recipe, seed_group.train_seed_group

    def crashes(recipe: object) -> bool:
        return f"-{variant}-seed-" in recipe.name

    def alone(recipe, *args, **kwargs):
        if crashes(recipe):
            raise RuntimeError(f"{recipe.name} crashed")
        return train_alone(recipe, *args, **kwargs)

    def together(recipes, *args, **kwargs):
        if crashes(recipes[0]):
            raise RuntimeError(f"{recipes[0].name} and its seeds crashed")
        return train_together(recipes, *args, **kwargs)

    monkeypatch.setattr(runner, "train_recipe", alone)
    monkeypatch.setattr(seed_group, "train_seed_group", together)


def test_a_crashing_run_is_retried_once_then_recorded_as_failed(
    fixture_data, tmp_path, monkeypatch
):
    crash_variant(monkeypatch, "broken")
    path = write_study(tmp_path, variants={
        "sgd": {}, "broken": {"set": {"train.optimizer.learning_rate": 0.02}}})
    outcome = run_study(path, out=tmp_path / "study", workers=2, progress="none")
    records = stored(tmp_path / "study")
    assert outcome.counts == {"completed": 2, "failed": 2}
    for seed in (0, 1):
        broken = records[f"broken/seed-{seed}"]
        assert (broken.status, broken.attempts) == ("failed", 2)
        assert f"tiny-broken-seed-{seed} crashed" in broken.error
        assert records[f"sgd/seed-{seed}"].status == "completed"


def test_a_variant_whose_inputs_do_not_fit_the_data_is_refused_before_anything_trains(
    fixture_data, tmp_path
):
    # Its runs come after another variant's that loads the same data: each run is checked.
    path = write_study(tmp_path, variants={
        "sgd": {},
        "broken": {"set": {"model.input_shape": [10], "model.layers.0": "flatten"}},
    })
    with pytest.raises(UserInputError, match=r"study\.yaml: variants\.broken: model\.input_shape: "
                                             r"\[10\] does not fit the data's samples of shape "
                                             r"\[28, 28\]"):
        run_study(path, out=tmp_path / "study", workers=2, progress="none")
    assert not (tmp_path / "study").exists()


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


def test_data_that_cannot_be_loaded_is_refused_before_the_folder_is_made(fixture_data, tmp_path):
    # The fixture holds 2000 training images: a validation split of 5000 cannot be taken.
    base = {**BASE, "data": {**BASE["data"], "validation": 5000}}
    with pytest.raises(UserInputError, match=r"^data\.validation"):
        run_study(write_study(tmp_path, base=base), out=tmp_path / "study", progress="none")
    assert not (tmp_path / "study").exists()


def test_a_folder_holding_something_else_is_refused(fixture_data, tmp_path):
    (tmp_path / "study").mkdir()
    (tmp_path / "study" / "notes.txt").write_text("mine")
    with pytest.raises(UserInputError, match=r"not empty and holds no study\.db"):
        run_study(write_study(tmp_path), out=tmp_path / "study", progress="none")
    assert [p.name for p in (tmp_path / "study").iterdir()] == ["notes.txt"]
    # --force-new replaces only what tricklab made.
    with pytest.raises(UserInputError, match=r"--force-new: .*study is not a tricklab study "
                                             r"\(it holds notes\.txt\)"):
        run_study(write_study(tmp_path), out=tmp_path / "study", progress="none",
                  force_new=True)
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


# --- one driver per study, --force-new, leftovers of killed drivers, workers, attempts ------


def _dead_pid() -> int:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    return int(done.stdout)


def test_a_second_driver_is_refused_while_the_first_holds_the_study(fixture_data, tmp_path):
    out = tmp_path / "study"
    with StudyLock(out):
        message = (rf"another tricklab study \(PID {os.getpid()}\) is running in "
                   rf"{re.escape(str(out))}; wait for it or stop it")
        with pytest.raises(UserInputError, match=message):
            run_study(write_study(tmp_path, seeds=1), out=out, workers=1, progress="none")
        assert [p.name for p in out.iterdir()] == ["study.lock"]
        assert (out / "study.lock").read_text().strip() == str(os.getpid())
    assert list(out.iterdir()) == []  # the lock goes with its holder
    outcome = run_study(write_study(tmp_path, seeds=1), out=out, workers=1, progress="none")
    assert outcome.counts == {"completed": 2}
    assert "study.lock" not in {p.name for p in out.iterdir()}


def test_force_new_replaces_only_a_study_tricklab_made_and_never_the_current_folder(
    fixture_data, tmp_path, monkeypatch
):
    out = tmp_path / "study"
    run_study(write_study(tmp_path, seeds=1), out=out, workers=2, progress="none")
    database = (out / "study.db").read_bytes()
    runs = sorted(str(p.relative_to(out)) for p in (out / "runs").rglob("*"))
    changed = write_study(tmp_path, seeds=1, variants={"sgd": {}, "nadam": {
        "set": {"train.optimizer": {"name": "nadam"}}}})

    def unchanged() -> None:
        assert (out / "study.db").read_bytes() == database
        assert sorted(str(p.relative_to(out)) for p in (out / "runs").rglob("*")) == runs
        assert not [p.name for p in out.iterdir() if p.name.startswith((".", "study.lock"))]

    monkeypatch.chdir(out)
    with pytest.raises(UserInputError, match=r"--force-new: refusing to replace \.: it is the "
                                             r"current directory"):
        run_study(changed, out=".", workers=1, progress="none", force_new=True)
    monkeypatch.chdir(tmp_path)
    unchanged()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(UserInputError, match=r"is not a tricklab study \(it holds notes\.txt\)"):
        run_study(changed, out=out, workers=1, progress="none", force_new=True)
    unchanged()
    assert (out / "notes.txt").read_text() == "mine"
    (out / "notes.txt").unlink()
    outcome = run_study(changed, out=out, workers=2, progress="none", force_new=True)
    assert outcome.counts == {"completed": 2}
    assert sorted(p.name for p in out.iterdir()) == ["runs", "study.db"]
    assert sorted(p.name for p in (out / "runs").iterdir()) == ["nadam", "sgd"]


def test_force_new_keeps_the_old_study_whole_until_the_new_one_has_started(
    fixture_data, tmp_path, small_disk
):
    disk = small_disk("4m")
    out = disk / "study"
    run_study(write_study(tmp_path, seeds=1), out=out, workers=2, progress="none")
    database = (out / "study.db").read_bytes()
    runs = sorted(str(p.relative_to(out)) for p in (out / "runs").rglob("*"))
    changed = write_study(tmp_path, seeds=1, variants={"sgd": {}, "nadam": {
        "set": {"train.optimizer": {"name": "nadam"}}}})
    # More free space each time: the disk refuses opening the old store, then setting
    # it aside and making the new one, until the new study starts.
    for leave in range(0, 256 * 1024, 4096):
        filler = fill(disk, leave)
        try:
            run_study(changed, out=out, workers=1, progress="none", force_new=True)
        except SystemRefusedError as error:
            assert "no space left on device" in str(error)
        finally:
            filler.unlink()
        if (out / "study.db").read_bytes() != database:
            break
        assert sorted(str(p.relative_to(out)) for p in (out / "runs").rglob("*")) == runs
        assert sorted(p.name for p in out.iterdir()) == ["runs", "study.db"]
    else:
        pytest.fail("the new study never started")
    assert leave > 0
    assert not (out / "runs" / "adam").exists()
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("room_again", [True, False], ids=["room-again", "still-full"])
def test_a_store_the_full_disk_refuses_stops_the_runs_under_way_as_interrupted(
    fixture_data, tmp_path, small_disk, monkeypatch, room_again
):
    disk = small_disk("4m")
    out = disk / "study"
    record_result, fillers = StudyStore.record_result, []

    def on_a_full_disk(store: StudyStore, *args: object, **kwargs: object) -> None:
        # The first result arrives on a disk just filled, so the store's own write is
        # refused; then there is room again (as when the stopped runs' files are
        # deleted), or the disk stays full to the end of the command.
        if fillers:
            return record_result(store, *args, **kwargs)
        fillers.append(fill(disk))
        try:
            return record_result(store, *args, **kwargs)
        finally:
            if room_again:
                fillers[0].unlink()

    monkeypatch.setattr(StudyStore, "record_result", on_a_full_disk)
    with pytest.raises(SystemRefusedError) as refused:
        run_study(write_study(tmp_path), out=out, workers=2, progress="none")
    monkeypatch.undo()
    fillers[0].unlink(missing_ok=True)
    records = stored(out)
    unfinished = [record for record in records.values() if not record.finished]
    assert str(refused.value) == (
        f"{out / 'study.db'}: no space left on device; {len(unfinished)} run(s) left pending: "
        "free space and run the same command again"
    )
    # The run whose result the store refused, and the one under way beside it, are
    # stopped, not failed: recorded so where the disk allows, their starts not held
    # against them; on a disk still full they stay as the next command will find them.
    stopped = ("interrupted", 0) if room_again else ("running", 1)
    statuses = [(record.status, record.attempts) for record in unfinished]
    assert stopped in statuses
    assert set(statuses) <= {stopped, ("pending", 0)}, statuses
    assert all(record.attempts == 1 for record in records.values() if record.finished)

    outcome = run_study(write_study(tmp_path), out=out, workers=2, progress="none")
    assert outcome.counts == {"completed": 4}
    assert [(r.status, r.attempts) for r in stored(out).values()] == [("completed", 1)] * 4


def test_what_killed_drivers_left_in_the_folder_is_cleaned_up_or_put_back(
    fixture_data, tmp_path
):
    out, path = tmp_path / "study", write_study(tmp_path, seeds=1)
    run_study(path, out=out, workers=2, progress="none")
    before = {run_id: (r.attempts, r.metrics) for run_id, r in stored(out).items()}
    dead = _dead_pid()
    # A driver killed while building the store, and one killed during --force-new:
    # halfway through setting the old study aside, or after it had made the new store.
    leftovers = [out / f".study.db.{dead}.tmp", out / f".study.db.{dead}.tmp-journal"]
    for leftover in leftovers:
        leftover.write_bytes(b"partial")
    halfway = out / f".replaced-study.{dead}"
    halfway.mkdir()
    (out / "runs").rename(halfway / "runs")
    finished = out / f".replaced-study.{dead + 1}"
    finished.mkdir()
    (finished / "report.md").write_text("the old study's report")
    (finished / ".complete").touch()
    (out / "study.lock").write_text(f"{dead}\n")  # a lock file its killed holder left
    outcome = run_study(path, out=out, workers=2, progress="none")
    assert outcome.counts == {"completed": 2}
    assert sorted(p.name for p in out.iterdir()) == ["runs", "study.db"]
    assert {run_id: (r.attempts, r.metrics) for run_id, r in stored(out).items()} == before
    for record in stored(out).values():
        assert (out / record.run_dir / "result.json").is_file()


def _children() -> set[int]:
    """Processes whose parent is this one."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            # The command name may hold spaces and parentheses; the fields follow the last ")".
            if int(stat.rsplit(")", 1)[1].split()[1]) == os.getpid():
                found.add(int(entry.name))
    return found


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="counts processes in /proc")
def test_workers_never_outnumber_the_runs_to_do(fixture_data, tmp_path, capfd):
    before, most, done = _children(), 0, threading.Event()

    def count() -> None:
        nonlocal most
        while not done.is_set():
            most = max(most, len(_children() - before))
            done.wait(0.02)

    counter = threading.Thread(target=count)
    counter.start()
    try:
        outcome = run_study(write_study(tmp_path, seeds=1), out=tmp_path / "study", workers=40,
                            progress="lines")
    finally:
        done.set()
        counter.join()
    assert outcome.counts == {"completed": 2}
    assert 1 <= most <= 2
    assert "tiny: 2 runs, 0 already finished, 2 workers" in capfd.readouterr().err


def test_a_run_failing_batched_and_alone_fails_within_its_attempts(
    fixture_data, tmp_path, monkeypatch
):
    # The batched group crashes, then each run alone, twice.
    crash_variant(monkeypatch, "broken")
    path = write_study(tmp_path, variants={"broken": {}})
    outcome = run_study(path, out=tmp_path / "study", workers=2, progress="none",
                        batch_seeds=True)
    assert outcome.counts == {"failed": 2}
    for record in stored(tmp_path / "study").values():
        assert (record.status, record.attempts) == ("failed", MAX_ATTEMPTS)
        assert f"{record.recipe['name']} crashed" in record.error


def test_set_reaches_every_run_and_is_kept_with_the_study(fixture_data, tmp_path):
    out, path = tmp_path / "study", write_study(tmp_path)
    overrides = ["train.epochs=2", "data.train_size=300"]
    outcome = run_study(path, out=out, workers=2, progress="none", overrides=overrides)
    assert outcome.counts == {"completed": 4}
    records = stored(out)
    for record in records.values():
        assert record.recipe["train"]["epochs"] == 2 and record.recipe["data"]["train_size"] == 300
        written = yaml.safe_load((out / record.run_dir / "recipe.yaml").read_text())
        assert written["train"]["epochs"] == 2 and written["data"]["train_size"] == 300
        assert len(record.history["loss"]) == 2
    with StudyStore.open(out / "study.db") as store:
        assert store.spec["overrides"] == overrides
    # The same --set resumes: nothing trains again.
    run_study(path, out=out, workers=2, progress="none", overrides=overrides)
    assert {k: r.attempts for k, r in stored(out).items()} == {k: 1 for k in records}
    database = (out / "study.db").read_bytes()
    for other in (["train.epochs=3"], []):
        with pytest.raises(UserInputError) as refused:
            run_study(path, out=out, workers=2, progress="none", overrides=other)
        shown = " ".join(f"'{text}'" for text in other) or "none"
        assert str(refused.value) == (
            f"{path}: the study differs from the one stored in {out / 'study.db'} (--set: "
            f"'train.epochs=2' 'data.train_size=300' → {shown}); pass --force-new to discard "
            "it and start over, or --out DIR to run it elsewhere")
    assert (out / "study.db").read_bytes() == database
    run_study(path, out=out, workers=2, progress="none", overrides=["train.epochs=3"],
              force_new=True)
    assert {r.recipe["train"]["epochs"] for r in stored(out).values()} == {3}


def test_study_summary_is_the_table_as_data(fixture_data, tmp_path):
    from tricklab.run.study import study_summary

    out = tmp_path / "study"
    run_study(write_study(tmp_path), out=out, workers=2, progress="none")
    summary = study_summary(out)
    # safe_dump sorts the variants: adam comes first, and is the baseline.
    assert (summary["name"], summary["metric"], summary["baseline"]) == (
        "tiny", "test_accuracy", "adam")
    assert summary["higher_is_better"] is True and summary["overrides"] == []
    values = {}
    for record in stored(out).values():
        values.setdefault(record.variant, []).append(record.metrics["test_accuracy"])
    by_name = {variant["name"]: variant for variant in summary["variants"]}
    assert sorted(by_name) == ["adam", "sgd"]
    assert [variant["rank"] for variant in summary["variants"]] == [1, 2]
    ranked = sorted(values, key=lambda name: -sum(values[name]))
    assert [variant["name"] for variant in summary["variants"]] == ranked
    for name, variant in by_name.items():
        assert variant["n"] == 2
        assert variant["mean"] == pytest.approx(sum(values[name]) / 2)
        assert variant["counts"] == {"succeeded": 2, "diverged": 0, "failed": 0, "unfinished": 0}
        assert variant["ci"][0] <= variant["mean"] <= variant["ci"][1]
    baseline, sgd = by_name["adam"], by_name["sgd"]
    assert baseline["verdict"] == "baseline" and baseline["difference"] is None
    assert sgd["difference"] == pytest.approx(sgd["mean"] - baseline["mean"])
    assert sgd["difference_ci"][0] <= sgd["difference"] <= sgd["difference_ci"][1]
    assert 0 <= sgd["p_value"] <= sgd["p_holm"] <= 1
    assert sgd["verdict"] in ("better", "worse", "no detectable difference")
    assert any("only 2 seeds" in warning for warning in summary["warnings"])
