"""Study statistics against independent references: hand formulas, brute force, scipy, simulation."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
from scipy import stats

from tricklab.study.statistics import (
    Comparison,
    Summary,
    analyze,
    compare,
    higher_is_better,
    holm,
    interquartile_mean,
    probability_of_improvement,
    summarize,
    time_to_target,
)

NAN = float("nan")

# Pairs of groups (variant, baseline) with unequal sizes and spreads, as Welch's test expects.
WELCH_DATA = [
    ([0.81, 0.83, 0.82, 0.85, 0.84], [0.80, 0.79, 0.82, 0.81, 0.78]),
    ([1.0, 2.0, 3.0, 4.0], [2.5, 2.6, 2.4, 2.55, 2.45, 2.5, 2.52]),
    ([10.0, 12.0, 9.0], [1.0, 30.0, -5.0, 8.0, 22.0, 14.0]),
    ([0.5, 0.7], [0.2, 0.9, 0.4]),
]


def welch_by_hand(x: list[float], y: list[float]) -> tuple[float, float]:
    """t = (m1-m2)/sqrt(s1²/n1+s2²/n2); Welch–Satterthwaite df; p = 2 sf(|t|, df)."""
    n1, n2 = len(x), len(y)
    m1, m2 = sum(x) / n1, sum(y) / n2
    v1 = sum((v - m1) ** 2 for v in x) / (n1 - 1) / n1
    v2 = sum((v - m2) ** 2 for v in y) / (n2 - 1) / n2
    t = (m1 - m2) / math.sqrt(v1 + v2)
    df = (v1 + v2) ** 2 / (v1**2 / (n1 - 1) + v2**2 / (n2 - 1))
    return t, 2 * stats.t.sf(abs(t), df)


def pairs_by_brute_force(x: list[float], y: list[float]) -> float:
    wins = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a in x for b in y)
    return wins / (len(x) * len(y))


def holm_rejects(p: list[float], alpha: float) -> list[bool]:
    """Holm's procedure as stated: walk the sorted p's, reject while p_(j) <= alpha/(m-j+1)."""
    m = len(p)
    rejected = [False] * m
    for j, index in enumerate(sorted(range(m), key=lambda i: p[i])):
        if p[index] > alpha / (m - j):
            break
        rejected[index] = True
    return rejected


# --- Welch -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("variant", "baseline"), WELCH_DATA)
def test_welch_matches_the_hand_formula(variant, baseline):
    t, p = welch_by_hand(variant, baseline)
    comparison = compare(variant, baseline)
    assert comparison.t_statistic == pytest.approx(t, rel=1e-12)
    assert comparison.p_value == pytest.approx(p, rel=1e-9)
    assert comparison.p_holm == comparison.p_value


@pytest.mark.parametrize(
    ("variant", "baseline"),
    [([1.0], [1.0, 2.0, 3.0]), ([1.0, 2.0], [3.0]), ([0.9, 0.9, 0.9], [0.9, 0.9]), ([], [1.0])],
)
def test_welch_is_nan_when_undefined(variant, baseline):
    comparison = compare(variant, baseline)
    assert math.isnan(comparison.t_statistic)
    assert math.isnan(comparison.p_value)
    assert math.isnan(comparison.p_holm)


def test_welch_with_zero_variances_and_different_means_is_infinitely_significant():
    comparison = compare([0.1, 0.1, 0.1], [0.3, 0.3])
    assert comparison.t_statistic == -math.inf
    assert comparison.p_value == 0.0


# --- Holm ------------------------------------------------------------------------------------


def test_holm_hand_worked_example():
    # Sorted: 0.005, 0.01, 0.03, 0.04 with multipliers m-j+1 = 4, 3, 2, 1:
    # 0.020, 0.030, 0.060, 0.040 → running maximum 0.020, 0.030, 0.060, 0.060.
    # Back in input order [0.01, 0.04, 0.03, 0.005] → [0.03, 0.06, 0.06, 0.02].
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])


@pytest.mark.parametrize(
    ("raw", "adjusted"),
    [
        ([], []),
        ([0.3], [0.3]),
        # Capped at 1: 3 × 0.6 = 1.8 → 1, and the running maximum carries it to 0.7.
        ([0.6, 0.7, 0.01], [1.0, 1.0, 0.03]),
        # NaN passes through and m = 2, not 3: 2 × 0.01 = 0.02, 1 × 0.04 = 0.04.
        ([0.04, NAN, 0.01], [0.04, NAN, 0.02]),
        # Ties get the same adjusted value: 2 × 0.01 then max(0.02, 0.01).
        ([0.01, 0.01], [0.02, 0.02]),
    ],
)
def test_holm_edge_cases(raw, adjusted):
    assert holm(raw) == pytest.approx(adjusted, nan_ok=True)


@pytest.mark.parametrize("seed", range(5))
def test_holm_properties_and_the_step_down_procedure(seed):
    rng = np.random.default_rng(seed)
    raw = list(rng.uniform(0, 0.2, size=8) ** 2)
    adjusted = holm(raw)
    order = np.argsort(raw)
    assert np.all(np.diff(np.array(adjusted)[order]) >= 0)  # monotone in the sorted order
    assert all(a >= r for a, r in zip(adjusted, raw, strict=True))
    assert all(a <= 1.0 for a in adjusted)
    # An adjusted p-value is the smallest level at which Holm's procedure rejects.
    for alpha in (0.001, 0.01, 0.02, 0.05, 0.1, 0.2):
        assert [a <= alpha for a in adjusted] == holm_rejects(raw, alpha)


# --- Probability of improvement and IQM ------------------------------------------------------


@pytest.mark.parametrize(
    ("x", "y"),
    [
        ([1.0, 2.0, 2.0, 3.0], [2.0, 2.0, 0.0]),
        ([0.8, 0.8, 0.8], [0.8, 0.8]),
        ([5.0, 6.0, 7.0], [1.0, 2.0]),
        ([0.1, 0.5, 0.3, 0.5, 0.9], [0.5, 0.2, 0.6, 0.5]),
    ],
)
def test_probability_of_improvement_matches_pairs_and_mann_whitney(x, y):
    p = probability_of_improvement(x, y)
    assert p == pytest.approx(pairs_by_brute_force(x, y))
    u = stats.mannwhitneyu(x, y, alternative="two-sided").statistic
    assert p == pytest.approx(u / (len(x) * len(y)))
    assert p + probability_of_improvement(y, x) == pytest.approx(1.0)


def test_probability_of_improvement_of_an_empty_group_is_nan():
    assert math.isnan(probability_of_improvement([], [1.0]))
    assert math.isnan(probability_of_improvement([1.0], [None, NAN]))


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        # Eight values: drop the two lowest and two highest, mean of 3, 4, 5, 6 = 4.5.
        ([7.0, 1.0, 100.0, 4.0, 3.0, -50.0, 6.0, 5.0], 4.5),
        ([2.0, 4.0, 6.0], 4.0),  # fewer than four values: nothing is cut
        ([1.0, 2.0, NAN, 3.0, 10.0, None], 2.5),  # NaN and None dropped, then cut one each side
    ],
)
def test_interquartile_mean_by_hand(values, expected):
    assert interquartile_mean(values) == pytest.approx(expected)


def test_interquartile_mean_of_nothing_is_nan():
    assert math.isnan(interquartile_mean([]))


# --- Summaries and the bootstrap -------------------------------------------------------------


def test_summary_fields():
    values = [0.8, 0.9, 0.85, 0.7, 0.95]
    summary = summarize(values)
    mean = sum(values) / 5
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / 4)
    assert summary.n == 5
    assert summary.mean == pytest.approx(mean)
    assert summary.std == pytest.approx(std)
    assert summary.ci_low < mean < summary.ci_high
    assert summary.iqm == pytest.approx(np.mean([0.8, 0.85, 0.9]))


def test_summary_of_one_and_of_no_value():
    one = summarize([0.7])
    assert (one.n, one.mean, one.ci_low, one.ci_high, one.iqm) == (1, 0.7, 0.7, 0.7, 0.7)
    assert math.isnan(one.std)
    none = summarize([NAN, None])
    assert none.n == 0
    assert all(math.isnan(getattr(none, f)) for f in ("mean", "std", "ci_low", "ci_high", "iqm"))


def test_summary_drops_non_finite_values():
    # Diverged runs are reported elsewhere; an infinite loss must not turn every number into inf.
    clean = summarize([0.3, 0.4, 0.5])
    assert summarize([0.3, math.inf, 0.4, NAN, None, 0.5, -math.inf]) == clean
    assert clean.n == 3


def test_bootstrap_interval_shrinks_with_more_seeds_and_widens_with_confidence():
    rng = np.random.default_rng(7)
    few, many = rng.normal(0.0, 1.0, size=10), rng.normal(0.0, 1.0, size=100)
    width = lambda s: s.ci_high - s.ci_low  # noqa: E731
    # The standard error falls as 1/sqrt(n): ten times the seeds, about a third of the width.
    assert width(summarize(many)) < width(summarize(few)) / 2
    assert width(summarize(few, confidence=0.99)) > width(summarize(few, confidence=0.8))


def test_bootstrap_coverage_of_the_mean():
    # The percentile bootstrap of the mean is a normal interval with the standard error
    # shrunk by sqrt((n-1)/n), so at n = 10 it covers about 91%, not 95%. An interval
    # built on the standard deviation instead of the standard error would cover ~100%,
    # one a sqrt(n) too narrow ~25%.
    rng = np.random.default_rng(2024)
    covered = 0
    for trial in range(300):
        summary = summarize(rng.normal(3.0, 2.0, size=10), seed=trial)
        covered += summary.ci_low <= 3.0 <= summary.ci_high
    assert 0.88 <= covered / 300 <= 0.98


def test_bootstrap_is_deterministic_for_a_seed():
    values = [0.81, 0.84, 0.79, 0.86, 0.83, 0.80]
    assert summarize(values, seed=3) == summarize(values, seed=3)
    assert compare(values, values[::-1], seed=3) == compare(values, values[::-1], seed=3)
    assert summarize(values, seed=3).ci_low != summarize(values, seed=4).ci_low


@pytest.mark.parametrize("confidence", [0.0, 1.0, 95])
def test_confidence_outside_zero_one_is_rejected(confidence):
    with pytest.raises(ValueError, match="confidence"):
        summarize([1.0, 2.0], confidence=confidence)


# --- compare ---------------------------------------------------------------------------------


def test_compare_clearly_separated_groups():
    variant, baseline = [0.90, 0.91, 0.92, 0.905, 0.915], [0.80, 0.81, 0.82, 0.805, 0.815]
    better = compare(variant, baseline)
    assert better.difference == pytest.approx(0.1)
    assert 0 < better.ci_low <= better.difference <= better.ci_high
    assert better.detectable
    assert better.p_improvement == 1.0
    worse = compare(baseline, variant)
    assert worse.difference == pytest.approx(-0.1)
    assert worse.ci_high < 0
    assert worse.detectable
    assert worse.p_improvement == 0.0


def test_compare_identical_groups_is_not_detectable():
    values = [0.80, 0.83, 0.81, 0.85, 0.79]
    same = compare(values, list(values))
    assert same.difference == 0.0
    assert same.ci_low < 0 < same.ci_high
    assert not same.detectable
    assert same.p_improvement == 0.5
    assert same.p_value == pytest.approx(1.0)


def test_lower_is_better_flips_the_probability_of_improvement():
    variant, baseline = [0.30, 0.25, 0.35, 0.28], [0.40, 0.33, 0.45, 0.38, 0.31]
    as_accuracy = compare(variant, baseline, higher_is_better=True)
    as_loss = compare(variant, baseline, higher_is_better=False)
    assert as_loss.p_improvement == pytest.approx(1.0 - as_accuracy.p_improvement)
    assert as_loss.p_improvement == pytest.approx(pairs_by_brute_force(baseline, variant))
    assert as_loss.difference == as_accuracy.difference < 0
    assert as_loss.p_value == as_accuracy.p_value


def test_bootstrap_interval_of_the_difference_has_the_normal_width():
    # With 40 seeds each, the interval approaches difference ± z·SE (Welch's standard error,
    # each variance with divisor n as the bootstrap's resamples have).
    rng = np.random.default_rng(11)
    x, y = rng.normal(1.0, 1.0, size=40), rng.normal(0.0, 2.0, size=40)
    comparison = compare(x, y)
    se = math.sqrt(x.var() / 40 + y.var() / 40)
    assert comparison.ci_high - comparison.ci_low == pytest.approx(2 * 1.95996 * se, rel=0.08)
    centre = (comparison.ci_high + comparison.ci_low) / 2
    assert centre == pytest.approx(x.mean() - y.mean(), abs=0.1 * se)


@pytest.mark.parametrize(("variant", "baseline"), [([0.9], [0.1, 0.2, 0.3]), ([0.9, 0.8], [0.1])])
def test_compare_with_a_single_value_has_no_interval(variant, baseline):
    comparison = compare(variant, baseline)
    assert comparison.difference > 0
    assert math.isnan(comparison.ci_low)
    assert math.isnan(comparison.ci_high)
    assert not comparison.detectable


# --- analyze ---------------------------------------------------------------------------------

STUDY = {
    "baseline": [0.80, 0.81, 0.79, 0.82, 0.80],
    "batch_norm": [0.85, 0.86, 0.84, 0.87, 0.85],
    "dropout": [0.805, 0.81, 0.80, 0.815, 0.80],
    "bad_init": [0.60, 0.70, 0.65, 0.62, 0.68],
}


def test_analyze_ranks_and_compares_with_the_baseline():
    analysis = analyze(STUDY, "baseline", "test_accuracy", resamples=2000)
    assert [v.name for v in analysis.variants] == ["batch_norm", "dropout", "baseline", "bad_init"]
    assert [v.rank for v in analysis.variants] == [1, 2, 3, 4]
    by_name = {v.name: v for v in analysis.variants}
    assert by_name["baseline"].comparison is None
    assert by_name["batch_norm"].comparison.detectable
    assert by_name["bad_init"].comparison.difference < 0
    assert by_name["batch_norm"].summary == summarize(STUDY["batch_norm"], resamples=2000)
    assert (analysis.metric, analysis.baseline, analysis.confidence) == (
        "test_accuracy",
        "baseline",
        0.95,
    )
    assert analysis.higher_is_better
    assert analysis.warnings == []


def test_analyze_lower_is_better_reverses_the_ranking():
    losses = {"baseline": [0.5, 0.52, 0.48], "warmup": [0.3, 0.32, 0.31], "none": [0.9, 0.8]}
    analysis = analyze(losses, "baseline", "val_loss", higher_is_better=False, resamples=500)
    assert [v.name for v in analysis.variants] == ["warmup", "baseline", "none"]
    assert {v.name: v for v in analysis.variants}["warmup"].comparison.p_improvement == 1.0


def test_analyze_ties_keep_the_input_order():
    tied = {"b": [1.0, 2.0], "a": [2.0, 1.0], "c": [1.5, 1.5]}
    analysis = analyze(tied, "a", "score", resamples=100, min_seeds=1)
    assert [v.name for v in analysis.variants] == ["b", "a", "c"]


def test_analyze_applies_holm_across_the_variants():
    analysis = analyze(STUDY, "baseline", "test_accuracy", resamples=500)
    compared = [v.comparison for v in analysis.variants if v.comparison is not None]
    assert len(compared) == 3
    raw = [c.p_value for c in compared]
    assert [c.p_holm for c in compared] == pytest.approx(holm(raw))
    # The correction bites: the smallest p-value is multiplied by the 3 variants.
    smallest = min(compared, key=lambda c: c.p_value)
    assert smallest.p_holm == pytest.approx(3 * smallest.p_value)
    for name, values in STUDY.items():
        if name != "baseline":
            assert compare(values, STUDY["baseline"]).p_value in raw


def test_analyze_warns_below_the_minimum_number_of_seeds():
    few = {"baseline": [0.8, 0.81, 0.79, 0.82, 0.8], "mixup": [0.83, 0.84, 0.82]}
    analysis = analyze(few, "baseline", "test_accuracy", resamples=100)
    assert analysis.warnings == ["mixup: only 3 seeds; intervals are wide (5 or more recommended)"]
    assert analyze(few, "baseline", "test_accuracy", resamples=100, min_seeds=3).warnings == []


def test_analyze_keeps_a_variant_without_values():
    study = {**STUDY, "crashed": [NAN, None]}
    analysis = analyze(study, "baseline", "test_accuracy", resamples=200)
    last = analysis.variants[-1]
    assert (last.name, last.rank, last.summary.n, last.comparison) == ("crashed", 5, 0, None)
    assert math.isnan(last.summary.mean)
    assert len(analysis.warnings) == 1
    assert analysis.warnings[0].startswith("crashed: ")
    # Only the three variants with values count in the Holm correction.
    compared = [v.comparison for v in analysis.variants if v.comparison is not None]
    assert [c.p_holm for c in compared] == pytest.approx(holm([c.p_value for c in compared]))


def test_analyze_with_an_empty_baseline_compares_nothing():
    analysis = analyze({"baseline": [], "other": [0.8] * 5}, "baseline", "acc", resamples=100)
    assert all(v.comparison is None for v in analysis.variants)
    assert [v.name for v in analysis.variants] == ["other", "baseline"]


def test_analyze_drops_nan_values():
    dirty = {k: [*v, NAN] for k, v in STUDY.items()}
    dirty["dropout"] = [None, *STUDY["dropout"]]
    assert analyze(dirty, "baseline", "acc", resamples=300) == analyze(
        STUDY, "baseline", "acc", resamples=300
    )


def test_analyze_rejects_an_unknown_baseline():
    with pytest.raises(ValueError, match=r"baseline 'sgd' is not one of the variants"):
        analyze(STUDY, "sgd", "test_accuracy")


# --- time to target --------------------------------------------------------------------------


def test_time_to_target_by_hand():
    # Target 0.85 reached at epoch 3 after 2 + 2.5 + 3 = 7.5 s; at epoch 2 after 1 + 1.5 = 2.5 s
    # (later dips do not matter); never; at epoch 2 without times. Medians: 2 epochs, 5 s.
    histories = [
        {"val_accuracy": [0.60, 0.75, 0.86, 0.90], "time_s": [2.0, 2.5, 3.0, 3.0]},
        {"val_accuracy": [0.70, 0.85, 0.80], "time_s": [1.0, 1.5, 1.0]},
        {"val_accuracy": [0.50, 0.60, 0.70], "time_s": [1.0, 1.0, 1.0]},
        {"val_accuracy": [0.84, 0.88]},
    ]
    result = time_to_target(histories, "val_accuracy", 0.85)
    assert result.target == 0.85
    assert result.epochs == [3, 2, None, 2]
    assert result.seconds == pytest.approx([7.5, 2.5, None, None])
    assert result.reached == 3
    assert result.median_epochs == 2.0
    assert result.median_seconds == pytest.approx(5.0)


def test_time_to_target_lower_is_better_on_a_loss():
    histories = [
        {"val_loss": [0.9, 0.6, 0.4, 0.5], "time_s": [1.0, 1.0, 1.0, 1.0]},
        {"val_loss": [0.8, None, 0.39], "time_s": [2.0, 2.0, 2.0]},
    ]
    result = time_to_target(histories, "val_loss", 0.4, higher_is_better=False)
    assert result.epochs == [3, 3]
    assert result.seconds == pytest.approx([3.0, 6.0])
    assert result.median_epochs == 3.0
    # Read as higher-is-better, the very first epoch already "reaches" 0.4.
    assert time_to_target(histories, "val_loss", 0.4).epochs == [1, 1]


def test_time_to_target_that_no_run_reaches():
    result = time_to_target([{"acc": [0.1, 0.2]}, {"other": [1.0]}], "acc", 0.9)
    assert (result.epochs, result.seconds, result.reached) == ([None, None], [None, None], 0)
    assert result.median_epochs is None
    assert result.median_seconds is None


# --- conventions -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("metric", "expected"),
    [
        ("test_accuracy", True),
        ("val_accuracy", True),
        ("test_loss", False),
        ("Val_Loss", False),
        ("train_loss", False),
        # from the metric registry: names without "loss" or "error" in them
        ("test_rmse", False),
        ("val_mae", False),
        ("test_mse", False),
        ("mae", False),
        ("test_auc", True),
        ("val_precision", True),
        ("test_recall", True),
        ("val_top_k_accuracy", True),
        # unregistered names are guessed from their words
        ("top1_error", False),
        ("val_custom_loss", False),
        ("epochs", True),
    ],
)
def test_higher_is_better(metric, expected):
    assert higher_is_better(metric) is expected


def test_every_registered_metric_is_ranked_in_its_direction():
    """A lower-is-better metric ranks its lowest variant first; a higher-is-better one its highest."""
    from tricklab.train.metrics import metrics

    values = {"baseline": [0.50, 0.52, 0.51, 0.49], "low": [0.30, 0.31, 0.29, 0.30],
              "high": [0.70, 0.71, 0.69, 0.70]}
    for info in metrics:
        better = higher_is_better(f"test_{info.name}")
        assert better is info.factory.higher_is_better
        analysis = analyze(values, "baseline", f"test_{info.name}", higher_is_better=better,
                           resamples=200)
        first = next(v.name for v in analysis.variants if v.rank == 1)
        assert first == ("high" if better else "low"), info.name


def test_results_are_plain_frozen_records():
    summary = summarize([1.0, 2.0, 3.0], resamples=100)
    assert isinstance(summary, Summary)
    assert isinstance(compare([1.0, 2.0], [2.0, 3.0], resamples=100), Comparison)
    assert all(type(getattr(summary, f)) in (int, float) for f in summary.__dataclass_fields__)
    with pytest.raises(AttributeError):
        summary.mean = 0.0  # type: ignore[misc]


def test_the_module_does_not_import_torch():
    code = "import sys, tricklab.study.statistics; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
