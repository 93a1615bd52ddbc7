"""Study specs: a base recipe, named variants as overrides, seeds, a budget, a baseline.

A study file is YAML, validated like a recipe (unknown keys are errors naming
their path), and every variant × seed becomes one ordinary recipe, validated
before anything runs:

```yaml
name: ladder
question: Which of the chapter's tricks help a 128-32-10 MLP?
base: ../recipes/chapter11/ladder_baseline.yaml   # a recipe file (relative to this file) or inline
seeds: 5                                         # or an explicit list [0, 1, 2]
budget: {epochs: 10}                             # every variant trains this long
metric: test_accuracy                            # compared across variants (default)
target: {metric: val_accuracy, value: 0.85}      # optional: time to reach it
baseline: baseline                               # default: the first variant
variants:
  baseline: {}
  dropout:
    description: dropout 0.2 after each hidden layer
    set: {model.layers: [...]}                   # dotted path -> value (a whole list too)
  l2:
    extends: dropout                             # the ladder: start from another variant
    set: {train.optimizer.learning_rate: 0.001}
lr_search: {grid: [1.0e-4, 1.0e-3, 1.0e-2], seeds: 2, variants: [dropout]}
quick: {seeds: 2, epochs: 1}                     # what --quick shrinks the study to
```

`tricklab study FILE --set PATH=VALUE` (`load_study`'s `overrides`) changes
every variant's recipe the same way, and is kept with the study.
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import pydantic
from pydantic import Field
from pydantic_core import PydanticCustomError

from tricklab.config import format_validation_error
from tricklab.errors import UserInputError, did_you_mean
from tricklab.recipe.load import apply_override, parse_override, read_yaml, recipe_from_dict
from tricklab.recipe.reported import logged_keys, result_metric_names, unlisted_metric
from tricklab.recipe.schema import Recipe, _Section
from tricklab.recipe.snapshot import Snapshot

MAX_SEEDS = 1000
"""The most seeds a study may have: its `seeds` number, its seed list's length and `--seeds`."""
SEED_LIMIT = 2**63
"""Seeds are below this, as a recipe's `seed` is (`tricklab.recipe.schema.Recipe`)."""
Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", max_length=60)]


class VariantSpec(_Section):
    """One variant: overrides of the base recipe, optionally on top of another variant.

    Args:
        extends: The variant this one starts from (its overrides apply first).
            Defaults to `None` (the base recipe).
        recipe: A recipe file (relative to the study file) this variant starts from
            instead of the study's base, e.g. one of `recipes/chapter11/`. Defaults to `None`.
        description: One line for the report. Defaults to `None`.
        set: Dotted recipe paths and their values, e.g. `train.optimizer.name: nadam`
            or `model.layers: [...]`. Defaults to `{}`.
    """

    extends: Name | None = None
    recipe: str | None = None
    description: str | None = None
    set: dict[str, Any] = Field(default_factory=dict)


class LearningRateSearch(_Section):
    """Per-variant learning-rate search, the DeepOBS protocol (Schneider et al. 2019).

    Each searched variant trains at every rate of a log grid with the first
    `seeds` seeds; the rate with the best mean validation `metric` is then used
    for all of the study's seeds.

    Args:
        grid: Learning rates to try, at least two, all > 0.
        seeds: How many of the study's seeds the search uses. Defaults to `2`.
        metric: Validation metric that chooses the rate, as the runs' final metrics
            (`result.json`) name it: a `val_` one such as `val_loss`. Defaults to
            `"val_accuracy"`.
        variants: Variants to search. Defaults to `None` (every variant).
    """

    grid: Annotated[list[Annotated[float, Field(gt=0)]], Field(min_length=2)]
    seeds: Annotated[int, Field(ge=1)] = 2
    metric: str = "val_accuracy"
    variants: list[Name] | None = None


