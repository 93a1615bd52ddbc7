"""`tricklab tricks`, round 2: the winners of round 1 applied together, tested on fresh seeds.

Round 1 (`tricklab.run.tricks`) tries each of the chapter's tricks on its own;
`recommend` then combines the detectably better ones into one recipe. Round 2
tests that combination: a study of three variants, the recipe as it is
(`baseline`), the trick that helped most on its own (`best_single`, at the
learning rate round 1 chose for it) and the recommended recipe (`combined`).

It runs on seeds round 1 did not use. The winners were picked because they
scored well on round 1's seeds, some of it by luck, so their round-1 numbers
overstate them (the winner's curse); fresh seeds measure them again,
independently of that choice.

Every comparison made counts in the correction for multiple testing: the
p-values of the two round-2 comparisons are Holm-adjusted (Holm 1979) together
with every round-1 variant's comparison with the baseline. The combination is
recommended only when it is detectably better than the best single trick (the
95% bootstrap interval of the difference excludes 0); otherwise one change
does as well as many, and the best single trick is recommended alone.
"""

from __future__ import annotations

import copy
import math
import os
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from tricklab.atomic import write_text
from tricklab.recipe.load import recipe_from_dict
from tricklab.recipe.study import load_study
from tricklab.recipe.yaml_input import shown_path
from tricklab.report.study_report import write_study_report
from tricklab.run.study import Backend, StudyOutcome, check_backend_options, run_study
from tricklab.run.study_folder import STORE_NAME, StudyLock, open_store
from tricklab.run.tricks import Recommendation, _combined
from tricklab.run.tricks_plan import TricksPlan, Variant
from tricklab.study.results import SUCCEEDED, StudyResults, load_results
from tricklab.study.statistics import Comparison, compare, holm
from tricklab.study.store import StudyStore

FOLDER = "combined"
"""Round 2's study folder, inside round 1's."""
STUDY_FILE = "combined.yaml"
BASELINE, BEST_SINGLE, COMBINED = "baseline", "best_single", "combined"


@dataclass(frozen=True)
class Confirmation:
    """What round 2 says: does the combination beat the baseline and the best single trick?

    Args:
        seeds: Round 2's seeds, none of them round 1's.
        best: The variant that helped most in round 1, round 2's `best_single`.
        combined_vs_baseline: The combination against the recipe as it is, its
            `p_holm` adjusted across both rounds; `None` while runs are unfinished.
        combined_vs_best: The combination against `best` alone, adjusted likewise;
            `None` while runs are unfinished.
        comparisons_made: The comparisons the Holm correction counts: every
            round-1 variant against the baseline and these two (those with a p-value).
        chosen: `"combined"` or `"best_single"`; `None` while runs are unfinished.
        document: The recipe document to recommend; `None` while runs are unfinished.
        lines: Round 2 in words, for the terminal and the report.
        unfinished: Round-2 runs not finished yet.
        study: How the round-2 study ended (`run_combination` sets it). Defaults to `None`.
    """

    seeds: list[int]
    best: str
    combined_vs_baseline: Comparison | None
    combined_vs_best: Comparison | None
    comparisons_made: int
    chosen: str | None
    document: dict[str, Any] | None
    lines: list[str]
    unfinished: int
    study: StudyOutcome | None = None


def _sign(results: StudyResults) -> float:
    return 1.0 if results.higher_is_better else -1.0


def _best(plan: TricksPlan, recommendation: Recommendation, results: StudyResults) -> Variant:
    """The applied variant whose difference from the baseline was the best (first of a tie)."""
    name = max(recommendation.applied, key=lambda applied: _sign(results) * applied[1])[0]
    return next(variant for variant in plan.variants if variant.name == name)


def _chosen_rate(results: StudyResults, name: str) -> float | None:
    search = results.learning_rate_searches.get(name)
    return None if search is None else search.chosen


def _fresh_seeds(results: StudyResults) -> list[int]:
    """As many seeds as round 1 ran, all above its own: `S..2S-1` after round 1's `0..S-1`."""
    used = results.spec["seeds"]
    return list(range(max(used) + 1, max(used) + 1 + len(used)))


