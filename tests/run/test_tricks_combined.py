"""`tricklab tricks`, round 2: the winners together against the baseline and the best of them."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import yaml

from tricklab.recipe import recipe_from_dict
from tricklab.recipe.study import load_study
from tricklab.run import build
from tricklab.run.study_folder import STORE_NAME
from tricklab.run.tricks import STUDY_FILE, plan_tricks, recommend
from tricklab.run.tricks_combined import (
    combination_study,
    confirm,
    run_combination,
)
from tricklab.study.results import load_results
from tricklab.study.statistics import holm
from tricklab.study.store import LearningRateChoice, RunRecord, StudyStore

from ..conftest import REPOSITORY, TINY_RECIPE

RECIPES = REPOSITORY / "recipes"
LEAKY = RECIPES / "chapter11" / "leaky_relu_he.yaml"
BASE = [0.80, 0.81, 0.79, 0.80, 0.805]


def shifted(by: float, base: list[float] = BASE) -> list[float]:
    return [value + by for value in base]


def stored(folder: Path, name: str, text: str, values: dict[str, list[float]],
           metric: str = "test_accuracy", rates: dict[str, float] | None = None,
           quick: bool = False, unfinished: int = 0):
    """A study store as the runs would leave it: `values` of `metric` per variant, one per seed."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(text)
    study = load_study(folder / name, quick=quick)
    store = StudyStore.create(folder / STORE_NAME, study.spec, study.fingerprint)
    search = f"val_{metric.removeprefix('test_')}"
    for variant, scores in values.items():
        for index, (seed, score) in enumerate(zip(study.spec["seeds"], scores, strict=True)):
            planned = study.plan(variant, seed)
            store.add_runs([RunRecord(planned.run_id, variant, seed, "main", planned.run_dir,
                                      planned.recipe)])
            if index >= len(scores) - unfinished:
                continue
            store.record_result(planned.run_id, {
                "status": "completed", "metrics": {metric: score}, "epochs_run": 1,
                "history": {search: [score]}, "wall_time_s": 1.0})
    for variant, rate in (rates or {}).items():
        store.set_learning_rate_choice(LearningRateChoice(variant, rate, search, {rate: 0.9}))
    results = load_results(store, resamples=2000)
    store.close()
    return results


def round_one(folder: Path, plan, values: dict[str, list[float]], **options):
    return stored(folder, STUDY_FILE, plan.study_text(folder), values, quick=plan.quick,
                  **options)


def round_two(folder: Path, plan, recommendation, results, values: dict[str, list[float]],
              **options):
    document = combination_study(plan, recommendation, results, folder)
    return stored(folder, "combined.yaml", yaml.safe_dump(document, sort_keys=False), values,
                  metric=results.metric, quick=plan.quick, **options)


WINNERS = {  # round 1 on leaky_relu_he: five detectably better, nadam the best of them
    "baseline": BASE, "he_elu": shifted(0.02), "batch_norm": shifted(0.01),
    "adam": shifted(0.03), "nadam": shifted(0.04), "one_cycle": shifted(0.015),
    "l2": shifted(-0.05), "max_norm": shifted(0.0),
}
RATES = {"nadam": 0.003, "adam": 0.001}


@pytest.fixture
def leaky(fixture_data, tmp_path):
    """leaky_relu_he's plan, round 1's results and recommendation (he_elu, batch_norm, nadam,
    one_cycle)."""
    plan = plan_tricks(LEAKY)
    results = round_one(tmp_path / "round1", plan, WINNERS, rates=RATES)
    return plan, results, recommend(plan, results)


