"""`tricklab tricks`: the chapter's tricks tried one at a time on a user's recipe, as one study.

The baseline is the recipe unchanged; every other variant changes one thing
the chapter recommends, where it applies to this model (`trick_variants`,
planned in `tricks_plan`).
The variants become an ordinary study file, `tricks.yaml`, whose `base:` is
the user's recipe, validated as every study is and run by the study machinery
(store, resume, Ray, report). What does not apply is listed with its reason in
`skipped.json`.

Before the study, the doctor probes the baseline and `--budget` is planned
(`tricks_probe`). After it, `recommended.yaml` is the recipe with every variant
whose difference from the baseline was detectably better (its 95% bootstrap
interval excludes 0, the report's verdict `better`) applied together: the
preset first (it sets what the others refine), then in the chapter's order. Of
two variants changing the same thing (two optimizers), the one that helped more
is kept. When two or more are combined, round 2 (`tricks_combined`) tests the
combination on fresh seeds and `recommended.yaml` follows its verdict.
"""

from __future__ import annotations

import copy
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from tricklab.atomic import write_json, write_text
from tricklab.errors import UserInputError
from tricklab.recipe.load import apply_override, recipe_from_dict
from tricklab.recipe.study import Study, load_study
from tricklab.recipe.yaml_input import shown_path
from tricklab.report.study_report import write_study_report
from tricklab.run.replace import foreign_entries
from tricklab.run.study import (
    Backend,
    StudyOutcome,
    check_backend_options,
    run_study,
)
from tricklab.run.study_folder import LOCK_NAME, STORE_NAME, StudyLock, open_store
from tricklab.run.trick_variants import FAMILIES, TRICKS, Subject
from tricklab.run.tricks_plan import (
    DEFAULT_SEEDS,
    STUDY_FILE,
    TricksPlan,
    Variant,
    parse_families,
    plan_tricks,
)
from tricklab.run.tricks_probe import (
    Planning,
    changed_document,
    duration,
    fit_budget,
    focus_order,
    learning_rate_from_range_test,
    planning_entries,
    probe_baseline,
    remedies_first,
    step_seconds,
    with_peak,
    with_rate,
)
from tricklab.study.results import StudyResults, load_results
from tricklab.study.store import StudyStore

if TYPE_CHECKING:
    from tricklab.run.tricks_combined import Confirmation

SKIPPED_FILE = "skipped.json"
RECOMMENDED_FILE = "recommended.yaml"
QUICK_LINE = "Quick mode: 2 seeds of 1 epoch look at the pipeline; they measure little."
TOGETHER_UNTESTED = "Each helped on its own; together they were not tested."


@dataclass(frozen=True)
class Recommendation:
    """What the study says to change.

    Args:
        applied: The variants applied, each with its difference from the baseline
            and that difference's interval, in the order applied.
        left_out: Detectably better variants not applied, with the reason.
        document: The recommended recipe document; `None` while runs are unfinished.
        lines: The recommendation in words, for the terminal and the report.
    """

    applied: list[tuple[str, float, float, float]]
    left_out: dict[str, str]
    document: dict[str, Any] | None
    lines: list[str]


_APPLY_ORDER = [trick.name for trick in TRICKS if trick.family == "preset"] + [
    trick.name for trick in TRICKS if trick.family != "preset"]


def _combined(plan: TricksPlan, picked: list[Variant], rates: dict[str, float],
              left_out: dict[str, str]) -> tuple[dict[str, Any], list[Variant]]:
    """The recipe with the picked variants applied in `_APPLY_ORDER`, each derived anew."""
    document = copy.deepcopy(plan.subject.document)
    applied: list[Variant] = []
    for variant in sorted(picked, key=lambda v: _APPLY_ORDER.index(v.name)):
        # Derived from the recipe as changed so far: a 1cycle peak follows the new
        # optimizer's rate, dropout after SELU becomes alpha dropout.
        change = variant.trick.derive(Subject.of(document, plan.epochs))
        if isinstance(change, str):
            after = ", ".join(v.name for v in applied)
            left_out[variant.name] = f"no longer applies after {after}: {change}"
            continue
        if change == variant.trick.derive(plan.subject):
            change = variant.change  # as tested: with the range test's rate, if it had one
        for dotted, value in change.set.items():
            apply_override(document, dotted.split("."), copy.deepcopy(value))
        if variant.name in rates:
            apply_override(document, ["train", "optimizer", "learning_rate"], rates[variant.name])
        applied.append(variant)
    return document, applied


