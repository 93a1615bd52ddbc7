"""A study's results, read from its store and analysed, ready for a report or a table.

`load_results` reads everything the store holds once and groups it per variant
in the order the study spec lists them: the runs, their finite final metrics,
how many runs finished, diverged, failed or are still to come, time to target,
wall time and the learning-rate search. Nothing here draws or formats; the
report layer does that from a `StudyResults`.

A study that is still running loads too: unfinished runs are counted, not
guessed, and every number is computed from the runs that have finished.
"""

from __future__ import annotations

import math
import statistics as pystats
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from tricklab.differences import recipe_differences
from tricklab.study.statistics import (
    StudyAnalysis,
    TimeToTarget,
    VariantAnalysis,
    analyze,
    higher_is_better,
    time_to_target,
)
from tricklab.study.store import LearningRateChoice, RunRecord, StudyStore

SUCCEEDED = ("completed", "stopped_early")
"""Statuses whose final metrics are compared: a diverged run's metrics are NaN or meaningless."""

UNFINISHED = ("pending", "running", "interrupted")


@dataclass(frozen=True)
class StatusCounts:
    """How many runs of a variant ended (or not yet) in each way.

    Args:
        succeeded: `completed` or `stopped_early`.
        diverged: Training hit NaN/Inf.
        failed: Crashed on every attempt.
        unfinished: `pending`, `running` or `interrupted`: results still to come.
    """

    succeeded: int = 0
    diverged: int = 0
    failed: int = 0
    unfinished: int = 0

    @property
    def total(self) -> int:
        """All runs of the variant."""
        return self.succeeded + self.diverged + self.failed + self.unfinished


@dataclass(frozen=True)
class VariantResults:
    """Everything measured for one variant.

    Args:
        name: The variant's name.
        description: The spec's description of it, if any.
        recipe: Its resolved recipe.
        runs: Its main-phase runs, in the order they were added.
        values: Finite final values of the compared metric, one per succeeded run.
        counts: Runs per outcome.
        time_to_target: Epochs and seconds to the spec's target (`None`: no target set).
        wall_time_mean: Mean training wall time of the succeeded runs, in seconds.
        wall_time_std: Its sample standard deviation (`None` below two runs).
    """

    name: str
    description: str | None
    recipe: dict[str, Any]
    runs: list[RunRecord]
    values: list[float]
    counts: StatusCounts
    time_to_target: TimeToTarget | None
    wall_time_mean: float | None
    wall_time_std: float | None

    @property
    def succeeded_runs(self) -> list[RunRecord]:
        """The runs whose histories and metrics count (`completed`, `stopped_early`)."""
        return [run for run in self.runs if run.status in SUCCEEDED]


@dataclass(frozen=True)
class LearningRateSearch:
    """One variant's learning-rate search: the score of every seed at every rate tried.

    Args:
        variant: The variant searched.
        metric: The metric that chooses the rate (a key of the runs' metrics).
        higher_is_better: Whether larger scores are better.
        scores: Finite scores per rate, ascending rates; a rate whose runs have not
            finished has an empty list.
        means: Mean score per rate (`None`: nothing finished); the store's recorded
            means where the runs themselves are missing.
        chosen: The rate chosen, once the search has finished.
    """

    variant: str
    metric: str
    higher_is_better: bool
    scores: dict[float, list[float]]
    means: dict[float, float | None]
    chosen: float | None