def test_the_round_two_study_tests_the_combination_on_fresh_seeds(leaky, tmp_path):
    plan, results, recommendation = leaky
    assert [name for name, *_ in recommendation.applied] == [
        "he_elu", "batch_norm", "nadam", "one_cycle"]
    folder = tmp_path / "round1" / "combined"
    folder.mkdir()
    document = combination_study(plan, recommendation, results, folder)
    assert document["name"] == "leaky-relu-he-tricks-combined"
    assert not Path(document["base"]).is_absolute()
    assert (folder / document["base"]).resolve() == LEAKY.resolve()
    assert document["seeds"] == [5, 6, 7, 8, 9]  # round 1 ran 0-4
    assert document["metric"] == "test_accuracy" and "budget" not in document
    assert "lr_search" not in document
    assert list(document["variants"]) == ["baseline", "best_single", "combined"]
    assert document["variants"]["baseline"] == {"description": "the recipe as it is"}
    nadam = next(v for v in plan.variants if v.name == "nadam")
    single = document["variants"]["best_single"]
    assert single["set"] == {**nadam.change.set, "train.optimizer.learning_rate": 0.003}
    assert single["description"].startswith("nadam alone, as in round 1: Nadam")
    assert single["description"].endswith("learning rate 0.003, as round 1's search chose")
    combined = document["variants"]["combined"]
    assert set(combined["set"]) == {"model", "train"}  # what the tricks changed, whole
    assert combined["description"] == ("he_elu, batch_norm, nadam, one_cycle applied together "
                                       "(the recommended recipe)")
    (folder / "combined.yaml").write_text(yaml.safe_dump(document, sort_keys=False))
    study = load_study(folder / "combined.yaml")
    assert study.spec["seeds"] == [5, 6, 7, 8, 9] and study.searched() == []
    without_name = {"name": None, "seed": None}
    assert {**study.variant_documents["combined"], **without_name} == {
        **recommendation.document, **without_name}
    assert study.variant_documents["best_single"]["train"]["optimizer"] == {
        "name": "nadam", "learning_rate": 0.003}
    assert {**study.variant_documents["baseline"], **without_name} == {
        **plan.subject.document, **without_name}
    for name, variant in study.spec["variants"].items():
        recipe = recipe_from_dict(variant["recipe"])
        model, _ = build(recipe)
        outputs = model(torch.zeros([2, *recipe.model.input_shape]))
        assert torch.isfinite(outputs).all(), name


def test_a_quick_round_two_has_two_fresh_seeds_and_keeps_the_budget(fixture_data, tmp_path):
    plan = plan_tricks(LEAKY, epochs=3, quick=True)
    values = {"baseline": [0.80, 0.81], "he_relu": [0.85, 0.86], "momentum": [0.83, 0.84]}
    results = round_one(tmp_path, plan, values, rates={"momentum": 0.01})
    assert results.spec["seeds"] == [0, 1]
    document = combination_study(plan, recommend(plan, results), results, tmp_path)
    assert document["seeds"] == [2, 3] and document["budget"] == {"epochs": 3}
    assert document["quick"] == {"seeds": 2, "epochs": 1}
    assert document["variants"]["best_single"]["set"]["model.layers"]  # he_relu helped most
    (tmp_path / "combined.yaml").write_text(yaml.safe_dump(document))
    study = load_study(tmp_path / "combined.yaml", quick=True)
    assert study.spec["seeds"] == [2, 3]
    assert {doc["train"]["epochs"] for doc in study.variant_documents.values()} == {1}
    assert load_study(tmp_path / "combined.yaml").variant_documents["combined"]["train"][
        "epochs"] == 3


def test_one_winner_leaves_nothing_to_combine(fixture_data, tmp_path):
    plan = plan_tricks(LEAKY, ("optimizer",))
    results = round_one(tmp_path, plan, {"baseline": BASE, "adam": shifted(0.05),
                                         "nadam": shifted(0.0)}, rates={"adam": 0.001})
    recommendation = recommend(plan, results)
    assert [name for name, *_ in recommendation.applied] == ["adam"]
    assert combination_study(plan, recommendation, results, tmp_path) is None
    assert run_combination(plan, recommendation, results, tmp_path) is None
    assert not (tmp_path / "combined").exists()