def recommend(plan: TricksPlan, results: StudyResults) -> Recommendation:
    """The variants to combine, from a study's results, and the recipe that combines them.

    Args:
        plan: The plan the study was made from.
        results: The study's results (`tricklab.study.results.load_results`).
    """
    metric, sign = results.metric, 1.0 if results.higher_is_better else -1.0
    comparisons = {v.name: v.comparison for v in results.ranked if v.comparison is not None}
    total = sum(v.counts.total for v in results.variants.values())
    if results.unfinished:
        return Recommendation([], {}, None, [
            f"{results.unfinished} of {total} runs have not finished: run the same command "
            f"again to finish the study; {RECOMMENDED_FILE} is written once they have."])
    better = [v for v in plan.variants if results.verdict(v.name) == "better"]
    picked: list[Variant] = []
    left_out: dict[str, str] = {}
    for variant in sorted(better, key=lambda v: -sign * comparisons[v.name].difference):
        rival = next((p for p in picked if p.trick.touches & variant.trick.touches), None)
        if rival is None:
            picked.append(variant)
        else:
            what = sorted(rival.trick.touches & variant.trick.touches)[0].replace("_", " ")
            left_out[variant.name] = f"it changes the {what} too, and {rival.name} helped more"
    rates = {name: search.chosen for name, search in results.learning_rate_searches.items()
             if search.chosen is not None}
    document, applied = _combined(plan, picked, rates, left_out)
    quick = [QUICK_LINE] if plan.quick else []
    if not applied:
        return Recommendation([], left_out, copy.deepcopy(plan.subject.document), [
            f"Nothing helped detectably: no variant's difference from the baseline in {metric} "
            f"has a 95% interval excluding 0. {RECOMMENDED_FILE} is the recipe unchanged.",
            *quick])
    name = plan.subject.recipe.name
    document["name"] = f"{name[:88]}-recommended"
    recipe_from_dict(document, RECOMMENDED_FILE)  # a recipe that trains as it is
    figures = [(v.name, comparisons[v.name].difference, comparisons[v.name].ci_low,
                comparisons[v.name].ci_high) for v in applied]
    lines = [f"Recommended: {', '.join(v.name for v in applied)}, applied together in "
             f"{RECOMMENDED_FILE}."]
    for variant, (_, difference, low, high) in zip(applied, figures, strict=True):
        lines.append(f"{variant.name}: {metric} {difference:+.4f} [{low:+.4f}, {high:+.4f}] "
                     f"against the baseline; {variant.description}")
    lines += [f"{name} left out: {reason}" for name, reason in left_out.items()]
    if len(applied) > 1:
        lines.append(TOGETHER_UNTESTED)
    return Recommendation(figures, left_out, document, [*lines, *quick])


def _recommended_text(plan: TricksPlan, recommendation: Recommendation) -> str:
    assert recommendation.document is not None
    source = shown_path(plan.recipe_path)
    if recommendation.applied:
        changes = "".join(f"#   {name}: {difference:+.4f} [{low:+.4f}, {high:+.4f}]\n"
                          for name, difference, low, high in recommendation.applied)
        header = (f"# {source} with what `tricklab tricks` found detectably better in "
                  f"{plan.metric}\n# (difference from the recipe, 95% interval):\n{changes}")
    else:
        header = f"# {source} unchanged: `tricklab tricks` found nothing detectably better.\n"
    return header + yaml.safe_dump(recommendation.document, sort_keys=False, allow_unicode=True,
                                   width=100)


