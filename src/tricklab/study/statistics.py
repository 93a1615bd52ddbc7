"""Statistics for comparing training variants across seeds: does a trick help, and by how much?

A single run says little: two seeds of the same recipe can differ by more than a
trick's effect. Each variant is therefore trained on several seeds and its final
metric summarised by:

- the mean with a 95% bootstrap confidence interval (where the true mean
  plausibly lies) and the interquartile mean (IQM, robust to one odd seed);
- against the baseline: the difference of means with its bootstrap interval (a
  trick "helps detectably" only when that interval excludes 0), the probability
  of improvement (how often a variant seed beats a baseline seed; 0.5 is a coin
  flip) and Welch's t-test, whose p-values are Holm-corrected because testing
  many tricks at once makes some look good by chance.

This follows rliable (Agarwal et al. 2021, "Deep Reinforcement Learning at the
Edge of the Statistical Precipice", NeurIPS). Callers pass finite metrics only:
diverged runs are reported separately, and NaN, infinite and `None` values are
dropped here rather than poisoning every number. Everything is deterministic:
bootstraps draw from `numpy.random.default_rng(seed)`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
from scipy import stats

NAN = math.nan


@dataclass(frozen=True)
class Summary:
    """One variant's values: count, mean, sample std (ddof=1), bootstrap CI of the mean, IQM."""

    n: int
    mean: float
    std: float
    ci_low: float
    ci_high: float
    iqm: float


@dataclass(frozen=True)
class Comparison:
    """A variant against the baseline: mean difference with its CI, P(improvement), Welch test.

    `p_holm` is the Holm-adjusted `p_value`; `detectable` is True when the CI of the
    difference excludes 0 (otherwise: "no detectable difference").
    """

    difference: float
    ci_low: float
    ci_high: float
    p_improvement: float
    t_statistic: float
    p_value: float
    p_holm: float
    detectable: bool


@dataclass(frozen=True)
class VariantAnalysis:
    """A variant's summary, its comparison (None for the baseline) and its rank (1 = best)."""

    name: str
    summary: Summary
    comparison: Comparison | None
    rank: int


@dataclass(frozen=True)
class StudyAnalysis:
    """Every variant of a study on one metric, ranked best first, with warnings to show."""

    metric: str
    higher_is_better: bool
    baseline: str
    confidence: float
    variants: list[VariantAnalysis]
    warnings: list[str]


@dataclass(frozen=True)
class TimeToTarget:
    """Per run, the first 1-based epoch reaching a target and the seconds spent until then."""

    target: float
    epochs: list[int | None]
    seconds: list[float | None]
    reached: int
    median_epochs: float | None
    median_seconds: float | None


def _floats(values: Sequence[float | None]) -> np.ndarray:
    # None is a missing value; as NaN it never compares true (a missing epoch reaches no
    # target) and `_finite` drops it with the NaNs.
    return np.array([NAN if v is None else v for v in values], dtype=float)


def _finite(values: Sequence[float | None]) -> np.ndarray:
    array = _floats(values)
    return array[np.isfinite(array)]


def _check(confidence: float, resamples: int) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie strictly between 0 and 1, got {confidence}")
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1, got {resamples}")


def _bootstrap_means(x: np.ndarray, resamples: int, rng: np.random.Generator) -> np.ndarray:
    # One index matrix instead of a Python loop: 10,000 × 30 draws take a few milliseconds.
    return x[rng.integers(0, x.size, size=(resamples, x.size))].mean(axis=1)


def _percentiles(draws: np.ndarray, confidence: float) -> tuple[float, float]:
    tail = 100.0 * (1.0 - confidence) / 2.0
    low, high = np.percentile(draws, [tail, 100.0 - tail])
    return float(low), float(high)