@pytest.mark.parametrize(("single", "combined", "chosen", "why"), [
    (0.02, 0.05, "combined", "Recommended: he_elu, batch_norm, nadam, one_cycle together, "
     "detectably better than nadam alone (the interval of the difference excludes 0)."),
    (0.03, 0.03, "best_single", "Recommended: nadam alone at learning rate 0.003: the "
     "combination was not detectably better than it (the interval of the difference "
     "includes 0), and one change is simpler than 4."),
    (0.03, -0.01, "best_single", "Recommended: nadam alone at learning rate 0.003: the "
     "combination did detectably worse than it."),
], ids=["combined-better", "as-good", "combined-worse"])
def test_the_combination_is_chosen_only_when_it_beats_the_best_single_trick(
    leaky, tmp_path, single, combined, chosen, why
):
    plan, results, recommendation = leaky
    second = round_two(tmp_path / "round2", plan, recommendation, results, {
        "baseline": BASE, "best_single": shifted(single), "combined": shifted(combined)})
    confirmation = confirm(plan, recommendation, results, second)
    assert confirmation.best == "nadam" and confirmation.chosen == chosen
    assert confirmation.seeds == [5, 6, 7, 8, 9] and confirmation.unfinished == 0
    assert confirmation.combined_vs_best.difference == pytest.approx(combined - single)
    assert confirmation.combined_vs_baseline.difference == pytest.approx(combined)
    assert confirmation.lines[0].startswith(
        "Round 2 on fresh seeds 5-9, test_accuracy: combined vs baseline "
        f"{combined:+.4f} [")
    assert f"; combined vs best single (nadam) {combined - single:+.4f} [" in (
        confirmation.lines[0])
    assert confirmation.lines[0].endswith("; 9 comparisons in both rounds (Holm).")
    assert confirmation.lines[1] == why
    if chosen == "combined":
        assert confirmation.document == recommendation.document
    else:
        document = confirmation.document
        assert document["name"] == "leaky-relu-he-recommended"
        assert document["train"]["optimizer"] == {"name": "nadam", "learning_rate": 0.003}
        assert document["model"] == plan.subject.document["model"]
        assert {**document, "train": None, "name": None} == {
            **plan.subject.document, "train": None, "name": None}
        recipe_from_dict(document)
    # -0.01 over seeds whose spread is 0.008: detectably worse than the baseline.
    worse = "The combination did detectably worse than the baseline on the fresh seeds: "
    assert any(line.startswith(worse) for line in confirmation.lines) == (combined < 0)
    luck = "The combination was not detectably better than the baseline on the fresh seeds: "
    assert not any(line.startswith(luck) for line in confirmation.lines)


def test_a_combination_no_better_than_the_baseline_may_be_luck(leaky, tmp_path):
    plan, results, recommendation = leaky
    second = round_two(tmp_path / "round2", plan, recommendation, results, {
        "baseline": BASE, "best_single": shifted(0.0), "combined": [
            0.80, 0.812, 0.79, 0.80, 0.803]})
    lines = confirm(plan, recommendation, results, second).lines
    assert lines[-1] == ("The combination was not detectably better than the baseline on the "
                         "fresh seeds: round 1's gains may have been luck.")


def test_holm_counts_the_comparisons_of_both_rounds(leaky, tmp_path):
    plan, results, recommendation = leaky
    second = round_two(tmp_path / "round2", plan, recommendation, results, {
        "baseline": BASE, "best_single": shifted(0.03), "combined": shifted(0.035)})
    confirmation = confirm(plan, recommendation, results, second)
    first = [v.comparison.p_value for v in results.ranked if v.comparison is not None]
    assert len(first) == len(WINNERS) - 1 == 7
    against_baseline, against_best = (confirmation.combined_vs_baseline,
                                      confirmation.combined_vs_best)
    assert confirmation.comparisons_made == 9
    adjusted = holm([*first, against_baseline.p_value, against_best.p_value])
    assert against_baseline.p_holm == adjusted[-2] and against_best.p_holm == adjusted[-1]
    # Nine comparisons cost more than the two of round 2 alone would.
    assert against_baseline.p_holm > holm([against_baseline.p_value,
                                           against_best.p_value])[0]
    assert f"Holm p {against_best.p_holm:.2g}; 9 comparisons" in confirmation.lines[0]


def test_a_loss_is_better_lower(fixture_data, tmp_path):
    plan = plan_tricks(RECIPES / "architectures" / "adding_problem_lstm.yaml",
                       ("optimizer", "schedule"))
    losses = [0.10, 0.11, 0.09, 0.10, 0.105]
    results = round_one(tmp_path / "round1", plan, {
        "baseline": losses, "momentum": shifted(0.05, losses), "nadam": shifted(-0.04, losses),
        "one_cycle": shifted(-0.02, losses)}, metric="test_loss", rates={"nadam": 0.01})
    recommendation = recommend(plan, results)
    assert [name for name, *_ in recommendation.applied] == ["nadam", "one_cycle"]
    document = combination_study(plan, recommendation, results, tmp_path)
    assert document["metric"] == "test_loss"
    assert document["variants"]["best_single"]["set"]["train.optimizer"]["name"] == "nadam"
    second = round_two(tmp_path / "round2", plan, recommendation, results, {
        "baseline": losses, "best_single": shifted(-0.04, losses),
        "combined": shifted(-0.07, losses)})
    confirmation = confirm(plan, recommendation, results, second)
    assert confirmation.best == "nadam" and confirmation.chosen == "combined"
    assert confirmation.combined_vs_best.difference == pytest.approx(-0.03)
    assert confirmation.lines[1].startswith("Recommended: nadam, one_cycle together")
    # Higher losses from the combination: the best single trick alone.
    second = round_two(tmp_path / "round2-worse", plan, recommendation, results, {
        "baseline": losses, "best_single": shifted(-0.04, losses),
        "combined": shifted(-0.01, losses)})
    confirmation = confirm(plan, recommendation, results, second)
    assert confirmation.chosen == "best_single"
    assert confirmation.lines[1] == ("Recommended: nadam alone at learning rate 0.01: the "
                                     "combination did detectably worse than it.")
    assert confirmation.document["train"]["optimizer"] == {
        "name": "nadam", "learning_rate": 0.01, "global_clipnorm": 1.0}


