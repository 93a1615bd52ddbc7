"""Before `tricklab tricks` runs its study: the doctor on the baseline, lr-find, a time budget.

The baseline is probed once by the doctor (`doctor_recipe`), one thread as a
study worker trains. Its findings move the remedies that address them to the
front (`FOCUS`), so they are tried first and are the last a budget leaves out.
The same probe times the baseline: with `--budget`, it trains exactly one
epoch, and its seconds plan the study (`fit_budget`).

Learning rates come from the range test (`lr_find_recipe`, Smith 2017) where
it is cheaper than a search: 1cycle always takes its peak from it, and under
`--budget` every optimizer variant takes its rate from it instead of the
study's `lr_search` (one 300-step test per optimizer against a grid of full
runs).

Everything is written into a scratch folder first and moved into the study
folder only when the plan holds (`Planning.keep`): a budget too small leaves
nothing behind. A rerun of the same command reads `planning.json` back instead
of probing again, so the study it makes is the same and resumes.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from tricklab import atomic
from tricklab.data import DatasetSplits
from tricklab.errors import UserInputError
from tricklab.recipe.load import apply_override, recipe_from_dict
from tricklab.run.doctor import doctor_recipe
from tricklab.run.lr_find import lr_find_recipe
from tricklab.run.trick_variants import TRICKS, default_learning_rate
from tricklab.run.tricks_plan import Variant

PLANNING_FILE = "planning.json"
DOCTOR_FOLDER = "doctor"
LR_FIND_PREFIX = "lr-find-"
LR_FIND_STEPS = 300
COST_WARMUP = 10
COST_STEPS = 100
DEFAULT_DOCTOR_STEPS = 300
MIN_SEEDS = 3
SAFETY = 1.25
"""Planned seconds are the estimate times this: evaluation, two workers sharing memory
bandwidth, and the last runs that leave a core idle."""
REPORT_SECONDS = 5.0
"""Kept back from a budget for writing the report."""

FOCUS: dict[str, tuple[str, ...]] = {
    "vanishing_gradients": ("init_activation", "batch_norm"),
    "saturation": ("init_activation", "batch_norm"),
    "exploding_gradients": ("clipping", "init_activation"),
    "divergence": ("clipping", "optimizer"),
    "dead_units": ("he_leaky_relu", "he_elu", "self_normalizing"),
    "learning_rate_too_high": ("optimizer", "schedule"),
    "learning_rate_too_low": ("optimizer", "schedule"),
    "activation_shift": ("batch_norm",),
}
"""The doctor's findings and the families (or single tricks) that remedy them, most direct
first, as `tricklab.doctor.findings.REMEDIES` gives the chapter's remedies."""


def parse_budget(text: str) -> float:
    """`90s`, `20m`, `1.5h` or a number of minutes -> seconds.

    Raises:
        UserInputError: Anything else, or a budget of 0.
    """
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", text)
    if match is None or float(match[1]) <= 0:
        raise UserInputError(f"--budget: {text!r} is not a duration; write e.g. 90s, 20m or 1.5h")
    return float(match[1]) * {"s": 1, "m": 60, "h": 3600, "": 60}[match[2]]


def seconds(value: float) -> str:
    """`0.0123` -> `0.012 s`, `8.04` -> `8.0 s`: two significant digits below a second."""
    return f"{value:.2g} s" if value < 1 else f"{value:.1f} s"


def duration(value: float) -> str:
    """`754.2` -> `12m34s`; under a minute, `41.5s`."""
    if value < 60:
        return f"{value:.1f}s"
    minutes, rest = divmod(round(value), 60)
    return f"{minutes // 60}h{minutes % 60:02d}m{rest:02d}s" if minutes >= 60 else (
        f"{minutes}m{rest:02d}s")


@contextmanager
def _one_thread() -> Iterator[None]:
    """Time the probe as a study worker trains: on one thread (`study_backends`)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@dataclass(frozen=True)
class Probe:
    """The doctor's look at the baseline and what one epoch of it costs.

    Args:
        verdict: `healthy` or `unhealthy`.
        findings: The kinds found, in the doctor's order.
        one_epoch: Whether the probe trained exactly one epoch (for a budget).
        steps: Steps trained.
        fit_seconds: Seconds of those steps, on one thread.
        start_seconds: Seconds to load the data and build the model.
    """

    verdict: str
    findings: list[str]
    one_epoch: bool
    steps: int
    fit_seconds: float
    start_seconds: float

    def lines(self, focus: list[str]) -> list[str]:
        """The verdict and what it moved to the front, for the report's top."""
        if not self.findings:
            return ["The doctor found the baseline healthy: the tricks run in the chapter's "
                    "order."]
        return [f"The doctor found the baseline {self.verdict}: {', '.join(self.findings)} "
                f"(see doctor/doctor.json); tried first: {', '.join(focus)}."]