@dataclass(frozen=True)
class StudyResults:
    """A study's spec, its runs grouped per variant, and their analysis.

    Args:
        spec: The resolved study spec.
        metric: The metric compared: the spec's, or a fallback when no run has it.
        higher_is_better: Whether larger values of `metric` are better.
        variants: Per-variant results in spec order.
        analysis: Summaries, comparisons with the baseline and ranks of `metric`.
        learning_rate_searches: Searches per searched variant, in spec order.
        search_runs: Every learning-rate search run.
        problems: Runs that diverged or failed, to be shown with their error.
        warnings: Everything a reader should know before trusting the numbers.
        identical: Variants whose runs gave exactly what an earlier variant's gave,
            seed for seed (see `identical_variants`). Defaults to none.
    """

    spec: dict[str, Any]
    metric: str
    higher_is_better: bool
    variants: dict[str, VariantResults]
    analysis: StudyAnalysis
    learning_rate_searches: dict[str, LearningRateSearch]
    search_runs: list[RunRecord]
    problems: list[RunRecord]
    warnings: list[str]
    identical: list[IdenticalVariant] = field(default_factory=list)

    @property
    def baseline(self) -> str:
        """The variant every other one is compared with."""
        return self.analysis.baseline

    @property
    def ranked(self) -> list[VariantAnalysis]:
        """The analysed variants, best first."""
        return self.analysis.variants

    @property
    def unfinished(self) -> int:
        """Main-phase runs still pending, running or interrupted."""
        return sum(v.counts.unfinished for v in self.variants.values())

    def verdict(self, name: str) -> str:
        """One word or phrase on a variant against the baseline.

        Returns:
            `baseline`, `better`, `worse`, `no detectable difference`, or why there
            is nothing to compare: `diverged`, `failed`, `pending`, `no values`.
        """
        if name == self.baseline:
            return "baseline"
        analysed = next(v for v in self.analysis.variants if v.name == name)
        if analysed.comparison is None:
            # Say what happened to the runs instead of dropping the variant quietly.
            counts = self.variants[name].counts
            if analysed.summary.n == 0 and counts.diverged:
                return "diverged"
            if analysed.summary.n == 0 and counts.failed:
                return "failed"
            if analysed.summary.n == 0 and counts.unfinished:
                return "pending"
            return "no values"
        comparison = analysed.comparison
        if not comparison.detectable:
            return "no detectable difference"
        improved = (comparison.difference > 0) == self.higher_is_better
        return "better" if improved else "worse"


TIMING_KEYS = ("time_s",)
"""History keys that measure time: two runs that computed the same differ there."""


@dataclass(frozen=True)
class IdenticalVariant:
    """A variant whose runs gave exactly what another variant's runs gave, seed for seed.

    Args:
        variant: The variant.
        same_as: The earlier variant (the baseline first, then spec order) it repeats.
        seeds: How many seeds both trained.
        reason: Why, when the recipes and runs tell it (a callback that never
            fired, a schedule that kept the rate); `None` when they do not.
    """

    variant: str
    same_as: str
    seeds: int
    reason: str | None


def identical_variants(
    variants: dict[str, VariantResults], baseline: str
) -> list[IdenticalVariant]:
    """The variants whose every run equals, seed for seed, the run of an earlier variant.

    Two runs are equal when they ended the same way with exactly the same final
    metrics and, where both recorded one, the same per-epoch history (its
    timing aside). Every run of both variants must have finished and one at
    least must have succeeded: "identical on every seed" is never said of runs
    still to come. Each variant is matched with the first equal one, the
    baseline first, then in the order given.

    Args:
        variants: Each variant's results, in spec order.
        baseline: The variant compared first.
    """
    order = [baseline, *(name for name in variants if name != baseline)]
    prints = {name: _fingerprints(variants[name]) for name in order if name in variants}
    found = []
    for index, name in enumerate(order):
        if prints.get(name) is None:
            continue
        same_as = next((earlier for earlier in order[:index]
                        if prints.get(earlier) == prints[name]), None)
        if same_as is not None:
            found.append(IdenticalVariant(name, same_as, len(prints[name]),
                                          _likely_reason(variants[name], variants[same_as])))
    return found


def _fingerprints(variant: VariantResults) -> dict[int, tuple[Any, ...]] | None:
    """Each seed's outcome, compared exactly; `None` while a run is unfinished or none succeeded."""
    runs = variant.runs
    if not runs or variant.counts.unfinished or not variant.counts.succeeded:
        return None
    if len({run.seed for run in runs}) != len(runs):  # a seed twice: nothing to pair it with
        return None
    return {run.seed: (run.status, sorted(run.metrics.items()), sorted(
        (key, values) for key, values in run.history.items() if key not in TIMING_KEYS))
        for run in runs}