def _study_name(plan: TricksPlan) -> str:
    # `<recipe>-tricks-combined`, the recipe's name cut so that it fits a study name (60).
    return f"{plan.subject.recipe.name[:44]}-tricks-combined"


def combination_study(
    plan: TricksPlan, recommendation: Recommendation, results: StudyResults, folder: Path,
) -> dict[str, Any] | None:
    """Round 2's study document: the baseline, the best single variant and the combination.

    The seeds are fresh: as many as round 1 ran (`S`, or 2 with `plan.quick`),
    numbered after its own (`S..2S-1`). Round 1 picked its winners on its seeds,
    partly for their luck there (the winner's curse); an independent replication
    on other seeds measures them without that selection. No learning rate is
    searched: `best_single` trains at the rate round 1 chose for it, and
    `combined` is `recommendation.document`, whose rate round 1 chose too.

    Args:
        plan: The plan round 1 was made from.
        recommendation: Round 1's recommendation (`tricklab.run.tricks.recommend`).
        results: Round 1's results.
        folder: Where the study file goes; its `base:` is the recipe as seen from there.

    Returns:
        The document, or `None` when fewer than two variants were applied (nothing
        to combine).
    """
    if len(recommendation.applied) < 2 or recommendation.document is None:
        return None
    try:
        base = os.path.relpath(plan.recipe_path.resolve(), folder.resolve())
    except ValueError:  # another drive: only an absolute path reaches it
        base = str(plan.recipe_path.resolve())
    best = _best(plan, recommendation, results)
    single = copy.deepcopy(best.change.set)
    description = f"{best.name} alone, as in round 1: {best.description}"
    rate = _chosen_rate(results, best.name)
    if rate is not None:
        single["train.optimizer.learning_rate"] = rate
        description += f"; learning rate {rate:g}, as round 1's search chose"
    original = plan.subject.document
    sections = {key: copy.deepcopy(value) for key, value in recommendation.document.items()
                if key != "name" and value != original.get(key)}
    names = [name for name, *_ in recommendation.applied]
    recipe = plan.subject.recipe.name
    document: dict[str, Any] = {
        "name": _study_name(plan),
        "question": f"Do the tricks that helped {recipe} on their own help together?",
        "description": "Made by tricklab tricks, round 2: the recipe as it is, the trick that "
                       "helped most on its own and every detectably better trick applied "
                       "together, on seeds round 1 did not use.",
        "base": base, "seeds": _fresh_seeds(results), "metric": results.metric,
        "baseline": BASELINE,
    }
    if plan.epochs is not None:
        document["budget"] = {"epochs": plan.epochs}
    return {**document, "quick": {"seeds": 2, "epochs": 1}, "variants": {
        BASELINE: {"description": "the recipe as it is"},
        BEST_SINGLE: {"description": description, "set": single},
        COMBINED: {"description": f"{', '.join(names)} applied together (the recommended "
                                  "recipe)", "set": sections},
    }}


def _study_text(plan: TricksPlan, document: dict[str, Any]) -> str:
    header = (f"# Round 2 of `tricklab tricks {shown_path(plan.recipe_path)}`: the winners of "
              "round 1 together, on fresh seeds.\n# Edit it and run it again with `tricklab "
              "study` (--out DIR for another folder).\n")
    return header + yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=100)


def _values(combined: StudyResults, name: str, seeds: list[int]) -> list[float]:
    """The finite metric of `name`'s finished runs on `seeds` (a store keeps older seeds too)."""
    values = []
    for run in combined.variants[name].succeeded_runs:
        value = run.metrics.get(combined.metric)
        if run.seed in seeds and isinstance(value, int | float) and math.isfinite(value):
            values.append(float(value))
    return values


def _seed_range(seeds: list[int]) -> str:
    if len(seeds) == 1:
        return f"seed {seeds[0]}"
    if seeds == list(range(seeds[0], seeds[-1] + 1)):
        return f"seeds {seeds[0]}-{seeds[-1]}"
    return f"seeds {', '.join(map(str, seeds))}"


