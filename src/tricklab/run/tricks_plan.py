"""What `tricklab tricks` tries on a recipe: its variants, what is skipped, the study file.

`plan_tricks` derives each trick's change of the user's recipe
(`trick_variants`), validates the recipe each would make, and lists what does
not apply with its reason; `TricksPlan.study_text` is the study `tricks.yaml`.

Optimizers are compared at a learning rate each: with a validation split, the
study's own `lr_search` (the DeepOBS protocol, Schneider et al. 2019) picks
it per optimizer from `LEARNING_RATES` and the recipe's rate, on the
validation metric; without one, each trains at the recipe's rate (SGD
variants of an SGD recipe) or Keras's default.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tricklab.errors import UserInputError, did_you_mean, shown_value
from tricklab.recipe.load import apply_override, read_yaml, recipe_from_dict
from tricklab.recipe.reported import has_validation, metric_names
from tricklab.recipe.study import MAX_SEEDS
from tricklab.recipe.yaml_input import shown_path
from tricklab.run.trick_variants import FAMILIES, TRICKS, Change, Subject, Trick

LEARNING_RATES = (1e-4, 1e-3, 1e-2)
"""The search grid of the optimizer variants, with the recipe's own rate added."""
STUDY_FILE = "tricks.yaml"
DEFAULT_SEEDS = 5


@dataclass(frozen=True)
class Variant:
    """A trick that applies to the recipe: one variant of the study.

    Args:
        trick: The trick.
        change: What it changes in this recipe.
        description: The variant's line in the study file and the report.
        searched: Whether the study's `lr_search` chooses its learning rate.
    """

    trick: Trick
    change: Change
    description: str
    searched: bool

    @property
    def name(self) -> str:
        return self.trick.name


@dataclass
class TricksPlan:
    """What `tricklab tricks` will run on one recipe.

    Args:
        recipe_path: The user's recipe file.
        subject: The recipe, read.
        variants: The variants that apply, in the chapter's order.
        skipped: Each variant left out, with the reason.
        seeds: Seeds per variant.
        epochs: Epochs per run (the study's budget), or `None` for the recipe's.
        quick: Two seeds of one epoch, one variant per family.
        metric: The final metric compared, e.g. `test_accuracy`.
        search_metric: The validation metric the learning-rate search ranks by, or
            `None` when nothing is searched.
        grid: The learning rates searched.
    """

    recipe_path: Path
    subject: Subject
    variants: list[Variant]
    skipped: dict[str, str]
    seeds: int
    epochs: int | None
    quick: bool
    metric: str
    search_metric: str | None
    grid: list[float] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"{self.subject.recipe.name[:53]}-tricks"

    def study_document(self, folder: Path) -> dict[str, Any]:
        """The study file's contents, its `base:` the recipe as seen from `folder`."""
        try:
            base = os.path.relpath(self.recipe_path.resolve(), folder.resolve())
        except ValueError:  # another drive: only an absolute path reaches it
            base = str(self.recipe_path.resolve())
        variants: dict[str, Any] = {"baseline": {"description": "the recipe as it is"}}
        for variant in self.variants:
            variants[variant.name] = {"description": variant.description,
                                      "set": copy.deepcopy(variant.change.set)}
        quick = [name for name, reason in self.skipped.items() if reason.startswith("--quick")]
        skipped = [f"{name} ({reason})" for name, reason in self.skipped.items()
                   if name not in quick]
        if quick:
            skipped.append(f"{len(quick)} more left out by --quick")
        document: dict[str, Any] = {
            "name": self.name,
            "question": f"Which of the chapter's tricks help {self.subject.recipe.name}?",
            "description": "Made by tricklab tricks: the baseline is the recipe as it is, each "
                           "variant changes one thing of it."
                           + (f" Not tried: {'; '.join(skipped)}." if skipped else ""),
            "base": base, "seeds": self.seeds, "metric": self.metric, "baseline": "baseline",
        }
        if self.epochs is not None:
            document["budget"] = {"epochs": self.epochs}
        searched = [variant.name for variant in self.variants if variant.searched]
        if searched:
            document["lr_search"] = {"grid": self.grid, "seeds": 2,
                                     "metric": self.search_metric, "variants": searched}
        return {**document, "quick": {"seeds": 2, "epochs": 1}, "variants": variants}

    def study_text(self, folder: Path) -> str:
        """`tricks.yaml` as written into `folder`: a comment, then the study."""
        header = (f"# The study `tricklab tricks {shown_path(self.recipe_path)}` made and ran: "
                  "edit it and run it again\n# with `tricklab study` (--out DIR for another "
                  "folder).\n")
        return header + yaml.safe_dump(self.study_document(folder), sort_keys=False,
                                       allow_unicode=True, width=100)