def _likely_reason(variant: VariantResults, other: VariantResults) -> str | None:
    """Why two variants' runs are the same, from what their recipes change and their runs did."""
    changed = {path.split(".")[1] if path.startswith("train.") else path
               for path, _, _ in recipe_differences(variant.recipe, other.recipe)
               if path != "name"}
    if not changed:
        return "their recipes are the same"
    if changed == {"callbacks"}:
        for side in (variant, other):
            added = [entry for entry in _callbacks(side.recipe)
                     if entry not in _callbacks((other if side is variant else variant).recipe)]
            planned = (side.recipe.get("train") or {}).get("epochs")
            if any("early_stopping" in entry for entry in added) and all(
                run.status == "completed" and run.epochs_run == planned for run in side.runs
            ):
                return f"early stopping never stopped a run: each trained all {planned} epochs"
        return None
    # The runs' histories are equal, so their per-epoch rates (`lr`) are too.
    if changed == {"schedule"} and all(run.history.get("lr") for run in variant.runs):
        schedules = [(side.recipe.get("train") or {}).get("schedule") for side in (variant, other)]
        if None in schedules:
            return "the schedule never changed the learning rate in these epochs"
        return "both schedules gave the same learning rate in every epoch"
    return None


def _callbacks(recipe: dict[str, Any]) -> list[Any]:
    return list((recipe.get("train") or {}).get("callbacks") or [])


