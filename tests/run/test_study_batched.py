"""Studies training a variant's seeds together as one batched model (`batch_seeds`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from tricklab.cli.main import main
from tricklab.data import load_dataset
from tricklab.errors import UserInputError
from tricklab.recipe.study import load_study
from tricklab.run import seed_group
from tricklab.run.study import run_study
from tricklab.run.study_backends import plan_seed_groups
from tricklab.study.store import StudyStore
from tricklab.transfer import load_model

from ..conftest import TINY_RECIPE as BASE

VARIANTS = {
    "sgd": {},
    # Early stopping decides per run: its seeds cannot be batched.
    "early": {"set": {"train.callbacks": ["early_stopping"]}},
}


def write_study(folder: Path, variants: dict = VARIANTS, seeds: int = 2) -> Path:
    """A study of the tiny 784-16-10 MLP (no dropout), one epoch per run."""
    spec = {"name": "batched", "question": "Does batching change anything?", "base": BASE,
            "seeds": seeds, "variants": variants}
    path = folder / "study.yaml"
    path.write_text(yaml.safe_dump(spec), encoding="utf-8")
    return path


def stored(folder: Path) -> dict:
    with StudyStore.open(folder / "study.db") as store:
        return {record.run_id: record for record in store.runs()}


def result_of(folder: Path, record) -> dict:
    return json.loads((folder / record.run_dir / "result.json").read_text())


def test_batched_seeds_record_the_runs_separate_training_gives(fixture_data, tmp_path):
    path = write_study(tmp_path)
    batched, separate = tmp_path / "batched", tmp_path / "separate"
    outcome = run_study(path, out=batched, workers=2, progress="none", batch_seeds=True)
    run_study(path, out=separate, workers=2, progress="none", batch_seeds=False)
    assert outcome.exit_code == 0 and outcome.counts == {"completed": 4}
    records, expected = stored(batched), stored(separate)
    assert sorted(records) == ["early/seed-0", "early/seed-1", "sgd/seed-0", "sgd/seed-1"]
    test = load_dataset("fashion_mnist", validation=500, scale="unit").test
    for run_id, record in records.items():
        result = result_of(batched, record)
        assert record.status == result["status"] == "completed" and record.attempts == 1
        assert record.metrics == result["metrics"]
        assert record.history["loss"] == result["history"]["loss"]
        assert record.metrics == pytest.approx(expected[run_id].metrics, abs=1e-5)
        assert record.history["loss"] == pytest.approx(expected[run_id].history["loss"], abs=1e-5)
        folder = batched / record.run_dir
        for name in ("recipe.yaml", "history.csv", "plots/learning_curves.png"):
            assert (folder / name).is_file(), f"{run_id}: {name}"
        assert yaml.safe_load((folder / "recipe.yaml").read_text()) == record.recipe
        assert set(result) - {"batched_seeds"} == set(result_of(separate, expected[run_id]))
        # Same seed, same weights: the saved model predicts as the separate run's does,
        # and scores on the test set what the batched evaluation recorded.
        model, optimizer = load_model(folder / "model", optimizer=True)
        alone = load_model(separate / expected[run_id].run_dir / "model")
        with torch.no_grad():
            predicted = model.eval()(test.x)
            torch.testing.assert_close(predicted, alone.eval()(test.x), atol=1e-5, rtol=0)
        accuracy = (predicted.argmax(1) == test.y).double().mean().item()
        assert accuracy == pytest.approx(result["metrics"]["test_accuracy"], abs=1e-6)
        assert optimizer.param_groups[0]["lr"] == pytest.approx(0.01)
        if run_id.startswith("sgd/"):
            assert result["batched_seeds"] == 2
        else:
            assert "batched_seeds" not in result


def test_a_failing_batched_group_falls_back_to_separate_runs(
    fixture_data, tmp_path, monkeypatch
):
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("no batching today")

    # Patched before the study forks its workers, which inherit it.
    monkeypatch.setattr(seed_group, "train_seed_group", broken)
    out = tmp_path / "study"
    path = write_study(tmp_path, variants={"sgd": {}})
    outcome = run_study(path, out=out, workers=2, progress="none", batch_seeds=True)
    assert outcome.exit_code == 0 and outcome.counts == {"completed": 2}
    for record in stored(out).values():
        assert (record.status, record.attempts) == ("completed", 2)
        assert "batched seeds: RuntimeError: no batching today" in record.error
        assert "batched_seeds" not in result_of(out, record)


def test_an_interrupted_batched_group_leaves_its_runs_unfinished(
    fixture_data, tmp_path, monkeypatch
):
    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(seed_group, "train_seed_group", interrupted)
    out = tmp_path / "study"
    path = write_study(tmp_path, variants={"sgd": {}})
    outcome = run_study(path, out=out, workers=2, progress="none", batch_seeds=True)
    assert outcome.exit_code == 130
    assert {record.status for record in stored(out).values()} == {"running"}
    monkeypatch.undo()
    again = run_study(path, out=out, workers=2, progress="none", batch_seeds=True)
    assert again.exit_code == 0 and again.counts == {"completed": 2}


def test_automatic_mode_batches_only_on_a_gpu(fixture_data, tmp_path, monkeypatch):
    study = load_study(write_study(tmp_path))
    runs = [study.plan(variant, seed) for variant in VARIANTS for seed in (0, 1)]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert plan_seed_groups(runs, None) == []
    assert plan_seed_groups(runs, True) == [["sgd/seed-0", "sgd/seed-1"]]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert plan_seed_groups(runs, None) == [["sgd/seed-0", "sgd/seed-1"]]


@pytest.mark.skipif(torch.cuda.is_available(), reason="on a GPU a default study batches")
def test_a_default_study_on_this_cpu_does_not_batch(fixture_data, tmp_path):
    out = tmp_path / "study"
    outcome = run_study(write_study(tmp_path, variants={"sgd": {}}), out=out, workers=2,
                        progress="none")
    assert outcome.counts == {"completed": 2}
    assert all("batched_seeds" not in result_of(out, r) for r in stored(out).values())


@pytest.mark.parametrize(("flag", "expected"),
                         [(["--batch-seeds"], True), (["--no-batch-seeds"], False), ([], None)])
def test_the_cli_flag_reaches_run_study(isolated, monkeypatch, flag, expected):
    from tricklab.run import study

    seen = {}

    def fake_run_study(*args: object, **options: object) -> None:
        seen.update(options)
        raise UserInputError("stop here")

    monkeypatch.setattr(study, "run_study", fake_run_study)
    assert main(["study", "study.yaml", *flag]) == 2
    assert seen["batch_seeds"] is expected