def parse_families(text: str | None) -> tuple[str, ...]:
    """`init_activation,optimizer` -> the families, in the chapter's order; `None`: all.

    Raises:
        UserInputError: Naming an unknown family and listing the known ones.
    """
    if text is None:
        return FAMILIES
    names = [name.strip() for name in text.split(",") if name.strip()]
    for name in names:
        if name not in FAMILIES:
            suggestion = did_you_mean(name, FAMILIES)
            known = f" Known: {', '.join(FAMILIES)}" if suggestion else (
                f"; known: {', '.join(FAMILIES)}")
            raise UserInputError(f"--families: {shown_value(name)} is not a family of tricks"
                                 f"{suggestion}{known}")
    if not names:
        raise UserInputError(f"--families: no family given; known: {', '.join(FAMILIES)}")
    return tuple(family for family in FAMILIES if family in names)


def _describe(trick: Trick, change: Change, searched: str | None) -> str:
    """The variant's line; an optimizer's says its learning rate, or how it is chosen."""
    optimizer = change.set.get("train.optimizer")
    if trick.family != "optimizer" or optimizer is None:
        return change.description
    if searched is not None:
        return f"{change.description}, learning rate chosen on {searched}"
    return f"{change.description}, learning rate {optimizer['learning_rate']:g}"


def _validate(document: dict[str, Any], change: Change, source: str) -> str | None:
    """Why the recipe with the change would be invalid (a bug of the trick), or `None`."""
    changed = copy.deepcopy(document)
    for dotted, value in change.set.items():
        apply_override(changed, dotted.split("."), copy.deepcopy(value))
    try:
        recipe_from_dict(changed, source)
    except UserInputError as error:
        return f"its recipe would be invalid: {error}"
    return None


def plan_tricks(
    recipe_path: str | Path, families: tuple[str, ...] = FAMILIES, seeds: int = DEFAULT_SEEDS,
    epochs: int | None = None, quick: bool = False,
) -> TricksPlan:
    """Derive the variants of a recipe and what is skipped, validating every variant's recipe.

    Args:
        recipe_path: The user's recipe file.
        families: The families to try (see `parse_families`). Defaults to all.
        seeds: Seeds per variant, from 1 to `MAX_SEEDS`. Defaults to `5`.
        epochs: Epochs per run, replacing the recipe's. Defaults to `None`.
        quick: Keep the first variant of each family (and run 2 seeds of 1 epoch).
            Defaults to `False`.

    Raises:
        UserInputError: An invalid recipe, a bad number, or no variant that applies.
    """
    recipe_path = Path(recipe_path)
    if not 1 <= seeds <= MAX_SEEDS:
        raise UserInputError(f"--seeds: {seeds} is not a number of seeds from 1 to {MAX_SEEDS}")
    if epochs is not None and epochs < 1:
        raise UserInputError(f"--epochs: {epochs} is not a number of epochs (1 or more)")
    document = read_yaml(recipe_path)
    if not isinstance(document, dict):
        raise UserInputError(
            f"{shown_path(recipe_path)}: a recipe is a mapping with name, model and train")
    subject = Subject.of(document, epochs, shown_path(recipe_path))
    recipe = subject.recipe
    stem = (metric_names(recipe) or ["loss"])[0]
    search = f"val_{stem}" if has_validation(recipe) else None
    rate = recipe.train.optimizer["learning_rate"]
    grid = sorted({*LEARNING_RATES, rate}) if search else []
    variants: list[Variant] = []
    skipped: dict[str, str] = {}
    for trick in (trick for trick in TRICKS if trick.family in families):
        change = trick.derive(subject)
        if isinstance(change, str):
            skipped[trick.name] = change
            continue
        invalid = _validate(document, change, shown_path(recipe_path))
        if invalid is not None:
            skipped[trick.name] = invalid
            continue
        kept = next((v.name for v in variants if v.trick.family == trick.family), None)
        if quick and kept is not None:
            skipped[trick.name] = f"--quick tries one variant per family: {kept} here"
            continue
        searched = search if trick.family == "optimizer" and search else None
        if searched is not None:
            searched = f"{search} from {', '.join(f'{r:g}' for r in grid)} by the study's search"
        variants.append(Variant(trick, change, _describe(trick, change, searched),
                                searched is not None))
    if not variants:
        reasons = "; ".join(f"{name}: {reason}" for name, reason in skipped.items())
        raise UserInputError(f"{shown_path(recipe_path)}: no trick of "
                             f"{', '.join(families)} applies to this recipe ({reasons})")
    return TricksPlan(recipe_path, subject, variants, skipped, seeds, epochs, quick,
                      f"test_{stem}", search, grid)


__all__ = ["DEFAULT_SEEDS", "LEARNING_RATES", "STUDY_FILE", "TricksPlan", "Variant",
           "parse_families", "plan_tricks"]