def _finite(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _choose_metric(spec: dict[str, Any], runs: Sequence[RunRecord]) -> tuple[str, list[str]]:
    """The spec's metric, or the first stand-in that the finished runs do report."""
    metric = spec["metric"]
    reported = [run.metrics for run in runs if run.metrics]
    if not reported or any(metric in metrics for metrics in reported):
        return metric, []
    # A dataset without a test split reports only validation and training metrics.
    stem = metric.split("_", 1)[1] if metric.startswith(("test_", "val_", "train_")) else metric
    for candidate in (f"val_{stem}", f"train_{stem}", stem):
        if candidate != metric and any(candidate in metrics for metrics in reported):
            return candidate, [
                f"metric {metric!r} is missing from every finished run; "
                f"comparing {candidate!r} instead"
            ]
    return metric, [f"metric {metric!r} is missing from every finished run; nothing to compare"]


def _counts(runs: Sequence[RunRecord]) -> StatusCounts:
    statuses = [run.status for run in runs]
    return StatusCounts(
        succeeded=sum(s in SUCCEEDED for s in statuses),
        diverged=statuses.count("diverged"),
        failed=statuses.count("failed"),
        unfinished=sum(s in UNFINISHED for s in statuses),
    )


def _wall_time(runs: Sequence[RunRecord]) -> tuple[float | None, float | None]:
    times = [t for run in runs if (t := _finite(run.wall_time_s)) is not None]
    if not times:
        return None, None
    return pystats.fmean(times), pystats.stdev(times) if len(times) > 1 else None


def _searches(
    spec: dict[str, Any], runs: Sequence[RunRecord], choices: dict[str, LearningRateChoice]
) -> dict[str, LearningRateSearch]:
    search_spec = spec.get("lr_search") or {}
    searched = {*choices, *(run.variant for run in runs)}
    order = [*spec["variants"], *choices, *(run.variant for run in runs)]
    searches = {}
    for name in (name for name in dict.fromkeys(order) if name in searched):
        choice = choices.get(name)
        metric = choice.metric if choice else search_spec.get("metric", "val_accuracy")
        scores: dict[float, list[float]] = {rate: [] for rate in (choice.scores if choice else {})}
        for run in runs:
            if run.variant == name and run.learning_rate is not None:
                values = scores.setdefault(run.learning_rate, [])
                value = _finite(run.metrics.get(metric))
                if run.status in SUCCEEDED and value is not None:
                    values.append(value)
        rates = sorted(scores)
        means = {
            rate: pystats.fmean(scores[rate]) if scores[rate]
            else (choice.scores.get(rate) if choice else None)
            for rate in rates
        }
        searches[name] = LearningRateSearch(
            variant=name,
            metric=metric,
            higher_is_better=higher_is_better(metric),
            scores={rate: scores[rate] for rate in rates},
            means=means,
            chosen=choice.learning_rate if choice else None,
        )
    return searches


def _checked_spec(store: StudyStore) -> dict[str, Any]:
    """The store's spec, with the parts read here checked to be what tricklab writes.

    Raises:
        UserInputError: Naming the file and the part that is not.
    """
    spec = store.spec
    variants = spec.get("variants")
    target = spec.get("target")
    checks = (
        ("variants", variants, isinstance(variants, dict) and all(
            value is None or isinstance(value, dict) for value in variants.values()),
         "an object of variants"),
        ("baseline", spec.get("baseline"), isinstance(spec.get("baseline"), str),
         "a variant name"),
        ("metric", spec.get("metric"), isinstance(spec.get("metric"), str), "a metric name"),
        ("target", target, not target or (
            isinstance(target, dict) and isinstance(target.get("metric"), str)
            and _finite(target.get("value")) is not None), "a metric and a value"),
        ("lr_search", spec.get("lr_search"),
         spec.get("lr_search") is None or isinstance(spec.get("lr_search"), dict),
         "an object or null"),
    )
    for key, value, good, expected in checks:
        if not good:
            raise store.damaged(f"meta 'spec' {key}", value, expected)
    return spec


def load_results(store: StudyStore, resamples: int = 10_000) -> StudyResults:
    """Read a study store and analyse its final metric across seeds.

    Args:
        store: An open study store (left open).
        resamples: Bootstrap resamples of the analysis. Defaults to `10_000`.

    Returns:
        The grouped, analysed results; partial while runs are unfinished.

    Raises:
        UserInputError: The store holds a spec or a row tricklab did not write.
    """
    spec = _checked_spec(store)
    runs = store.runs("main")
    search_runs = store.runs("lr_search")
    # Runs of a variant the spec no longer lists still belong to the study: list them last.
    names = list(dict.fromkeys([*spec["variants"], *(run.variant for run in runs)]))
    by_variant: dict[str, list[RunRecord]] = {name: [] for name in names}
    for run in runs:
        by_variant[run.variant].append(run)

    metric, warnings = _choose_metric(spec, [r for r in runs if r.status in SUCCEEDED])
    better = spec.get("higher_is_better", higher_is_better(metric))
    target = spec.get("target")
    variants: dict[str, VariantResults] = {}
    for name in names:
        variant_spec = spec["variants"].get(name) or {}
        succeeded = [run for run in by_variant[name] if run.status in SUCCEEDED]
        values = [v for run in succeeded if (v := _finite(run.metrics.get(metric))) is not None]
        reach = None
        if target:
            reach = time_to_target(
                [run.history for run in succeeded], target["metric"], float(target["value"]),
                higher_is_better(target["metric"]),
            )
        mean_time, std_time = _wall_time(succeeded)
        variants[name] = VariantResults(
            name=name,
            description=variant_spec.get("description"),
            recipe=variant_spec.get("recipe") or next((r.recipe for r in by_variant[name]), {}),
            runs=by_variant[name],
            values=values,
            counts=_counts(by_variant[name]),
            time_to_target=reach,
            wall_time_mean=mean_time,
            wall_time_std=std_time,
        )

    analysis = analyze(
        {name: v.values for name, v in variants.items()}, spec["baseline"], metric,
        higher_is_better=better, resamples=resamples,
    )
    warnings.extend(analysis.warnings)
    if target and not any(
        target["metric"] in run.history for v in variants.values() for run in v.succeeded_runs
    ) and any(v.succeeded_runs for v in variants.values()):
        warnings.append(f"target metric {target['metric']!r} is in no finished run's history")
    problems = [run for run in runs if run.status in ("diverged", "failed")]
    for name, variant in variants.items():
        counts = variant.counts
        for status, count in (("diverged", counts.diverged), ("failed", counts.failed)):
            if count:
                warnings.append(f"{name}: {count} of {counts.total} runs {status}")
    unfinished = sum(v.counts.unfinished for v in variants.values())
    if unfinished:
        warnings.append(
            f"{unfinished} of {len(runs)} runs have not finished yet: the results are partial"
        )
    if spec.get("quick"):
        warnings.append("quick mode: fewer seeds and epochs than the study asks for")
    return StudyResults(
        spec=spec,
        metric=metric,
        higher_is_better=better,
        variants=variants,
        analysis=analysis,
        learning_rate_searches=_searches(spec, search_runs, store.learning_rate_choices()),
        search_runs=search_runs,
        problems=problems,
        warnings=warnings,
        identical=identical_variants(variants, spec["baseline"]),
    )