def _figures(comparison: Comparison) -> str:
    """`+0.0123 [+0.0051, +0.0190], Holm p 0.004`."""
    interval = ("no interval (fewer than 2 values)" if math.isnan(comparison.ci_low)
                else f"[{comparison.ci_low:+.4f}, {comparison.ci_high:+.4f}]")
    return f"{comparison.difference:+.4f} {interval}, Holm p {comparison.p_holm:.2g}"


def _better(comparison: Comparison, higher_is_better: bool) -> bool:
    """Whether the interval of the difference excludes 0 on the good side."""
    return comparison.detectable and (comparison.difference > 0) == higher_is_better


def _single_document(plan: TricksPlan, best: Variant, rate: float | None) -> dict[str, Any]:
    """The recipe with `best` alone applied at its chosen rate, made as `recommend` makes the
    combination (`tricks._combined`), so that the two recommendations differ only in that."""
    document, applied = _combined(plan, [best], {} if rate is None else {best.name: rate}, {})
    # It applied to this very recipe in round 1; the epochs change a trick's values, never
    # whether it applies.
    assert applied == [best], best.name
    document["name"] = f"{plan.subject.recipe.name[:88]}-recommended"
    recipe_from_dict(document, "recommended recipe")  # a recipe that trains as it is
    return document


def confirm(plan: TricksPlan, recommendation: Recommendation, results: StudyResults,
            combined: StudyResults) -> Confirmation:
    """Round 2's verdict, from the results of both rounds.

    Args:
        plan: The plan round 1 was made from.
        recommendation: Round 1's recommendation, with at least two variants applied.
        results: Round 1's results.
        combined: Round 2's results (the study of `combination_study`).
    """
    seeds = combined.spec["seeds"]
    best = _best(plan, recommendation, results)
    variants = (BASELINE, BEST_SINGLE, COMBINED)
    finished = sum(run.finished for name in variants for run in combined.variants[name].runs
                   if run.seed in seeds)
    unfinished = len(variants) * len(seeds) - finished
    round_one = [v.comparison.p_value for v in results.ranked if v.comparison is not None]
    if unfinished:
        made = sum(not math.isnan(p) for p in round_one) + 2
        return Confirmation(seeds, best.name, None, None, made, None, None, [
            f"Round 2 on fresh {_seed_range(seeds)}: {unfinished} of "
            f"{len(variants) * len(seeds)} runs have not finished: run the same command again "
            "to finish it; until then nothing new is recommended."], unfinished)
    higher = combined.higher_is_better
    values = {name: _values(combined, name, seeds) for name in variants}
    against_baseline = compare(values[COMBINED], values[BASELINE], higher)
    against_best = compare(values[COMBINED], values[BEST_SINGLE], higher)
    p_values = [*round_one, against_baseline.p_value, against_best.p_value]
    adjusted = holm(p_values)
    # Holm's m: the comparisons with a p-value (a single seed or equal values give none).
    made = sum(not math.isnan(p) for p in p_values)
    against_baseline = replace(against_baseline, p_holm=adjusted[-2])
    against_best = replace(against_best, p_holm=adjusted[-1])
    names = [name for name, *_ in recommendation.applied]
    lines = [f"Round 2 on fresh {_seed_range(seeds)}, {combined.metric}: combined vs baseline "
             f"{_figures(against_baseline)}; combined vs best single ({best.name}) "
             f"{_figures(against_best)}; {made} comparisons in both rounds (Holm)."]
    rate = _chosen_rate(results, best.name)
    if _better(against_best, higher):
        chosen, document = COMBINED, copy.deepcopy(recommendation.document)
        lines.append(f"Recommended: {', '.join(names)} together, detectably better than "
                     f"{best.name} alone (the interval of the difference excludes 0).")
    else:
        chosen, document = BEST_SINGLE, _single_document(plan, best, rate)
        if math.isnan(against_best.ci_low):
            why = "with fewer than 2 finished runs of one of them, no interval tells them apart"
        elif against_best.detectable:
            why = "the combination did detectably worse than it"
        else:
            why = ("the combination was not detectably better than it (the interval of the "
                   "difference includes 0), and one change is simpler than "
                   f"{len(names)}")
        at = f" at learning rate {rate:g}" if rate is not None else ""
        lines.append(f"Recommended: {best.name} alone{at}: {why}.")
    if against_baseline.detectable and not _better(against_baseline, higher):
        lines.append("The combination did detectably worse than the baseline on the fresh "
                     "seeds: these changes interfere when applied together (a learning rate "
                     "or schedule found for one optimizer may not suit another).")
    elif not _better(against_baseline, higher):
        lines.append("The combination was not detectably better than the baseline on the "
                     "fresh seeds: round 1's gains may have been luck.")
    failed = sum(run.status not in SUCCEEDED for name in variants
                 for run in combined.variants[name].runs if run.seed in seeds)
    if failed:
        lines.append(f"{failed} round-2 runs diverged or failed; the numbers are the others'.")
    if plan.quick:
        lines.append("Quick mode: 2 seeds of 1 epoch look at the pipeline; they measure little.")
    return Confirmation(seeds, best.name, against_baseline, against_best, made, chosen,
                        document, lines, 0)


