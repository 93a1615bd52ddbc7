"""load_results: a real study store, filled as the driver fills it, read back and analysed."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from tricklab.study.results import (
    IdenticalVariant,
    StatusCounts,
    VariantResults,
    identical_variants,
    load_results,
)
from tricklab.study.store import LearningRateChoice, RunRecord, StudyStore


def _recipe(name: str, learning_rate: float = 0.001) -> dict[str, Any]:
    return {
        "name": name, "seed": 0,
        "data": {"dataset": "fashion_mnist", "validation": 5000, "scale": "unit"},
        "model": {"input_shape": [28, 28], "layers": [{"flatten": {}}, {"dense": {"units": 10}}]},
        "train": {"optimizer": {"name": "sgd", "learning_rate": learning_rate},
                  "loss": "sparse_categorical_crossentropy", "batch_size": 32, "epochs": 4},
    }


def _spec(variants: list[str], **extra: Any) -> dict[str, Any]:
    spec = {
        "name": "unit", "question": "Does it help?", "description": None,
        "metric": "test_accuracy", "higher_is_better": True, "baseline": variants[0],
        "seeds": [0, 1, 2, 3, 4], "target": None, "budget": None, "quick": False,
        "variants": {v: {"description": None, "recipe": _recipe(v), "lr_search": False}
                     for v in variants},
        "lr_search": None,
    }
    spec.update(extra)
    return spec


def _result(final: float, status: str = "completed", epochs: int = 4, time_s: float = 2.0,
            test: bool = True) -> dict[str, Any]:
    """A result.json whose val_accuracy climbs by 0.1 per epoch up to `final`."""
    val = [final - 0.1 * (epochs - e) for e in range(1, epochs + 1)]
    metrics = {"train_accuracy": final + 0.01, "val_accuracy": final, "val_loss": 1 - final}
    if test:
        metrics["test_accuracy"] = final
    if status == "diverged":
        metrics = dict.fromkeys(metrics, math.nan)
    return {
        "status": status, "metrics": metrics, "epochs_run": epochs, "wall_time_s": time_s * epochs,
        "history": {"val_accuracy": val, "loss": [1 - v for v in val], "time_s": [time_s] * epochs},
    }


def _store(tmp_path: Path, spec: dict[str, Any]) -> StudyStore:
    return StudyStore.create(tmp_path / "study.db", spec, "fingerprint")


def _add(store: StudyStore, variant: str, seed: int, result: dict[str, Any] | None,
         phase: str = "main", learning_rate: float | None = None, status: str | None = None,
         error: str | None = None) -> None:
    run_id = (f"{variant}/seed-{seed}" if phase == "main"
              else f"{variant}/lr-{learning_rate:g}/seed-{seed}")
    store.add_runs([RunRecord(run_id, variant, seed, phase, run_id, _recipe(variant),
                              learning_rate=learning_rate)])
    if result is not None:
        store.mark_started(run_id)
        store.record_result(run_id, result)
    if status is not None:
        store.set_status(run_id, status, error)


def test_groups_values_per_variant_in_spec_order_and_ranks_them(tmp_path: Path) -> None:
    # Spec order differs from both insertion and rank order.
    store = _store(tmp_path, _spec(["base", "weak", "strong"]))
    for seed in range(5):
        _add(store, "strong", seed, _result(0.90 + 0.002 * seed))
        _add(store, "base", seed, _result(0.85 + 0.002 * seed))
        _add(store, "weak", seed, _result(0.80 + 0.002 * seed))
    results = load_results(store, resamples=500)
    store.close()

    assert list(results.variants) == ["base", "weak", "strong"]
    assert results.variants["strong"].values == pytest.approx([0.90, 0.902, 0.904, 0.906, 0.908])
    assert [v.name for v in results.ranked] == ["strong", "base", "weak"]
    assert [results.verdict(n) for n in ("strong", "base", "weak")] == [
        "better", "baseline", "worse"]
    assert results.metric == "test_accuracy"
    assert results.warnings == []


def test_only_succeeded_runs_with_a_finite_metric_give_values(tmp_path: Path) -> None:
    store = _store(tmp_path, _spec(["base", "trick"]))
    for seed in range(5):
        _add(store, "base", seed, _result(0.85 + 0.01 * seed))
    _add(store, "trick", 0, _result(0.80))
    _add(store, "trick", 1, _result(0.82, status="stopped_early", epochs=2))
    _add(store, "trick", 2, _result(0.99, status="diverged"))
    _add(store, "trick", 3, None, status="failed", error="Traceback\nRuntimeError: boom")
    _add(store, "trick", 4, None)
    nan_metric = _result(0.95)
    nan_metric["metrics"]["test_accuracy"] = math.nan
    _add(store, "trick", 5, nan_metric)
    results = load_results(store, resamples=200)
    store.close()

    trick = results.variants["trick"]
    assert trick.values == pytest.approx([0.80, 0.82])
    assert (trick.counts.succeeded, trick.counts.diverged, trick.counts.failed,
            trick.counts.unfinished, trick.counts.total) == (3, 1, 1, 1, 6)
    assert [run.run_id for run in results.problems] == ["trick/seed-2", "trick/seed-3"]
    assert results.problems[1].error == "Traceback\nRuntimeError: boom"
    assert results.unfinished == 1
    joined = "\n".join(results.warnings)
    assert "trick: 1 of 6 runs diverged" in joined
    assert "trick: 1 of 6 runs failed" in joined
    assert "1 of 11 runs have not finished yet" in joined
    assert "trick: only 2 seeds" in joined


def test_a_variant_whose_runs_all_diverged_is_kept_and_called_diverged(tmp_path: Path) -> None:
    store = _store(tmp_path, _spec(["base", "explodes"]))
    for seed in range(5):
        _add(store, "base", seed, _result(0.85 + 0.01 * seed))
        _add(store, "explodes", seed, _result(0.5, status="diverged"))
    results = load_results(store, resamples=200)
    store.close()

    assert [v.name for v in results.ranked] == ["base", "explodes"]
    assert results.ranked[1].summary.n == 0
    assert results.verdict("explodes") == "diverged"
    assert "explodes: 5 of 5 runs diverged" in results.warnings


def test_falls_back_to_validation_metric_when_no_run_has_the_test_metric(tmp_path: Path) -> None:
    store = _store(tmp_path, _spec(["base", "trick"]))
    for seed in range(5):
        _add(store, "base", seed, _result(0.85 + 0.001 * seed, test=False))
        _add(store, "trick", seed, _result(0.86 + 0.001 * seed, test=False))
    results = load_results(store, resamples=200)
    store.close()

    assert results.metric == "val_accuracy"
    assert results.analysis.metric == "val_accuracy"
    assert results.variants["trick"].values == pytest.approx([0.86, 0.861, 0.862, 0.863, 0.864])
    assert results.warnings[0] == (
        "metric 'test_accuracy' is missing from every finished run; comparing 'val_accuracy' "
        "instead")


def test_time_to_target_and_wall_time_per_variant(tmp_path: Path) -> None:
    target = {"metric": "val_accuracy", "value": 0.75}
    store = _store(tmp_path, _spec(["base", "fast"], target=target))
    for seed in range(3):
        # val_accuracy per epoch: 0.55, 0.65, 0.75, 0.85 → target at epoch 3.
        _add(store, "base", seed, _result(0.85, time_s=1.0 + seed))
        # 0.65, 0.75, 0.85 → epoch 2.
        _add(store, "fast", seed, _result(0.85, time_s=2.0, epochs=3))
    _add(store, "fast", 3, _result(0.60, time_s=2.0, epochs=1))  # never reaches it
    results = load_results(store, resamples=200)
    store.close()

    base, fast = results.variants["base"], results.variants["fast"]
    assert base.time_to_target.epochs == [3, 3, 3]
    assert base.time_to_target.seconds == pytest.approx([3.0, 6.0, 9.0])
    assert base.time_to_target.median_seconds == pytest.approx(6.0)
    assert fast.time_to_target.epochs == [2, 2, 2, None]
    assert fast.time_to_target.reached == 3
    # wall_time_s = time_s × epochs: 4, 8, 12 s.
    assert base.wall_time_mean == pytest.approx(8.0)
    assert base.wall_time_std == pytest.approx(4.0)
    assert fast.wall_time_mean == pytest.approx((6.0 * 3 + 2.0) / 4)


def test_no_target_means_no_time_to_target(tmp_path: Path) -> None:
    store = _store(tmp_path, _spec(["base"]))
    _add(store, "base", 0, _result(0.85))
    results = load_results(store, resamples=200)
    store.close()
    assert results.variants["base"].time_to_target is None
    assert results.variants["base"].wall_time_std is None


def test_learning_rate_search_scores_and_choice(tmp_path: Path) -> None:
    search = {"grid": [1e-4, 1e-3, 1e-2], "seeds": [0, 1], "metric": "val_accuracy"}
    store = _store(tmp_path, _spec(["base", "trick"], lr_search=search))
    for rate, score in ((1e-4, 0.70), (1e-3, 0.80), (1e-2, 0.75)):
        for seed in (0, 1):
            _add(store, "trick", seed, _result(score + 0.01 * seed), phase="lr_search",
                 learning_rate=rate)
    store.set_learning_rate_choice(LearningRateChoice(
        "trick", 1e-3, "val_accuracy", {1e-4: 0.705, 1e-3: 0.805, 1e-2: 0.755}))
    _add(store, "base", 0, _result(0.8))
    results = load_results(store, resamples=200)
    store.close()

    assert list(results.learning_rate_searches) == ["trick"]
    found = results.learning_rate_searches["trick"]
    assert found.chosen == 1e-3
    assert list(found.scores) == [1e-4, 1e-3, 1e-2]
    assert found.scores[1e-2] == pytest.approx([0.75, 0.76])
    assert found.means[1e-3] == pytest.approx(0.805)
    assert len(results.search_runs) == 6
    # Search runs are not main runs: they never enter the comparison.
    assert results.variants["trick"].values == []


def test_a_study_not_started_yet_loads_with_everything_pending(tmp_path: Path) -> None:
    store = _store(tmp_path, _spec(["base", "trick"]))
    for seed in range(2):
        _add(store, "base", seed, None)
        _add(store, "trick", seed, None)
    store.mark_started("base/seed-0")
    results = load_results(store, resamples=200)
    store.close()

    assert results.unfinished == 4
    assert results.verdict("trick") == "pending"
    assert "4 of 4 runs have not finished yet: the results are partial" in results.warnings


EARLY_STOPPING = {"early_stopping": {"monitor": "val_loss", "patience": 3,
                                     "restore_best_weights": True}}


def _variant(name: str, finals: list[float], recipe: dict[str, Any] | None = None,
             status: str = "completed", epochs: int = 2, time_s: float = 1.0,
             unfinished: int = 0) -> VariantResults:
    """A variant by hand: one run per seed 0, 1, ... ending at each of `finals`."""
    runs = []
    for seed, final in enumerate(finals):
        result = _result(final, status, epochs, time_s)
        result["history"]["lr"] = [0.001] * epochs
        runs.append(RunRecord(f"{name}/seed-{seed}", name, seed, "main", f"{name}/seed-{seed}",
                              recipe or _recipe(name), status=status, metrics=result["metrics"],
                              history=result["history"], epochs_run=epochs))
    runs += [RunRecord(f"{name}/seed-{len(finals) + i}", name, len(finals) + i, "main", "x",
                       recipe or _recipe(name)) for i in range(unfinished)]
    succeeded = len(finals) if status in ("completed", "stopped_early") else 0
    return VariantResults(name, None, recipe or _recipe(name), runs, finals,
                          StatusCounts(succeeded=succeeded, diverged=len(finals) - succeeded,
                                       unfinished=unfinished), None, None, None)


def _with(name: str, **train: Any) -> dict[str, Any]:
    recipe = _recipe(name)
    recipe["train"] = {**recipe["train"], "epochs": 2, **train}
    return recipe


def test_a_variant_equal_to_an_earlier_one_on_every_seed_is_found_with_the_reason() -> None:
    finals = [0.80, 0.81, 0.82]
    variants = {
        "baseline": _variant("baseline", [0.70, 0.71, 0.72], _with("baseline")),
        "dropout": _variant("dropout", finals, _with("dropout")),
        # The chapter's ladder: early stopping that never stopped repeats the rung below it,
        # whatever the runs took to train.
        "early_stopping": _variant("early_stopping", finals, time_s=3.0,
                                   recipe=_with("early_stopping", callbacks=[EARLY_STOPPING])),
    }
    assert identical_variants(variants, "baseline") == [IdenticalVariant(
        "early_stopping", "dropout", 3,
        "early stopping never stopped a run: each trained all 2 epochs")]


def test_identical_variants_are_matched_with_the_baseline_first() -> None:
    variants = {name: _variant(name, [0.8, 0.9], _with(name))
                for name in ("first", "baseline", "third")}
    assert identical_variants(variants, "baseline") == [
        IdenticalVariant("first", "baseline", 2, "their recipes are the same"),
        IdenticalVariant("third", "baseline", 2, "their recipes are the same"),
    ]


def test_the_likely_reason_is_given_only_when_it_is_known() -> None:
    schedule = {"exponential_decay": {"initial_learning_rate": 0.001, "decay_steps": 10 ** 9,
                                      "decay_rate": 0.5}}
    changed_layers = _with("wider")
    changed_layers["model"]["layers"][1]["dense"]["units"] = 20
    variants = {
        "baseline": _variant("baseline", [0.8, 0.9], _with("baseline")),
        "decay": _variant("decay", [0.8, 0.9], _with("decay", schedule=schedule)),
        "wider": _variant("wider", [0.8, 0.9], changed_layers),
    }
    assert [(found.variant, found.reason) for found in identical_variants(variants, "baseline")] == [
        ("decay", "the schedule never changed the learning rate in these epochs"),
        ("wider", None),
    ]


@pytest.mark.parametrize("change", ["a seed", "a history", "unfinished", "seeds", "diverged"])
def test_results_that_differ_anywhere_are_not_identical(change: str) -> None:
    other = _variant("other", [0.8, 0.9], _with("other"))
    if change == "a seed":
        other.runs[1].metrics["test_accuracy"] += 1e-12
    elif change == "a history":
        other.runs[0].history["loss"][0] += 1e-12
    elif change == "unfinished":  # equal so far, but "every seed" is not known yet
        other = _variant("other", [0.8, 0.9], _with("other"), unfinished=1)
    elif change == "seeds":
        other = _variant("other", [0.8], _with("other"))
    else:
        other = _variant("other", [0.8, 0.9], _with("other"), status="diverged")
    baseline = _variant("baseline", [0.8, 0.9], _with("baseline"),
                        status="diverged" if change == "diverged" else "completed")
    assert identical_variants({"baseline": baseline, "other": other}, "baseline") == []


def test_load_results_marks_identical_variants(tmp_path: Path) -> None:
    store = _store(tmp_path, _spec(["base", "same", "better"]))
    for seed in range(3):
        _add(store, "base", seed, _result(0.85 + 0.01 * seed))
        _add(store, "same", seed, _result(0.85 + 0.01 * seed, time_s=5.0))
        _add(store, "better", seed, _result(0.90 + 0.01 * seed))
    results = load_results(store, resamples=200)
    store.close()
    # The stored recipes differ only in their names.
    assert results.identical == [IdenticalVariant("same", "base", 3, "their recipes are the same")]