class Quick(_Section):
    """What `--quick` shrinks a study to: a look at the pipeline, not a measurement.

    Args:
        seeds: Seeds per variant. Defaults to `2`.
        epochs: Epochs per run (at most the study's own). Defaults to `1`.
    """

    seeds: Annotated[int, Field(ge=1)] = 2
    epochs: Annotated[int, Field(ge=1)] = 1


class Target(_Section):
    """A level to reach: the report gives each variant's epochs and seconds to reach it.

    Args:
        metric: A per-epoch `history` key. Defaults to `"val_accuracy"`.
        value: The level (reached at `>=` for accuracies, `<=` for losses).
    """

    metric: str = "val_accuracy"
    value: float


class Budget(_Section):
    """The training budget every variant gets, so the comparison is fair.

    Args:
        epochs: Epochs per run (early stopping may use fewer).
    """

    epochs: Annotated[int, Field(ge=1)]


class StudySpec(_Section):
    """A whole study file (see the module docstring for an example).

    Args:
        name: Study name; its directory is `runs/<name>/`.
        question: The question the study answers, for the report. Defaults to `""`.
        description: More words for the report. Defaults to `None`.
        base: A recipe file (relative to the study file) or an inline recipe.
        variants: Named variants, in report order; at least one.
        baseline: The variant the others are compared with. Defaults to the first.
        seeds: How many seeds (0, 1, ...), from 1 to `MAX_SEEDS`, or an explicit list
            of at most `MAX_SEEDS` distinct seeds. Defaults to `5`.
        metric: Final metric compared across variants, one every run reports (a
            `result.json` metric such as `test_loss`). Defaults to `"test_accuracy"`.
        target: Level for time-to-target. Defaults to `None`.
        budget: Training budget for every variant. Defaults to `None` (the recipes' own).
        lr_search: Learning-rate search. Defaults to `None` (none).
        quick: What `--quick` means for this study. Defaults to `Quick()`.
    """

    name: Name
    question: str = ""
    description: str | None = None
    base: str | dict[str, Any]
    variants: Annotated[dict[Name, VariantSpec | None], Field(min_length=1)]
    baseline: Name | None = None
    seeds: int | list[int] = 5
    metric: str = "test_accuracy"
    target: Target | None = None
    budget: Budget | None = None
    lr_search: LearningRateSearch | None = None
    quick: Quick = Quick()


    @pydantic.field_validator("seeds")
    @classmethod
    def _seeds_in_range(cls, seeds: int | list[int]) -> int | list[int]:
        # One check for both forms, so an error names `seeds` as the file writes it.
        if isinstance(seeds, int) and not 1 <= seeds <= MAX_SEEDS:
            raise PydanticCustomError(
                "seeds", f"a number of seeds should be from 1 to {MAX_SEEDS}"
            )
        if isinstance(seeds, list) and not seeds:
            raise PydanticCustomError("seeds", "a list of seeds should not be empty")
        if isinstance(seeds, list) and len(seeds) > MAX_SEEDS:
            raise PydanticCustomError(
                "seeds", f"a list of seeds should hold at most {MAX_SEEDS} seeds, not {len(seeds)}"
            )
        if isinstance(seeds, list) and any(seed < 0 for seed in seeds):
            raise PydanticCustomError("seeds", "seeds should be 0 or more")
        if isinstance(seeds, list) and any(seed >= SEED_LIMIT for seed in seeds):
            raise PydanticCustomError("seeds", "seeds should be below 2**63, as a recipe's seed is")
        if isinstance(seeds, list) and len(set(seeds)) < len(seeds):
            # Runs are named by seed (`a/seed-3`): a repeated seed would be one run counted twice.
            repeated = next(seed for seed in seeds if seeds.count(seed) > 1)
            raise PydanticCustomError(
                "seeds", f"the seeds of a list should all differ; {repeated} is there twice"
            )
        return seeds

    @pydantic.field_validator("lr_search")
    @classmethod
    def _distinct_rates(cls, search: LearningRateSearch | None) -> LearningRateSearch | None:
        # Search runs are named by rate (`lr-0.001`), so rates must differ when written.
        if search is not None and len({f"{rate:g}" for rate in search.grid}) < len(search.grid):
            raise PydanticCustomError(
                "grid", "the learning rates of lr_search.grid should all differ"
            )
        return search