@dataclass
class TricksOutcome:
    """What `run_tricks` left behind: the study's outcome, the recommendation, the plan.

    Args:
        study: The study's outcome.
        recommendation: The recommendation, once every run has finished.
        lines: The doctor's verdict and the budget's plan, in words.
        timing: The time taken, the runs' and planning's, once the study is done.
        confirmation: Round 2's verdict (`tricks_combined`), when two or more
            variants were combined.
    """

    study: StudyOutcome
    recommendation: Recommendation | None
    lines: list[str] = field(default_factory=list)
    timing: str | None = None
    confirmation: Confirmation | None = None

    @property
    def study_dir(self) -> Path:
        return self.study.study_dir

    @property
    def exit_code(self) -> int:
        """Round 1's exit code, else round 2's (130 when it was interrupted)."""
        if self.study.exit_code or self.confirmation is None or self.confirmation.study is None:
            return self.study.exit_code
        return self.confirmation.study.exit_code

    @property
    def recommended_lines(self) -> list[str]:
        """What to change, in words: round 1's recommendation, then round 2's verdict."""
        if self.recommendation is None:
            return []
        if self.confirmation is None:
            return self.recommendation.lines
        first = [line for line in self.recommendation.lines
                 if line not in (TOGETHER_UNTESTED, QUICK_LINE)]
        return [*first, *self.confirmation.lines]


def _check_folder(study_dir: Path, study: Study | str) -> None:
    """Refuse an `--out` that holds another study or anything else, before writing there.

    Args:
        study_dir: The study folder.
        study: The study to run there, or (before planning, when no `planning.json`
            of this command is there) only its name.
    """
    for folder in (study_dir, *study_dir.parents):
        if folder.exists() and not folder.is_dir():
            raise UserInputError(f"--out: {folder} exists and is not a directory")
    if (study_dir / STORE_NAME).exists():
        with StudyStore.open(study_dir / STORE_NAME) as store:
            # Before planning, a store with runs is another study: this command's own
            # would have its `planning.json`.
            if (store.spec.get("name") != study or store.runs(phase=None)
                    if isinstance(study, str) else store.fingerprint != study.fingerprint):
                raise UserInputError(
                    f"--out: {study_dir} holds another study ('{store.spec.get('name')}', made "
                    "from other variants, epochs, budget or metric); choose another folder")
    elif study_dir.is_dir() and foreign_entries(study_dir, (LOCK_NAME,
                                                            *planning_entries(study_dir))):
        raise UserInputError(f"--out: {study_dir} is not empty and holds no study; "
                             "choose another folder")


def _planning_key(plan: TricksPlan, budget_seconds: float | None) -> dict[str, Any]:
    return {"recipe": plan.subject.document, "variants": [v.name for v in plan.variants],
            "seeds": plan.seeds, "epochs": plan.epochs, "quick": plan.quick,
            "budget_seconds": budget_seconds}


def _plan_ahead(plan: TricksPlan, scratch: Path, budget_seconds: float | None,
                workers: int, started: float) -> Planning:
    """Probe the baseline, run the range tests, fit the budget; everything into `scratch`.

    `started` is the command's start: the budget counts from there.
    """
    begun = time.perf_counter()
    probe, splits = probe_baseline(plan.recipe_path, scratch,
                                   one_epoch=budget_seconds is not None)
    baseline = plan.subject.document
    rates: dict[str, float | None] = {}
    for variant in plan.variants:
        if variant.name == "one_cycle" or (budget_seconds is not None
                                           and variant.trick.family == "optimizer"):
            document = (baseline if variant.name == "one_cycle"
                        else changed_document(baseline, variant.change.set))
            rates[variant.name] = learning_rate_from_range_test(
                document, scratch / f"lr-find-{variant.name}", shown_path(plan.recipe_path),
                splits if document.get("data") == baseline.get("data") else None)
    budget, costs = None, {}
    if budget_seconds is not None:
        documents = {"baseline": plan.subject.document} | {
            variant.name: changed_document(plan.subject.document, variant.change.set)
            for variant in plan.variants}
        per_step = step_seconds(documents, shown_path(plan.recipe_path), splits)
        costs = {name: value / per_step["baseline"] for name, value in per_step.items()}
        # The epoch from the step timings, without the doctor's probes slowing each layer.
        timing = replace(probe, fit_seconds=per_step["baseline"] * probe.steps)
        order = focus_order([v.name for v in plan.variants], probe.findings)
        budget = fit_budget(order, timing, budget_seconds, time.perf_counter() - started,
                            plan.epochs or plan.subject.recipe.train.epochs, plan.seeds,
                            workers, costs=costs)
    return Planning(_planning_key(plan, budget_seconds), probe, rates, budget,
                    time.perf_counter() - begun, costs)