def test_unfinished_round_two_recommends_nothing_new(leaky, tmp_path):
    plan, results, recommendation = leaky
    second = round_two(tmp_path / "round2", plan, recommendation, results, {
        "baseline": BASE, "best_single": shifted(0.03), "combined": shifted(0.05)},
        unfinished=2)
    confirmation = confirm(plan, recommendation, results, second)
    assert confirmation.unfinished == 6
    assert confirmation.chosen is None and confirmation.document is None
    assert confirmation.combined_vs_baseline is None and confirmation.combined_vs_best is None
    assert confirmation.lines == [
        "Round 2 on fresh seeds 5-9: 6 of 15 runs have not finished: run the same command "
        "again to finish it; until then nothing new is recommended."]


def test_run_combination_trains_round_two_replacing_an_outdated_one_and_resumes(
    fixture_data, tmp_path
):
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(yaml.safe_dump(TINY_RECIPE, sort_keys=False))
    plan = plan_tricks(recipe, quick=True)
    study_dir = tmp_path / "study"
    results = round_one(study_dir, plan, {
        "baseline": [0.50, 0.52], "he_elu": [0.60, 0.61], "momentum": [0.65, 0.66],
        "dropout": [0.50, 0.52]}, rates={"momentum": 0.01})
    recommendation = recommend(plan, results)
    assert [name for name, *_ in recommendation.applied] == ["he_elu", "momentum"]
    # A round 2 of other winners (before round 1 had all its seeds, say): it is replaced.
    other = round_one(tmp_path / "other", plan, {
        "baseline": [0.50, 0.52], "he_elu": [0.60, 0.61], "dropout": [0.62, 0.63]})
    outdated = recommend(plan, other)
    round_two(study_dir / "combined", plan, outdated, other, {
        "baseline": [0.5, 0.5], "best_single": [0.6, 0.6], "combined": [0.7, 0.7]})

    confirmation = run_combination(plan, recommendation, results, study_dir, workers=2,
                                   progress="none")
    assert confirmation.study.exit_code == 0 and confirmation.study.counts == {"completed": 6}
    assert confirmation.seeds == [2, 3] and confirmation.best == "momentum"
    assert confirmation.chosen in ("combined", "best_single")
    assert confirmation.document is not None and confirmation.unfinished == 0
    assert all(math.isfinite(c.difference) for c in (confirmation.combined_vs_baseline,
                                                     confirmation.combined_vs_best))
    folder = study_dir / "combined"
    study = load_study(folder / "combined.yaml", quick=True)
    assert study.spec["variants"]["combined"]["description"].startswith("he_elu, momentum")
    assert study.spec["variants"]["best_single"]["recipe"]["train"]["optimizer"][
        "learning_rate"] == 0.01
    with StudyStore.open(folder / STORE_NAME) as store:
        runs = store.runs()
        assert sorted(run.run_id for run in runs) == sorted(
            f"{name}/seed-{seed}" for name in ("baseline", "best_single", "combined")
            for seed in (2, 3))
        assert {run.recipe["train"]["epochs"] for run in runs} == {1}
    assert confirmation.lines[0] in (folder / "report.md").read_text()
    assert (folder / "report.html").is_file()

    # Run again: nothing trains, the same verdict.
    written = {path: path.stat().st_mtime_ns for path in folder.glob("runs/*/*/result.json")}
    assert len(written) == 6
    again = run_combination(plan, recommendation, results, study_dir, workers=2,
                            progress="none")
    assert {path: path.stat().st_mtime_ns for path in written} == written
    assert again.lines == confirmation.lines and again.chosen == confirmation.chosen
    assert again.document == confirmation.document
