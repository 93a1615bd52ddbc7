"""`tricklab tricks` before its study: the doctor's findings first, range tests, a time budget."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tricklab.errors import UserInputError
from tricklab.recipe import recipe_from_dict
from tricklab.run import build
from tricklab.run.tricks import arrange, plan_tricks
from tricklab.run.tricks_probe import (
    SAFETY,
    BudgetPlan,
    Planning,
    Probe,
    changed_document,
    duration,
    fit_budget,
    focus_order,
    parse_budget,
    probe_baseline,
    remedies_first,
    seconds,
    step_seconds,
)

from ..conftest import REPOSITORY, TINY_RECIPE

LEAKY = REPOSITORY / "recipes" / "chapter11" / "leaky_relu_he.yaml"


@pytest.mark.parametrize(("text", "value"), [
    ("90s", 90), ("20m", 1200), ("1.5h", 5400), ("15", 900), (" 2m ", 120)])
def test_budgets_are_read_in_seconds_minutes_or_hours(text, value):
    assert parse_budget(text) == value


@pytest.mark.parametrize("text", ["0m", "abc", "-5m", "5d", "", "1e3s"])
def test_a_bad_budget_is_one_line(text):
    with pytest.raises(UserInputError) as error:
        parse_budget(text)
    assert str(error.value) == (f"--budget: {text!r} is not a duration; write e.g. 90s, 20m "
                                "or 1.5h")


def test_durations_and_seconds_read_as_written():
    assert [duration(value) for value in (41.54, 754.2, 3725)] == ["41.5s", "12m34s",
                                                                    "1h02m05s"]
    assert [seconds(value) for value in (0.01234, 8.04)] == ["0.012 s", "8.0 s"]


def test_findings_move_their_remedies_to_the_front(fixture_data):
    names = [variant.name for variant in plan_tricks(LEAKY).variants]
    assert remedies_first(names, []) == [] and focus_order(names, []) == names
    vanishing = focus_order(names, ["vanishing_gradients"])
    assert vanishing[:4] == ["he_relu", "he_elu", "self_normalizing", "batch_norm"]
    assert sorted(vanishing) == sorted(names)
    # Exploding gradients: clipping (none applies to a dense net), then initialization.
    assert remedies_first(names, ["exploding_gradients"])[:1] == ["he_relu"]
    # Dead units: the leaky activations before plain ReLU, which is not a remedy.
    assert remedies_first(names, ["dead_units"]) == ["he_elu", "self_normalizing"]
    rates = remedies_first(names, ["learning_rate_too_low"])
    assert rates == ["momentum", "nesterov", "rmsprop", "adam", "nadam", "one_cycle",
                     "exponential_decay", "performance"]


PROBE = Probe("healthy", [], True, 100, fit_seconds=2.0, start_seconds=1.0)


def planned(kept: int, seeds: int, epochs: int, costs: list[float] | None = None) -> float:
    """The budget's estimate re-derived: each run starts (1 s) then trains (2 s an epoch
    times its variant's cost), one at a time, with the second round's 3 variants at the
    kept ones' mean cost when two or more are kept."""
    costs = (costs or [1.0] * 8)[:kept]
    epoch = [1.0 + 2.0 * epochs * cost for cost in [1.0, *costs]]
    second = 3 * (1.0 + 2.0 * epochs * sum(costs) / kept) if kept >= 2 else 0.0
    return SAFETY * seeds * (sum(epoch) + second)


@pytest.mark.parametrize("budget", [120.0, 300.0, 1000.0, 4000.0])
def test_the_budget_keeps_variants_then_epochs_then_seeds(budget):
    variants = [f"v{index}" for index in range(8)]
    plan = fit_budget(variants, PROBE, budget, 10.0, max_epochs=10, max_seeds=5, workers=1)
    available = budget - 10.0 - 5.0
    kept = len(variants) - len(plan.left_out)
    assert plan.left_out == variants[kept:] and plan.seeds >= 3
    assert plan.estimate_seconds == pytest.approx(planned(kept, plan.seeds, plan.epochs))
    assert plan.estimate_seconds <= available
    # Nothing more would fit: another variant (at 1 epoch), epoch or seed.
    if kept < len(variants):
        assert planned(kept + 1, 3, 1) > available
    if plan.epochs < 10:
        assert planned(kept, 3, plan.epochs + 1) > available
    if plan.seeds < 5:
        assert planned(kept, plan.seeds + 1, plan.epochs) > available


def test_a_budget_too_small_says_what_an_epoch_takes():
    with pytest.raises(UserInputError) as error:
        fit_budget(["a", "b"], PROBE, 20.0, 3.0, max_epochs=10, max_seeds=5, workers=1)
    assert str(error.value) == (
        "--budget: 20.0s is too short: one epoch of the baseline takes 2.0 s on one core "
        "(and 1.0 s to start), so the least study (the baseline and one variant, 3 seeds of "
        f"1 epoch) needs about {duration(planned(1, 3, 1) + 8.0)}; give more time or leave "
        "--budget out")


def test_the_planning_is_read_back_only_for_the_same_command(tmp_path):
    key = {"recipe": {"name": "r"}, "seeds": 5, "budget_seconds": 900.0}
    planning = Planning(key, PROBE, {"adam": 0.003, "one_cycle": None},
                        BudgetPlan(900.0, 3, 4, ["l2"], 800.0, 60, 2.0), 12.5)
    (tmp_path / "planning.json").write_text(json.dumps(planning.to_json()))
    assert Planning.read(tmp_path, key) == planning
    assert Planning.read(tmp_path, {**key, "seeds": 3}) is None
    assert Planning.read(tmp_path / "elsewhere", key) is None