def probe_baseline(recipe_path: Path, folder: Path, one_epoch: bool
                   ) -> tuple[Probe, DatasetSplits]:
    """Run the doctor on the recipe into `folder / doctor`, on one thread.

    Returns:
        The probe, and the recipe's data as loaded, for the range tests and the
        step timings to share.
    """
    from tricklab.recipe import load_recipe
    from tricklab.run.runner import load_data

    recipe = load_recipe(recipe_path)
    with _one_thread():
        begun = time.perf_counter()
        splits = load_data(recipe)
        loading = time.perf_counter() - begun
        outcome = doctor_recipe(recipe, out=folder / DOCTOR_FOLDER,
                                steps=None if one_epoch else DEFAULT_DOCTOR_STEPS,
                                progress="none", splits=splits)
    probe = Probe(outcome.diagnosis.verdict, [f.kind for f in outcome.diagnosis.findings],
                  one_epoch, outcome.steps, outcome.fit_seconds,
                  loading + outcome.prepare_seconds)
    return probe, splits


def step_seconds(documents: dict[str, dict[str, Any]], label: str,
                 splits: DatasetSplits | None = None) -> dict[str, float]:
    """Each recipe's seconds per training step, on one thread, as a study worker trains.

    The variants do not cost the same: on the chapter's Leaky ReLU/He network an
    RMSprop or Adam step takes about 1.8 times an SGD step, batch normalization
    1.3 times. Each recipe's model trains `COST_WARMUP` untimed steps, then
    `COST_WARMUP` and `COST_WARMUP + COST_STEPS` steps timed, on the first
    recipe's training data (the variants change no shapes); the difference of
    the two is `COST_STEPS` steps without a call's fixed cost, and without the
    doctor's probes (which slow a deep network's steps).

    Args:
        documents: Recipe documents by name, the baseline first.
        label: How messages name the recipe.
        splits: The first recipe's data, already loaded. Defaults to `None` (loaded
            here).
    """
    from tricklab.recipe import Recipe
    from tricklab.run.runner import build, load_data
    from tricklab.train import Trainer

    def timed(recipe: Recipe, x: torch.Tensor, y: torch.Tensor) -> float:
        model, optimizer = build(recipe)
        train = recipe.train
        trainer = Trainer(model, optimizer, loss=train.loss, seed=recipe.seed, progress="none",
                          precision=train.precision)
        seconds = []
        for epoch, steps in enumerate((COST_WARMUP, COST_WARMUP, COST_WARMUP + COST_STEPS)):
            count = train.batch_size * steps
            started = time.perf_counter()
            trainer.fit(x[:count], y[:count], epochs=epoch + 1, initial_epoch=epoch,
                        batch_size=train.batch_size, shuffle=False)
            seconds.append(time.perf_counter() - started)
        # The difference of two fits is the steps alone, without what each fit call costs.
        return max(seconds[2] - seconds[1], 1e-9) / COST_STEPS

    recipes = {name: recipe_from_dict(copy.deepcopy(document), label)
               for name, document in documents.items()}
    first = next(iter(recipes.values()))
    splits = load_data(first) if splits is None else splits
    if first.train.target == "inputs":
        splits = splits.as_reconstruction()
    x, y = splits.train.x, splits.train.y
    with _one_thread():
        seconds_per_step = {name: timed(recipe, x, y) for name, recipe in recipes.items()}
    return seconds_per_step


def remedies_first(names: list[str], findings: list[str]) -> list[str]:
    """Those of `names` (trick names) that remedy `findings`, most direct first."""
    families = {trick.name: trick.family for trick in TRICKS}
    first: list[str] = []
    for kind in findings:
        for entry in FOCUS.get(kind, ()):
            first += [name for name in names
                      if entry in (name, families.get(name)) and name not in first]
    return first


def focus_order(names: list[str], findings: list[str]) -> list[str]:
    """`names` (trick names in the chapter's order) with those remedying `findings` first."""
    first = remedies_first(names, findings)
    return first + [name for name in names if name not in first]