@dataclass(frozen=True)
class PlannedRun:
    """One run of a study: where it goes and the recipe it trains.

    Args:
        run_id: `<variant>/seed-<seed>`, or `<variant>/lr-<rate>/seed-<seed>` in a search.
        variant: The variant's name.
        seed: The seed.
        phase: `"main"` or `"lr_search"`.
        learning_rate: The rate a search set, else `None`.
        recipe: The resolved recipe, as plain data.
    """

    run_id: str
    variant: str
    seed: int
    phase: str
    learning_rate: float | None
    recipe: dict[str, Any]

    @property
    def run_dir(self) -> str:
        """The run directory, relative to the study directory."""
        return f"runs/{self.run_id}"


@dataclass
class Study:
    """A validated study, ready to plan runs.

    Args:
        spec: The resolved spec as plain data (what the study store keeps).
        source: The study file, for messages.
        variant_documents: Each variant's recipe document before seed and rate are set.
        snapshot: The registry snapshot the recipes are checked against, without PyTorch,
            instead of being resolved (see `load_study`). Defaults to `None`.
    """

    spec: dict[str, Any]
    source: str
    variant_documents: dict[str, dict[str, Any]]
    snapshot: Snapshot | None = None

    @property
    def name(self) -> str:
        return self.spec["name"]

    @property
    def fingerprint(self) -> str:
        """Digest of everything that changes results; seeds are left out, so more may be added."""
        relevant = {
            "metric": self.spec["metric"],
            "lr_search": None if self.spec["lr_search"] is None
            else {**self.spec["lr_search"], "seeds": None},
            "variants": {
                name: [_without_seed(variant["recipe"]), variant["lr_search"]]
                for name, variant in self.spec["variants"].items()
            },
        }
        # Only when given: a study run without --set keeps the digest stored before --set existed.
        if self.spec.get("overrides"):
            # As parsed: `train.epochs=1` and `train.epochs= 1` are the same study.
            relevant["overrides"] = [parse_override(text) for text in self.spec["overrides"]]
        return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()

    def searched(self) -> list[str]:
        """The variants whose learning rate is searched."""
        return [name for name, variant in self.spec["variants"].items() if variant["lr_search"]]

    def plan(self, variant: str, seed: int, learning_rate: float | None = None,
             phase: str = "main") -> PlannedRun:
        """The resolved recipe of one run (validated again: a rate or seed may be invalid)."""
        document = copy.deepcopy(self.variant_documents[variant])
        document["seed"] = seed
        run_id = f"{variant}/seed-{seed}"
        if learning_rate is not None:
            apply_override(document, ["train", "optimizer", "learning_rate"], learning_rate)
            if phase == "lr_search":
                run_id = f"{variant}/lr-{learning_rate:g}/seed-{seed}"
        suffix = f"-{run_id.replace('/', '-')}"
        document["name"] = f"{self.name[: 100 - len(suffix)]}{suffix}"
        try:
            recipe = recipe_from_dict(document, "recipe", self.snapshot)
        except UserInputError as error:
            raise UserInputError(f"{self.source}: variants.{variant}: {error}") from None
        return PlannedRun(run_id, variant, seed, phase, learning_rate, recipe.to_dict())


def _without_seed(recipe: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in recipe.items() if key not in ("seed", "name")}