def interquartile_mean(values: Sequence[float]) -> float:
    """Interquartile mean: the mean of the middle 50% of values (rliable's IQM).

    IQM = mean of the values left after cutting `floor(n/4)` from each end of the
    sorted values (`scipy.stats.trim_mean(values, 0.25)`); less sensitive to one
    outlying seed than the mean, less wasteful than the median. Reference: Agarwal
    et al. 2021, NeurIPS.

    Args:
        values: Metric values, one per seed; NaN and `None` are dropped.

    Returns:
        The IQM, or NaN when no values remain.
    """
    x = _finite(values)
    return float(stats.trim_mean(x, 0.25)) if x.size else NAN


def probability_of_improvement(x: Sequence[float], y: Sequence[float]) -> float:
    """Probability that a value of `x` beats a value of `y`, ties counting half.

    P(X > Y) + ½ P(X = Y) over all pairs, which equals the Mann–Whitney U statistic
    of `x` divided by n·m (Mann & Whitney 1947; rliable's probability of improvement,
    Agarwal et al. 2021). 0.5 means neither tends to be larger.

    Args:
        x: Values of the candidate (e.g. a variant's seeds).
        y: Values it is compared against (e.g. the baseline's seeds).

    Returns:
        The probability, or NaN when either group is empty.
    """
    a, b = _finite(x), _finite(y)
    if not a.size or not b.size:
        return NAN
    a, b = a[:, None], b[None, :]
    return float(np.mean(a > b) + 0.5 * np.mean(a == b))


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm–Bonferroni step-down adjusted p-values (Holm 1979).

    With the m finite p-values sorted ascending, p₍₁₎ ≤ … ≤ p₍ₘ₎, the adjusted value
    of p₍ᵢ₎ is min(1, max over j ≤ i of (m − j + 1)·p₍ⱼ₎): rejecting where it is below
    α controls the family-wise error rate at α without assuming independence.

    Args:
        p_values: Raw p-values; NaN entries are returned as NaN and not counted in m.

    Returns:
        Adjusted p-values in the input order.
    """
    p = _floats(p_values)
    adjusted = np.full(p.shape, NAN)
    finite = np.flatnonzero(~np.isnan(p))
    order = finite[np.argsort(p[finite], kind="stable")]
    m = order.size
    scaled = (m - np.arange(m)) * p[order]
    # The running maximum keeps the adjusted values in the same order as the raw ones.
    adjusted[order] = np.minimum(1.0, np.maximum.accumulate(scaled))
    return [float(v) for v in adjusted]


def summarize(
    values: Sequence[float], confidence: float = 0.95, resamples: int = 10_000, seed: int = 0
) -> Summary:
    """Count, mean, sample standard deviation, bootstrap CI of the mean and IQM.

    The interval is the percentile bootstrap (Efron 1979): the (1−c)/2 and (1+c)/2
    quantiles of the means of `resamples` resamples drawn with replacement.

    Args:
        values: Metric values, one per seed; NaN and `None` are dropped.
        confidence: Confidence level of the interval. Defaults to `0.95`.
        resamples: Number of bootstrap resamples. Defaults to `10_000`.
        seed: Seed of the bootstrap's random generator. Defaults to `0`.

    Returns:
        The summary; its fields are NaN when no values remain, the interval is the
        mean itself for a single value and the standard deviation (ddof=1) needs two.
    """
    _check(confidence, resamples)
    x = _finite(values)
    if not x.size:
        return Summary(0, NAN, NAN, NAN, NAN, NAN)
    mean = float(x.mean())
    std = float(x.std(ddof=1)) if x.size > 1 else NAN
    if x.size == 1:
        low = high = mean
    else:
        low, high = _percentiles(
            _bootstrap_means(x, resamples, np.random.default_rng(seed)), confidence
        )
    return Summary(int(x.size), mean, std, low, high, interquartile_mean(x))


def _welch(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    if x.size < 2 or y.size < 2:
        return NAN, NAN
    if np.ptp(x) == 0 and np.ptp(y) == 0:
        # Rounding would turn a zero variance into a tiny one and a huge t; decide exactly.
        return (NAN, NAN) if x[0] == y[0] else (math.copysign(math.inf, x[0] - y[0]), 0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        result = stats.ttest_ind(x, y, equal_var=False)
    return float(result.statistic), float(result.pvalue)


def compare(
    variant: Sequence[float],
    baseline: Sequence[float],
    higher_is_better: bool = True,
    confidence: float = 0.95,
    resamples: int = 10_000,
    seed: int = 0,
) -> Comparison:
    """Compare a variant's values with the baseline's: effect size, its interval and tests.

    difference = mean(variant) − mean(baseline), with a percentile bootstrap interval
    (Efron 1979) resampling each group independently; probability of improvement
    (Agarwal et al. 2021); Welch's t = (m₁ − m₂)/√(s₁²/n₁ + s₂²/n₂) with its two-sided
    p-value (Welch 1947). The difference is detectable when its interval excludes 0.

    Args:
        variant: The variant's values, one per seed; NaN and `None` are dropped.
        baseline: The baseline's values, one per seed; NaN and `None` are dropped.
        higher_is_better: Whether larger values are improvements; when False the
            probability of improvement counts smaller values. Defaults to `True`.
        confidence: Confidence level of the interval. Defaults to `0.95`.
        resamples: Number of bootstrap resamples. Defaults to `10_000`.
        seed: Seed of the bootstrap's random generator. Defaults to `0`.

    Returns:
        The comparison, with `p_holm` equal to `p_value` (see `analyze` for the correction).
    """
    _check(confidence, resamples)
    x, y = _finite(variant), _finite(baseline)
    difference = float(x.mean() - y.mean()) if x.size and y.size else NAN
    low = high = NAN
    if x.size > 1 and y.size > 1:
        rng = np.random.default_rng(seed)
        draws = _bootstrap_means(x, resamples, rng) - _bootstrap_means(y, resamples, rng)
        low, high = _percentiles(draws, confidence)
    better, worse = (x, y) if higher_is_better else (y, x)
    t, p = _welch(x, y)
    return Comparison(
        difference=difference,
        ci_low=low,
        ci_high=high,
        p_improvement=probability_of_improvement(better, worse),
        t_statistic=t,
        p_value=p,
        p_holm=p,
        detectable=bool(low > 0.0 or high < 0.0),  # False for NaN: comparisons with NaN fail
    )


def analyze(
    values: Mapping[str, Sequence[float]],
    baseline: str,
    metric: str,
    higher_is_better: bool = True,
    confidence: float = 0.95,
    resamples: int = 10_000,
    seed: int = 0,
    min_seeds: int = 5,
) -> StudyAnalysis:
    """Summarise every variant, compare each with the baseline and rank them.

    Welch p-values are Holm-corrected (Holm 1979) across all non-baseline variants
    with a finite p-value. Variants are ranked by mean, best first; ties keep the
    input order and variants without values come last.

    Args:
        values: Metric values per variant name, one per seed. Callers pass finite
            metrics only (diverged runs are reported separately); NaN and `None`
            are dropped.
        baseline: Name of the variant the others are compared with.
        metric: Name of the metric, for the report.
        higher_is_better: Whether larger values are better. Defaults to `True`.
        confidence: Confidence level of the intervals. Defaults to `0.95`.
        resamples: Number of bootstrap resamples. Defaults to `10_000`.
        seed: Seed of the bootstrap's random generator. Defaults to `0`.
        min_seeds: Fewer values than this earn a warning. Defaults to `5`.

    Returns:
        The analysis.

    Raises:
        ValueError: If `baseline` is not one of the variants.
    """
    if baseline not in values:
        known = ", ".join(map(str, values)) or "none"
        raise ValueError(f"baseline {baseline!r} is not one of the variants ({known})")
    cleaned = {name: _finite(v) for name, v in values.items()}
    reference = cleaned[baseline]
    summaries = {name: summarize(x, confidence, resamples, seed) for name, x in cleaned.items()}
    tested = {
        name: compare(x, reference, higher_is_better, confidence, resamples, seed)
        for name, x in cleaned.items()
        if name != baseline and x.size and reference.size
    }
    adjusted = holm([c.p_value for c in tested.values()])
    comparisons = {
        name: replace(c, p_holm=p) for (name, c), p in zip(tested.items(), adjusted, strict=True)
    }

    def order(name: str) -> tuple[bool, float]:
        # sorted() is stable, so ties keep the input order; variants without values go last.
        empty, mean = summaries[name].n == 0, summaries[name].mean
        return empty, 0.0 if empty else -mean if higher_is_better else mean

    ranked = sorted(cleaned, key=order)
    warned = [f"{name}: no values; it is listed but not compared"
              for name in cleaned if summaries[name].n == 0]
    few = {name: summaries[name].n for name in cleaned if 0 < summaries[name].n < min_seeds}
    wide = f"intervals are wide ({min_seeds} or more recommended)"
    if len(few) == len(cleaned) > 1 and len(set(few.values())) == 1:
        # The usual case of a short study: one line, not one per variant.
        n = next(iter(few.values()))
        warned.append(f"every variant: only {n} {'seed' if n == 1 else 'seeds'}; {wide}")
    else:
        warned += [f"{name}: only {n} {'seed' if n == 1 else 'seeds'}; {wide}"
                   for name, n in few.items()]
    return StudyAnalysis(
        metric=metric,
        higher_is_better=higher_is_better,
        baseline=baseline,
        confidence=confidence,
        variants=[
            VariantAnalysis(name, summaries[name], comparisons.get(name), rank)
            for rank, name in enumerate(ranked, start=1)
        ],
        warnings=warned,
    )


def time_to_target(
    histories: Sequence[Mapping[str, Sequence[float | None]]],
    key: str,
    target: float,
    higher_is_better: bool = True,
) -> TimeToTarget:
    """Epochs and seconds each run needed to first reach a target value of a metric.

    A run reaches the target at the first 1-based epoch e with history[key][e] ≥ target
    (≤ when lower is better); its time is the sum of history["time_s"] over epochs 1…e.

    Args:
        histories: Per-epoch histories, one per run: metric name → one value per epoch.
        key: The metric to watch, e.g. `"val_accuracy"`.
        target: The value to reach.
        higher_is_better: Whether reaching means rising to the target. Defaults to `True`.

    Returns:
        Per-run epochs and seconds (`None` where never reached or not timed) and medians
        over the runs that reached the target (`None` when none did).
    """
    epochs: list[int | None] = []
    seconds: list[float | None] = []
    for history in histories:
        series = _floats(history.get(key, ()))
        hits = np.flatnonzero(series >= target if higher_is_better else series <= target)
        if not hits.size:
            epochs.append(None)
            seconds.append(None)
            continue
        epoch = int(hits[0]) + 1
        times = _floats(history.get("time_s", ()))[:epoch]
        epochs.append(epoch)
        seconds.append(
            float(times.sum()) if times.size == epoch and np.isfinite(times).all() else None
        )
    reached = [e for e in epochs if e is not None]
    timed = [s for s in seconds if s is not None]
    return TimeToTarget(
        target=target,
        epochs=epochs,
        seconds=seconds,
        reached=len(reached),
        median_epochs=float(np.median(reached)) if reached else None,
        median_seconds=float(np.median(timed)) if timed else None,
    )


def higher_is_better(metric: str) -> bool:
    """Whether larger values of `metric` are better, as the metric registry says.

    A registered metric's name, bare or as a split reports it (`test_rmse`,
    `val_mae`, `test_auc`), answers from its class (`tricklab.train.metrics`):
    errors are lower-is-better, accuracy, precision, recall and AUC higher.
    Losses are lower-is-better. Any other name (a custom metric's) is guessed
    from its words: "loss" or "error" in it means lower is better.

    Args:
        metric: A metric name, e.g. `"test_accuracy"` or `"val_loss"`.
    """
    # Imported here: the registry needs PyTorch, and this module stays importable without it.
    from tricklab.train.metrics import higher_is_better as registered

    known = registered(metric)
    if known is not None:
        return known
    name = metric.lower()
    return not ("loss" in name or "error" in name)
