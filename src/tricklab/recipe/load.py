"""Read a recipe file, apply `--set` overrides, validate and resolve it.

Every failure is a `UserInputError` with one line naming the file or the
dotted field, what was found and what would be accepted.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tricklab.recipe.document import (
    apply_override,
    check_structure,
    parse_override,
    read_document,
    read_yaml,
)
from tricklab.recipe.resolve import resolve
from tricklab.recipe.schema import Recipe
from tricklab.recipe.snapshot import Snapshot
from tricklab.recipe.yaml_input import shown_path


def recipe_from_dict(document: Any, source: str = "recipe",
                     snapshot: Snapshot | None = None) -> Recipe:
    """Validate and resolve a recipe given as Python data.

    Args:
        document: The parsed YAML.
        source: Where the document came from, for messages. Defaults to `"recipe"`.
        snapshot: Only check it against this registry snapshot, without PyTorch (see
            `tricklab.recipe.resolve.resolve`). Defaults to `None`.
    """
    activations = None if snapshot is None else snapshot["activations"]
    recipe, decisions = check_structure(document, source, activations)
    resolved = resolve(recipe, snapshot)
    resolved._preset_decisions = decisions
    return resolved


def load_recipe(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Recipe:
    """Read, override, validate and resolve a recipe file.

    Args:
        path: The recipe YAML file.
        overrides: `PATH=VALUE` strings applied in order, as `--set` does. Defaults to `()`.

    Raises:
        UserInputError: Naming the file or the dotted field at fault.
    """
    return recipe_from_dict(read_document(path, overrides), shown_path(path))


__all__ = ["apply_override", "load_recipe", "parse_override", "read_yaml", "recipe_from_dict"]