def load_study(
    path: str | Path,
    seeds: int | None = None,
    quick: bool = False,
    overrides: list[str] | tuple[str, ...] = (),
    snapshot: Snapshot | None = None,
) -> Study:
    """Read and validate a study file, resolving every variant's recipe.

    Args:
        path: The study YAML file.
        seeds: Number of seeds, replacing the file's, from 1 to `MAX_SEEDS`. Defaults
            to `None` (the file's).
        quick: Shrink seeds and epochs as the file's `quick:` says. Defaults to `False`.
        overrides: `PATH=VALUE` strings, as `tricklab train --set` takes them, applied
            in order to every variant's recipe after its own `set:` and the study's
            `budget:` (so `train.epochs=1` shortens every run), before `--quick`
            shrinks the epochs. They are kept in the spec (`overrides`) and count in
            the fingerprint. Defaults to `()`.
        snapshot: Only check the file, against this registry snapshot and without
            importing PyTorch (`tricklab.recipe.quick_check`): what the snapshot cannot
            decide (a run's metric names, among others) is left unchecked, and the study
            returned is not to be run. Defaults to `None` (resolve everything).

    Raises:
        UserInputError: Naming the file and the field at fault, among them a
            `metric`, `target.metric` or `lr_search.metric` that some variant's runs
            would not produce (see `tricklab.recipe.reported`), or the `--set` at
            fault and the variant it failed on.
    """
    path = Path(path)
    if seeds is not None and not 1 <= seeds <= MAX_SEEDS:
        raise UserInputError(
            f"--seeds: {seeds} is not a number of seeds from 1 to {MAX_SEEDS}"
        )
    parsed = [_study_override(text) for text in overrides]
    document = read_yaml(path, "study")
    try:
        spec = StudySpec.model_validate(document)
    except pydantic.ValidationError as error:
        message = format_validation_error(error, accepted=_accepted_keys(error))
        raise UserInputError(f"{path}: {message}") from None
    base = _base_document(spec.base, path)
    seed_list = list(range(spec.seeds)) if isinstance(spec.seeds, int) else list(spec.seeds)
    if seeds is not None:
        seed_list = list(range(seeds))
    if quick:
        seed_list = seed_list[: spec.quick.seeds]
    baseline = spec.baseline or next(iter(spec.variants))
    if baseline not in spec.variants:
        raise UserInputError(
            f"{path}: baseline: '{baseline}' is not a variant "
            f"(variants: {', '.join(spec.variants)})"
        )
    searched = _searched(spec, path)
    documents: dict[str, dict[str, Any]] = {}
    variants: dict[str, Any] = {}
    for name in spec.variants:
        documents[name] = _variant_document(spec, name, base, path)
        if spec.budget is not None:
            _set_epochs(documents[name].setdefault("train", {}), spec.budget.epochs)
        for dotted, value in parsed:
            try:
                apply_override(documents[name], dotted, copy.deepcopy(value))
            except UserInputError as error:
                raise UserInputError(f"{error} (in variant '{name}' of {path})") from None
        if quick:
            _set_epochs(documents[name].setdefault("train", {}), spec.quick.epochs, at_most=True)
    resolved: dict[str, Any] = {
        "name": spec.name,
        "question": spec.question,
        "description": spec.description,
        "metric": spec.metric,
        "higher_is_better": None if snapshot is not None else _higher_is_better(spec.metric),
        "baseline": baseline,
        "seeds": seed_list,
        "target": None if spec.target is None else spec.target.model_dump(),
        "budget": None if spec.budget is None else spec.budget.model_dump(),
        "quick": quick,
        "overrides": list(overrides),
        "variants": variants,
        "lr_search": None if spec.lr_search is None else {
            "grid": sorted(spec.lr_search.grid),
            "seeds": seed_list[: spec.lr_search.seeds],
            "metric": spec.lr_search.metric,
        },
    }
    study = Study(resolved, str(path), documents, snapshot)
    for name in spec.variants:
        description = (spec.variants[name] or VariantSpec()).description
        variants[name] = {
            "description": description,
            "recipe": study.plan(name, seed_list[0]).recipe,
            "lr_search": name in searched,
            "extends": (spec.variants[name] or VariantSpec()).extends,
        }
    if searched and not all(
        variants[name]["recipe"]["data"].get("validation") for name in searched
    ):
        raise UserInputError(
            f"{path}: lr_search: choosing a learning rate needs a validation split; "
            "set data.validation in the base recipe (e.g. 5000)"
        )
    if snapshot is None:
        _check_metric_names(study, searched)
    return study