def planning_entries(folder: Path) -> set[str]:
    """The names planning writes into a study folder, of those `folder` holds."""
    return {PLANNING_FILE, DOCTOR_FOLDER} | {
        entry.name for entry in folder.iterdir() if entry.name.startswith(LR_FIND_PREFIX)}


def learning_rate_from_range_test(document: dict[str, Any], folder: Path, label: str,
                                  splits: DatasetSplits | None = None) -> float | None:
    """The lr-find suggestion for a recipe document (a decade below the loss minimum).

    Args:
        document: The recipe document.
        folder: The range test's run folder.
        label: How messages name the recipe.
        splits: Its data, already loaded. Defaults to `None` (loaded here).
    """
    recipe = recipe_from_dict(copy.deepcopy(document), label)
    _, summary = lr_find_recipe(recipe, out=folder, steps=LR_FIND_STEPS, splits=splits)
    return summary["suggestion"]


def changed_document(document: dict[str, Any], change_set: dict[str, Any]) -> dict[str, Any]:
    """A copy of the recipe document with a change's dotted overrides applied."""
    changed = copy.deepcopy(document)
    for dotted, value in change_set.items():
        apply_override(changed, dotted.split("."), copy.deepcopy(value))
    return changed


@dataclass(frozen=True)
class BudgetPlan:
    """How a time budget was spent: seeds, epochs, the variants kept and the estimate.

    Args:
        budget_seconds: The budget.
        seeds: Seeds per variant.
        epochs: Epochs per run.
        left_out: Variants left out for time, in the order they were dropped.
        estimate_seconds: The planned seconds of the runs still to do (with `SAFETY`).
        runs: The runs planned, both rounds.
        epoch_seconds: The seconds of one epoch of the baseline the plan used.
    """

    budget_seconds: float
    seeds: int
    epochs: int
    left_out: list[str]
    estimate_seconds: float
    runs: int
    epoch_seconds: float

    def lines(self) -> list[str]:
        """The plan in words, for the terminal and the report."""
        kept = (f"; left out for time: {', '.join(self.left_out)}" if self.left_out else "")
        return [f"Budget {duration(self.budget_seconds)}: one epoch of the baseline takes "
                f"{seconds(self.epoch_seconds)} on one core, so {self.runs} runs of {self.seeds} "
                f"seeds x {self.epochs} epoch(s), estimated {duration(self.estimate_seconds)}"
                f"{kept}."]


def run_seconds(probe: Probe, epochs: int, cost: float = 1.0) -> float:
    """A study run's estimated seconds: starting it, then `epochs` epochs of `cost` times the
    baseline's."""
    return probe.start_seconds + epochs * probe.fit_seconds * cost


def fit_budget(variants: list[str], probe: Probe, budget_seconds: float, spent_seconds: float,
               max_epochs: int, max_seeds: int, workers: int, second_round: int = 3,
               costs: dict[str, float] | None = None) -> BudgetPlan:
    """The most epochs, then seeds (at least `MIN_SEEDS`), with as many variants as fit.

    Variants are dropped from the end of `variants` (the least relevant to the
    doctor's findings, then the chapter's last) only when even one epoch of
    every one does not fit. The second round (`second_round` variants on fresh
    seeds) is planned for whenever two or more variants are kept.

    Args:
        variants: The variants besides the baseline, most important first.
        probe: The baseline's start and one epoch's seconds (`fit_seconds`).
        budget_seconds: The whole command's budget.
        spent_seconds: Seconds already spent (probing, range tests).
        max_epochs: The recipe's epochs (or `--epochs`).
        max_seeds: The seeds asked for.
        workers: Runs in parallel.
        second_round: Variants of the second round. Defaults to `3`.
        costs: Each variant's step time relative to the baseline's (`step_seconds`);
            the second round's runs cost the kept variants' mean. Defaults to `None`
            (all alike).

    Raises:
        UserInputError: Not even the baseline and one variant fit in 1 epoch of
            `MIN_SEEDS` seeds; says what one epoch takes and what the least needs.
    """
    available = budget_seconds - spent_seconds - REPORT_SECONDS

    weights = [(costs or {}).get(name, 1.0) for name in variants]

    def estimate(kept: int, seeds: int, epochs: int) -> tuple[float, int]:
        rounds = second_round if kept >= 2 else 0
        runs = (1 + kept + rounds) * seeds
        parallel = max(1, min(workers, os.cpu_count() or 1, runs))
        mean = sum(weights[:kept]) / kept
        total = sum(run_seconds(probe, epochs, cost) for cost in [1.0, *weights[:kept]])
        total += rounds * run_seconds(probe, epochs, mean)
        return SAFETY * seeds * total / parallel, runs

    for kept in range(len(variants), 0, -1):
        for epochs in range(max_epochs, 0, -1):
            needed, runs = estimate(kept, MIN_SEEDS, epochs)
            if needed > available:
                continue
            seeds = MIN_SEEDS
            while seeds < max_seeds and estimate(kept, seeds + 1, epochs)[0] <= available:
                seeds += 1
            needed, runs = estimate(kept, seeds, epochs)
            return BudgetPlan(budget_seconds, seeds, epochs, variants[kept:], needed, runs,
                              probe.fit_seconds)
    least, _ = estimate(1, MIN_SEEDS, 1)
    raise UserInputError(
        f"--budget: {duration(budget_seconds)} is too short: one epoch of the baseline takes "
        f"{seconds(probe.fit_seconds)} on one core (and {seconds(probe.start_seconds)} to "
        "start), so "
        f"the least study (the baseline and one variant, {MIN_SEEDS} seeds of 1 epoch) needs "
        f"about {duration(least + spent_seconds + REPORT_SECONDS)}; give more time or leave "
        "--budget out")


