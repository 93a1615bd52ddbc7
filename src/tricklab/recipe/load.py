"""Read a recipe file, apply `--set` overrides, validate and resolve it.

Every failure is a `UserInputError` with one line naming the file or the
dotted field, what was found and what would be accepted.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pydantic
import yaml

from tricklab.config import format_validation_error
from tricklab.errors import UserInputError
from tricklab.recipe.presets import apply_preset
from tricklab.recipe.resolve import resolve
from tricklab.recipe.schema import ModelSection, PhaseSection, Recipe, ReuseSection, TrainSection


def read_yaml(path: str | Path) -> Any:
    """Parse a YAML file with `yaml.safe_load` (no Python objects are ever constructed)."""
    path = Path(path)
    if not path.is_file():
        raise UserInputError(f"recipe file not found: {path}")
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise UserInputError(f"{path}: invalid YAML{where}: {problem}") from None
    except UnicodeDecodeError:
        raise UserInputError(f"{path}: not a UTF-8 text file") from None


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split `a.b.0.c=value` into its path and its YAML-typed value (`3` int, `[1]` list)."""
    path, equals, value = text.partition("=")
    if not equals or not path.strip():
        raise UserInputError(f"--set: expected PATH=VALUE such as train.epochs=3, got '{text}'")
    try:
        parsed = yaml.safe_load(value) if value.strip() else ""
    except yaml.YAMLError:
        parsed = value
    return path.strip().split("."), parsed


def apply_override(document: dict[str, Any], path: list[str], value: Any) -> None:
    """Set `value` at `path` in `document`, creating mappings on the way.

    A shorthand string met on the way is expanded so that it can be descended
    into: an optimizer `sgd` becomes `{name: sgd}` and a layer `flatten`
    becomes `{flatten: {}}`.
    """
    dotted = ".".join(path)
    node: Any = document
    for depth, key in enumerate(path[:-1]):
        child_key: Any = key
        if isinstance(node, list):
            child_key = _list_index(node, key, ".".join(path[: depth + 1]))
        elif not isinstance(node, dict):
            raise UserInputError(f"--set {dotted}: '{'.'.join(path[:depth])}' is not a mapping")
        child = node[child_key] if isinstance(node, list) else node.get(child_key)
        if child is None:
            child = {}
        elif isinstance(child, str):
            child = {"name": child} if key == "optimizer" else {child: {}}
        node[child_key] = child
        node = child
    last = path[-1]
    if isinstance(node, list):
        node[_list_index(node, last, dotted)] = value
    elif isinstance(node, dict):
        node[last] = value
    else:
        raise UserInputError(f"--set {dotted}: '{'.'.join(path[:-1])}' is not a mapping")


def _list_index(items: list[Any], key: str, dotted: str) -> int:
    if not key.lstrip("-").isdigit():
        raise UserInputError(f"--set {dotted}: '{key}' is not a list index (0..{len(items) - 1})")
    index = int(key)
    if not -len(items) <= index < len(items):
        raise UserInputError(
            f"--set {dotted}: index {index} is out of range; the list has {len(items)} items"
        )
    return index


def recipe_from_dict(document: Any, source: str = "recipe") -> Recipe:
    """Validate and resolve a recipe given as Python data.

    Args:
        document: The parsed YAML.
        source: Where the document came from, for messages. Defaults to `"recipe"`.
    """
    if not isinstance(document, dict):
        raise UserInputError(f"{source}: a recipe is a mapping with name, model and train")
    document = copy.deepcopy(document)
    decisions = apply_preset(document)
    try:
        recipe = Recipe.model_validate(document)
    except pydantic.ValidationError as error:
        accepted = _accepted_keys(error)
        raise UserInputError(format_validation_error(error, accepted=accepted)) from None
    resolved = resolve(recipe)
    resolved._preset_decisions = decisions
    return resolved


def _accepted_keys(error: pydantic.ValidationError) -> list[str]:
    first = error.errors()[0]
    if first["type"] != "extra_forbidden":
        return []
    location = tuple(first["loc"][:-1])
    if location[:2] == ("train", "phases") and len(location) == 3:
        location = ("train", "phases", 0)
    section = {
        (): Recipe, ("model",): ModelSection, ("model", "reuse"): ReuseSection,
        ("train",): TrainSection, ("train", "phases", 0): PhaseSection,
    }.get(location)
    if section is None:
        return []
    return sorted(field.alias or name for name, field in section.model_fields.items())


def load_recipe(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Recipe:
    """Read, override, validate and resolve a recipe file.

    Args:
        path: The recipe YAML file.
        overrides: `PATH=VALUE` strings applied in order, as `--set` does. Defaults to `()`.

    Raises:
        UserInputError: Naming the file or the dotted field at fault.
    """
    document = read_yaml(path)
    if not isinstance(document, dict):
        raise UserInputError(f"{path}: a recipe is a mapping with name, model and train")
    for override in overrides:
        apply_override(document, *parse_override(override))
    return recipe_from_dict(document, str(path))