def run_combination(
    plan: TricksPlan, recommendation: Recommendation, results: StudyResults, study_dir: Path,
    workers: int | None = None, backend: Backend = "local", address: str | None = None,
    progress: str = "auto", batch_seeds: bool | None = None, tensorboard: bool = True,
) -> Confirmation | None:
    """Write round 2's study into `study_dir/combined`, run (or resume) it, and confirm.

    Running it again resumes: the study file is written anew with the same
    contents and `run_study` trains only what is left. When round 1's winners
    have changed since (more seeds there), the round 2 of the old winners
    answers a question no longer asked and is replaced.

    Args:
        plan: The plan round 1 was made from.
        recommendation: Round 1's recommendation.
        results: Round 1's results, every run finished.
        study_dir: Round 1's study folder.
        workers: Parallel runs. Defaults to the number of cores.
        backend: `"local"` or `"ray"`. Defaults to `"local"`.
        address: Ray cluster address. Defaults to `None`.
        progress: As `run_study`'s. Defaults to `"auto"`.
        batch_seeds: As `run_study`'s. Defaults to `None`.
        tensorboard: As `run_study`'s. Defaults to `True`.

    Returns:
        Round 2's verdict, with `study` set; `None` when fewer than two variants were
        applied (nothing to combine, nothing written).

    Raises:
        UserInputError: A bad option, or a round-2 folder holding files tricklab did
            not write.
        SystemRefusedError: The machine refused (full disk, ...), as `run_study` says.
    """
    check_backend_options(workers, backend, address)
    folder = Path(study_dir) / FOLDER
    document = combination_study(plan, recommendation, results, folder)
    if document is None:
        return None
    with tempfile.TemporaryDirectory() as scratch:
        # Checked as `tricklab study` would load it before anything is written.
        draft = Path(scratch) / STUDY_FILE
        write_text(draft, _study_text(plan, {**document,
                                             "base": str(plan.recipe_path.resolve())}))
        study = load_study(draft, quick=plan.quick)
    with StudyLock(folder):
        stale = False
        if (folder / STORE_NAME).exists():
            with StudyStore.open(folder / STORE_NAME) as store:
                stale = store.fingerprint != study.fingerprint
        if stale or not (folder / STORE_NAME).exists():
            # Our own file, written anew below: it must not make the folder look foreign.
            (folder / STUDY_FILE).unlink(missing_ok=True)
        open_store(study, folder, force_new=stale).close()
        write_text(folder / STUDY_FILE, _study_text(plan, document))
    confirmations: list[Confirmation] = []

    def report(where: Path) -> Path:
        with StudyStore.open(where / STORE_NAME) as store:
            confirmation = confirm(plan, recommendation, results, load_results(store))
        confirmations.append(confirmation)
        return write_study_report(where, recommendation=confirmation.lines)[0]

    outcome = run_study(folder / STUDY_FILE, out=folder, quick=plan.quick, workers=workers,
                        backend=backend, address=address, progress=progress, report=report,
                        batch_seeds=batch_seeds, tensorboard=tensorboard)
    return replace(confirmations[-1], study=outcome)


__all__ = ["FOLDER", "STUDY_FILE", "Confirmation", "combination_study", "confirm",
           "run_combination"]