def _higher_is_better(metric: str) -> bool:
    # Imported here: statistics need NumPy and SciPy, which a quick check spares.
    from tricklab.study.statistics import higher_is_better

    return higher_is_better(metric)


def _study_override(text: str) -> tuple[list[str], Any]:
    """`PATH=VALUE` parsed as `--set` does; `seed` and `name` are the study's to set per run.

    Raises:
        UserInputError: A malformed override, or one of `seed` or `name`.
    """
    dotted, value = parse_override(text)
    if dotted in (["seed"], ["name"]):
        hint = ("choose them with --seeds or the study file's `seeds`" if dotted == ["seed"]
                else "they are named after the study file's `name`")
        raise UserInputError(f"--set {dotted[0]}: a study sets each run's {dotted[0]}; {hint}")
    return dotted, value


def _check_metric_names(study: Study, searched: list[str]) -> None:
    """Check the names the study compares against what every run of it reports.

    `metric` and `lr_search.metric` are read from each run's final metrics
    (`result.json`), `target.metric` from its per-epoch history; a name no run
    produces would otherwise be found missing only after every run has trained.

    Raises:
        UserInputError: Naming the study file, the field, the name, the closest
            accepted name (or the metric to list) and every accepted one.
    """
    spec = study.spec
    recipes = {
        name: Recipe.model_validate(variant["recipe"]) for name, variant in spec["variants"].items()
    }
    finals = {name: result_metric_names(recipe) for name, recipe in recipes.items()}
    _check_named(study.source, "metric", spec["metric"], recipes, finals, "reported")
    if spec["target"] is not None:
        history = {name: logged_keys(recipe) for name, recipe in recipes.items()}
        _check_named(study.source, "target.metric", spec["target"]["metric"], recipes, history,
                     "logged per epoch")
    if spec["lr_search"] is not None:
        # The rate is chosen on validation scores only: choosing it on the test set
        # would leak the test set into the comparison it is kept for.
        validation = {
            name: [key for key in finals[name] if key.startswith("val_")] for name in searched
        }
        _check_named(study.source, "lr_search.metric", spec["lr_search"]["metric"], recipes,
                     validation, "a validation metric reported")


def _check_named(
    source: str,
    field: str,
    value: str,
    recipes: dict[str, Recipe],
    accepted: dict[str, list[str]],
    what: str,
) -> None:
    """Refuse `value` unless every variant's list in `accepted` holds it.

    Args:
        source: The study file, for the message.
        field: The field's dotted path in the study file.
        value: The name the study gives.
        recipes: Each variant's resolved recipe.
        accepted: Each variant that must produce `value`, with the names it does produce.
        what: How the runs produce such names, e.g. `"reported"`.
    """
    missing = [name for name, names in accepted.items() if value not in names]
    if not missing:
        return
    lists = list(accepted.values())
    common = [name for name in lists[0] if all(name in names for names in lists[1:])]
    every = len(missing) == len(accepted)
    who = "any run" if every else f"the runs of variant '{missing[0]}'"
    unlisted = unlisted_metric(value, recipes[missing[0]], accepted[missing[0]])
    if unlisted:
        whose = "" if every else "its "
        suggestion = f", as {whose}train.metrics does not list {unlisted}"
    else:
        suggestion = did_you_mean(value, common)
    listing = ", ".join(common) or "none"
    listing = f" Accepted: {listing}" if suggestion.endswith("?") else f"; accepted: {listing}"
    raise UserInputError(
        f"{source}: {field}: '{value}' is not {what} by {who}{suggestion}{listing}"
    )