def deep_sigmoid(folder: Path) -> Path:
    """The chapter's opening problem, small: 8 sigmoid layers drawn from N(0, 1)."""
    layer = {"dense": {"units": 32, "activation": "sigmoid",
                       "kernel_initializer": {"random_normal": {"stddev": 1.0}}}}
    document = {**TINY_RECIPE, "name": "deep-sigmoid",
                "model": {"input_shape": [28, 28], "layers": [
                    "flatten", *[layer] * 8, {"dense": {"units": 10, "activation": "softmax"}}]}}
    path = folder / "deep.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def test_the_doctor_probe_puts_the_remedies_of_a_deep_sigmoid_net_first(fixture_data, tmp_path):
    recipe = deep_sigmoid(tmp_path)
    plan = plan_tricks(recipe)
    probe, splits = probe_baseline(recipe, tmp_path / "scratch", one_epoch=True)
    assert len(splits.train.y) == len(load_training(plan))
    assert probe.verdict == "unhealthy" and "vanishing_gradients" in probe.findings
    # One epoch: the fixture's training images in batches of 32.
    assert probe.one_epoch and probe.steps == -(-len(load_training(plan)) // 32)
    assert probe.fit_seconds > 0 and probe.start_seconds > 0
    assert (tmp_path / "scratch" / "doctor" / "doctor.json").is_file()
    arranged = arrange(plan, Planning({}, probe, {}, None, 0.0))
    first = [variant.trick.family for variant in arranged.variants[:4]]
    assert set(first) <= {"init_activation", "batch_norm"}
    assert sorted(v.name for v in arranged.variants) == sorted(v.name for v in plan.variants)
    lines = probe.lines(remedies_first([v.name for v in plan.variants], probe.findings))
    assert lines[0].startswith("The doctor found the baseline unhealthy: vanishing_gradients")


def load_training(plan):
    from tricklab.run.runner import load_data

    return load_data(plan.subject.recipe).train.y


def test_range_test_rates_and_the_budget_shape_the_study(fixture_data, tmp_path):
    plan = plan_tricks(LEAKY, ("optimizer", "schedule", "regularization"))
    budget = BudgetPlan(600.0, 4, 2, ["early_stopping", "max_norm"], 500.0, 40, 2.0)
    arranged = arrange(plan, Planning({}, PROBE, {"adam": 0.0021, "nadam": None,
                                                  "one_cycle": 0.05}, budget, 3.0))
    variants = {variant.name: variant for variant in arranged.variants}
    assert "early_stopping" not in variants and "max_norm" not in variants
    assert arranged.skipped["max_norm"] == "left out for time by --budget 10m00s"
    assert (arranged.seeds, arranged.epochs) == (4, 2)
    adam, nadam = variants["adam"], variants["nadam"]
    assert adam.change.set["train.optimizer"] == {"name": "adam", "learning_rate": 0.0021}
    assert not adam.searched and adam.description.endswith(
        "learning rate 0.0021 from lr-find (the range test, cheaper than a search under "
        "--budget)")
    assert nadam.change.set["train.optimizer"]["learning_rate"] == 0.001  # Keras's default
    assert nadam.description.endswith("Keras's default (lr-find found no minimum)")
    assert variants["one_cycle"].change.set["train.schedule"] == {
        "one_cycle": {"max_learning_rate": 0.05}}
    assert "climbs to 0.05 (from lr-find) and back" in variants["one_cycle"].description
    document = yaml.safe_load(arranged.study_text(tmp_path))
    # Optimizers without a range test's rate are still searched by the study.
    assert document["lr_search"]["variants"] == ["momentum", "nesterov", "rmsprop"]
    assert document["budget"] == {"epochs": 2}
    assert document["seeds"] == 4
    for variant in arranged.variants:
        build(recipe_from_dict(changed_document(plan.subject.document, variant.change.set)))


def test_costlier_variants_take_more_of_the_budget():
    variants = [f"v{index}" for index in range(8)]
    costs = {"v0": 1.8, "v1": 1.3, "v5": 2.0}
    weights = [costs.get(name, 1.0) for name in variants]
    even = fit_budget(variants, PROBE, 1000.0, 10.0, max_epochs=10, max_seeds=5, workers=1)
    plan = fit_budget(variants, PROBE, 1000.0, 10.0, max_epochs=10, max_seeds=5, workers=1,
                      costs=costs)
    assert plan.estimate_seconds == pytest.approx(
        planned(8, plan.seeds, plan.epochs, weights))
    assert plan.epochs < even.epochs
    assert planned(8, 3, plan.epochs + 1, weights) > 1000.0 - 15.0


def test_each_variant_step_is_timed(fixture_data, tmp_path):
    plan = plan_tricks(write_tiny(tmp_path), ("batch_norm", "optimizer"))
    documents = {"baseline": plan.subject.document} | {
        variant.name: changed_document(plan.subject.document, variant.change.set)
        for variant in plan.variants}
    per_step = step_seconds(documents, "tiny.yaml")
    assert list(per_step) == list(documents)
    # A step of the 784-16-10 MLP on one thread: well under 50 ms, and not nothing.
    assert all(1e-6 < value < 0.05 for value in per_step.values()), per_step


def write_tiny(folder: Path) -> Path:
    path = folder / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY_RECIPE, sort_keys=False))
    return path