@dataclass
class Planning:
    """What was found before the study: the probe, the range tests, the budget.

    Args:
        key: What the planning was made for (recipe, options); a rerun with the
            same key reuses it.
        probe: The doctor's probe of the baseline.
        rates: Learning rates from the range test, by variant name.
        budget: The budget plan, with `--budget`.
        seconds: Seconds spent planning.
        costs: Each variant's step time relative to the baseline's, with `--budget`.
            Defaults to none.
    """

    key: dict[str, Any]
    probe: Probe
    rates: dict[str, float | None]
    budget: BudgetPlan | None
    seconds: float
    costs: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "probe": asdict(self.probe), "rates": self.rates,
                "budget": None if self.budget is None else asdict(self.budget),
                "seconds": self.seconds, "costs": self.costs}

    @classmethod
    def read(cls, folder: Path, key: dict[str, Any]) -> Planning | None:
        """The planning a run of the same command left in `folder`, or `None`."""
        try:
            document = json.loads((folder / PLANNING_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(document, dict) or document.get("key") != key:
            return None
        budget = document["budget"]
        return cls(key, Probe(**document["probe"]), document["rates"],
                   None if budget is None else BudgetPlan(**budget), document["seconds"],
                   document["costs"])

    def keep(self, scratch: Path, folder: Path) -> None:
        """Move the doctor's and range tests' folders from `scratch` into `folder`, then
        write `planning.json` (last: its presence means the rest is there)."""
        folder.mkdir(parents=True, exist_ok=True)
        for entry in sorted(scratch.iterdir()):
            target = folder / entry.name
            if target.exists():  # left by an interrupted first attempt (`planning_entries`)
                shutil.rmtree(target)
            shutil.move(str(entry), target)
        atomic.write_json(folder / PLANNING_FILE, self.to_json())


def with_rate(variant: Variant, rate: float | None) -> Variant:
    """An optimizer variant at the range test's rate (Keras's default when it found none)."""
    optimizer = dict(variant.change.set["train.optimizer"])
    found = rate is not None
    optimizer["learning_rate"] = rate if found else default_learning_rate(optimizer["name"])
    change = replace(variant.change, set={**variant.change.set, "train.optimizer": optimizer})
    how = ("from lr-find (the range test, cheaper than a search under --budget)" if found
           else "Keras's default (lr-find found no minimum)")
    description = f"{change.description}, learning rate {optimizer['learning_rate']:g} {how}"
    return replace(variant, change=change, description=description, searched=False)


def with_peak(variant: Variant, rate: float | None) -> Variant:
    """The 1cycle variant peaking at the range test's suggestion (kept as is without one)."""
    if rate is None:
        return variant
    schedule = {"one_cycle": {**variant.change.set["train.schedule"]["one_cycle"],
                              "max_learning_rate": rate}}
    description = re.sub(r"climbs from \S+ to \S+ and back",
                         f"climbs to {rate:g} (from lr-find) and back", variant.change.description)
    return replace(variant, change=replace(variant.change, set={
        **variant.change.set, "train.schedule": schedule}), description=description)


__all__ = ["FOCUS", "BudgetPlan", "Planning", "Probe", "changed_document", "duration",
           "fit_budget", "focus_order", "learning_rate_from_range_test", "parse_budget",
           "planning_entries", "probe_baseline", "remedies_first", "step_seconds", "with_peak",
           "with_rate"]