def _set_epochs(train: dict[str, Any], epochs: int, at_most: bool = False) -> None:
    """Make a run train `epochs` epochs (`at_most`: no more than that), phases included.

    Phases are kept in order and cut where the epochs run out; a longer budget
    lengthens the last phase.
    """
    phases = train.get("phases")
    if not isinstance(phases, list) or not all(
        isinstance(phase, dict) and isinstance(phase.get("epochs"), int) for phase in phases
    ) or not phases:
        train["epochs"] = min(int(train.get("epochs", 1)), epochs) if at_most else epochs
        return
    left = min(sum(phase["epochs"] for phase in phases), epochs) if at_most else epochs
    kept = []
    for phase in phases:
        if left <= 0:
            break
        kept.append({**phase, "epochs": min(phase["epochs"], left)})
        left -= kept[-1]["epochs"]
    kept[-1]["epochs"] += left
    train["phases"] = kept
    train.pop("epochs", None)


def _accepted_keys(error: pydantic.ValidationError) -> list[str] | None:
    """For an unknown key, the keys its section accepts."""
    first = error.errors()[0]
    if first["type"] != "extra_forbidden":
        return None
    parent = tuple(first["loc"][:-1])
    sections: dict[tuple, type[_Section]] = {
        (): StudySpec, ("lr_search",): LearningRateSearch, ("quick",): Quick,
        ("target",): Target, ("budget",): Budget,
    }
    section = VariantSpec if parent[:1] == ("variants",) and len(parent) == 2 else (
        sections.get(parent)
    )
    return sorted(section.model_fields) if section else None


def _base_document(
    base: str | dict[str, Any], path: Path, field: str = "base"
) -> dict[str, Any]:
    if isinstance(base, dict):
        return copy.deepcopy(base)
    recipe_path = (path.parent / base) if not Path(base).is_absolute() else Path(base)
    if not recipe_path.is_file():
        raise UserInputError(f"{path}: {field}: recipe file not found: {recipe_path}")
    document = read_yaml(recipe_path)
    if not isinstance(document, dict):
        raise UserInputError(f"{recipe_path}: a recipe is a mapping with name, model and train")
    return document


def _searched(spec: StudySpec, path: Path) -> list[str]:
    if spec.lr_search is None:
        return []
    names = spec.lr_search.variants if spec.lr_search.variants is not None else list(spec.variants)
    for name in names:
        if name not in spec.variants:
            raise UserInputError(
                f"{path}: lr_search.variants: '{name}' is not a variant "
                f"(variants: {', '.join(spec.variants)})"
            )
    return names


def _variant_document(
    spec: StudySpec, name: str, base: dict[str, Any], path: Path
) -> dict[str, Any]:
    """The base recipe with the overrides of the variant's `extends` chain, oldest first."""
    chain: list[str] = []
    current: str | None = name
    while current is not None:
        if current in chain:
            cycle = " -> ".join([*chain, current])
            raise UserInputError(f"{path}: variants.{name}.extends: the chain loops ({cycle})")
        if current not in spec.variants:
            raise UserInputError(
                f"{path}: variants.{chain[-1]}.extends: '{current}' is not a variant "
                f"(variants: {', '.join(spec.variants)})"
            )
        chain.append(current)
        link = spec.variants[current] or VariantSpec()
        if link.recipe is not None:  # a variant's own recipe replaces everything it extends
            base = _base_document(link.recipe, path, f"variants.{current}.recipe")
            break
        current = link.extends
    document = copy.deepcopy(base)
    for link in reversed(chain):
        for dotted, value in (spec.variants[link] or VariantSpec()).set.items():
            try:
                apply_override(document, dotted.split("."), copy.deepcopy(value))
            except UserInputError as error:
                message = str(error).removeprefix("--set ")
                raise UserInputError(f"{path}: variants.{link}.set: {message}") from None
    return document