def arrange(plan: TricksPlan, planning: Planning) -> TricksPlan:
    """The plan as the planning shapes it: remedies of the findings first, range-test rates,
    and the budget's seeds, epochs and variants."""
    by_name = {variant.name: variant for variant in plan.variants}
    variants = []
    for name in focus_order(list(by_name), planning.probe.findings):
        variant = by_name[name]
        if name in planning.rates:
            rate = planning.rates[name]
            variant = with_peak(variant, rate) if name == "one_cycle" else with_rate(
                variant, rate)
        variants.append(variant)
    budget = planning.budget
    if budget is None:
        return replace(plan, variants=variants)
    skipped = {**plan.skipped, **{name: f"left out for time by --budget "
                                  f"{duration(budget.budget_seconds)}"
                                  for name in budget.left_out}}
    return replace(plan, variants=[v for v in variants if v.name not in budget.left_out],
                   skipped=skipped, seeds=budget.seeds, epochs=budget.epochs)


def run_tricks(
    plan: TricksPlan, out: str | Path | None = None, workers: int | None = None,
    backend: Backend = "local", address: str | None = None, progress: str = "auto",
    batch_seeds: bool | None = None,
    announce: Callable[[Path, TricksPlan, list[str]], None] | None = None,
    budget_seconds: float | None = None, started: float | None = None,
    tensorboard: bool = True,
) -> TricksOutcome:
    """Probe and plan, write `tricks.yaml` and `skipped.json`, run (or resume) the study, recommend.

    First the doctor probes the baseline (`tricks_probe`), the range tests find
    the rates they are used for, and `--budget` is fitted, all in a scratch
    folder; then everything is checked (the study as `tricklab study` would
    load it, the options, the folder) before anything is written. A rerun of
    the same command reuses the planning (`planning.json`) and resumes.

    Args:
        plan: From `plan_tricks`.
        out: Study folder. Defaults to `runs/<recipe name>-tricks` (`-tricks-quick`
            with `plan.quick`, as studies do).
        workers: Parallel runs. Defaults to the number of cores.
        backend: `"local"` or `"ray"`. Defaults to `"local"`.
        address: Ray cluster address. Defaults to `None`.
        progress: As `run_study`'s. Defaults to `"auto"`.
        batch_seeds: As `run_study`'s. Defaults to `None`.
        announce: Called with the study folder, the plan as arranged (budget,
            range tests) and the planning's lines once the checks have passed,
            before anything is written. Defaults to `None`.
        budget_seconds: The whole command's time budget (`parse_budget`); the
            seeds (at least 3), epochs and, if it must, the variants are chosen to
            fit it. Defaults to `None` (the plan's seeds and epochs).
        started: When the command began (`time.perf_counter()`), so the budget and
            the time reported count its imports and planning too. Defaults to
            `None` (this call).
        tensorboard: As `run_study`'s (`--no-tensorboard` gives `False`). Defaults to `True`.

    Raises:
        UserInputError: A bad option, a budget too small, or an `--out` holding
            another study or other files.
    """
    started = time.perf_counter() if started is None else started
    check_backend_options(workers, backend, address)
    if budget_seconds is not None and plan.quick:
        raise UserInputError("--budget: --quick runs 2 seeds of 1 epoch whatever the budget; "
                             "give one of the two")
    study_dir = Path(out) if out is not None else Path("runs") / (
        f"{plan.name}-quick" if plan.quick else plan.name)
    planning = Planning.read(study_dir, _planning_key(plan, budget_seconds))
    with tempfile.TemporaryDirectory() as scratch:
        if planning is None:
            _check_folder(study_dir, plan.name)
            planning = _plan_ahead(plan, Path(scratch), budget_seconds,
                                   workers or os.cpu_count() or 1, started)
            fresh = True
        else:
            fresh = False
        arranged = arrange(plan, planning)
        draft = Path(scratch) / STUDY_FILE
        write_text(draft, arranged.study_text(Path(scratch)))
        study = load_study(draft, quick=arranged.quick)
        draft.unlink()
        _check_folder(study_dir, study)
        lines = planning.probe.lines(
            remedies_first([v.name for v in plan.variants], planning.probe.findings))
        if planning.budget is not None:
            lines += planning.budget.lines()
        if announce is not None:
            announce(study_dir, arranged, lines)
        with StudyLock(study_dir):
            open_store(study, study_dir).close()
            if fresh:
                planning.keep(Path(scratch), study_dir)
            write_text(study_dir / STUDY_FILE, arranged.study_text(study_dir))
            write_json(study_dir / SKIPPED_FILE, arranged.skipped)
    recommendations: list[tuple[Recommendation, StudyResults]] = []
    reporting = [0.0]

    def report(folder: Path) -> Path:
        begun = time.perf_counter()
        with StudyStore.open(folder / STORE_NAME) as store:
            results = load_results(store)
        recommendation = recommend(arranged, results)
        if recommendation.document is not None:
            write_text(folder / RECOMMENDED_FILE, _recommended_text(arranged, recommendation))
        recommendations.append((recommendation, results))
        path = write_study_report(folder, recommendation=[*lines, *recommendation.lines])[0]
        reporting[0] += time.perf_counter() - begun
        return path

    running = time.perf_counter()
    outcome = run_study(study_dir / STUDY_FILE, out=study_dir, quick=arranged.quick,
                        workers=workers, backend=backend, address=address, progress=progress,
                        report=report, batch_seeds=batch_seeds, tensorboard=tensorboard)
    recommendation, results = recommendations[-1] if recommendations else (None, None)
    confirmation = None
    if recommendation is not None and results is not None and len(recommendation.applied) > 1:
        # Imported here: round 2 builds on this module's plan and recommendation.
        from tricklab.run.tricks_combined import run_combination

        confirmation = run_combination(arranged, recommendation, results, study_dir, workers,
                                       backend, address, progress, batch_seeds, tensorboard)
        if confirmation is not None and confirmation.document is not None:
            write_text(study_dir / RECOMMENDED_FILE,
                       _confirmed_text(arranged, confirmation.lines, confirmation.document))
    runs = time.perf_counter() - running - reporting[0]
    tricks = TricksOutcome(outcome, recommendation, lines, None, confirmation)
    if recommendation is not None and recommendation.document is not None:
        overhead = (planning.seconds if fresh else 0.0) + reporting[0]
        tricks.timing = (
            f"Took {duration(time.perf_counter() - started)}"
            + (f" against a budget of {duration(budget_seconds)}" if budget_seconds else "")
            + f": the runs {duration(runs)}, planning (doctor, lr-find) and report "
            f"{duration(overhead)}, {100 * overhead / max(runs, 1e-9):.1f}% of the runs.")
        write_study_report(study_dir,
                           recommendation=[*lines, *tricks.recommended_lines, tricks.timing])
    return tricks


def _confirmed_text(plan: TricksPlan, lines: list[str], document: dict[str, Any]) -> str:
    """`recommended.yaml` after round 2: its verdict as comments, then the recipe."""
    header = f"# {shown_path(plan.recipe_path)} as `tricklab tricks` recommends it:\n"
    return header + "".join(f"# {line}\n" for line in lines) + yaml.safe_dump(
        document, sort_keys=False, allow_unicode=True, width=100)




__all__ = ["DEFAULT_SEEDS", "FAMILIES", "STUDY_FILE", "Recommendation", "TricksOutcome",
           "TricksPlan", "Variant", "arrange", "parse_families", "plan_tricks", "recommend",
           "run_tricks"]
