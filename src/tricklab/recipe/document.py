"""A recipe as a document: read, overridden and checked for shape, without PyTorch.

Everything here runs before any technique is imported: reading the YAML file
safely, applying `--set` overrides, filling in a preset and checking the
sections' structure. `tricklab.recipe.load` then resolves the named techniques
against their registries.
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Container
from pathlib import Path
from typing import Any

import pydantic
import yaml

from tricklab.config import format_validation_error
from tricklab.errors import UserInputError, shown_value
from tricklab.recipe.presets import apply_preset
from tricklab.recipe.schema import ModelSection, PhaseSection, Recipe, ReuseSection, TrainSection
from tricklab.recipe.yaml_input import parse_yaml, read_yaml_file, shown_path


def read_yaml(path: str | Path, kind: str = "recipe") -> Any:
    """Parse a YAML file safely and within bounds (see `tricklab.recipe.yaml_input`).

    No Python object is ever constructed; a file over 1 MiB, nested over 64
    levels, over 100,000 nodes with its aliases expanded, or with a key written
    twice in a mapping is refused.

    Args:
        path: The file.
        kind: What the file is, as a missing file's message names it. Defaults to
            `"recipe"`.

    Raises:
        UserInputError: Naming the file (and the line) at fault.
    """
    # `os.path.isfile`, not `Path.is_file`: a name too long for the system is not found,
    # where `Path.is_file` raises.
    if not os.path.isfile(path):
        raise UserInputError(f"{kind} file not found: {shown_path(path)}")
    return read_yaml_file(path)


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split `a.b.0.c=value` into its path and its YAML-typed value (`3` int, `[1]` list).

    The value is read as YAML within the bounds a recipe file has; text that is
    not YAML (`[1,`) stays a string.

    Raises:
        UserInputError: When there is no `PATH=`, or the value crosses a bound.
    """
    path, equals, value = text.partition("=")
    if not equals or not path.strip():
        raise UserInputError(
            f"--set: expected PATH=VALUE such as train.epochs=3, got {shown_value(text)}"
        )
    dotted = path.strip()
    try:
        parsed = parse_yaml(value, f"--set {_shown_path(dotted)}") if value.strip() else ""
    except yaml.YAMLError:
        parsed = value
    return dotted.split("."), parsed


def _shown_path(dotted: str) -> str:
    """A `--set` path as messages show it: as typed, unless too long or not printable."""
    return dotted if dotted.isprintable() and len(dotted) <= 80 else shown_value(dotted)


def apply_override(document: dict[str, Any], path: list[str], value: Any) -> None:
    """Set `value` at `path` in `document`, creating mappings on the way.

    A shorthand string met on the way is expanded so that it can be descended
    into: an optimizer `sgd` becomes `{name: sgd}` and a layer `flatten`
    becomes `{flatten: {}}`.
    """
    dotted = _shown_path(".".join(path))
    node: Any = document
    for depth, key in enumerate(path[:-1]):
        child_key: Any = key
        if isinstance(node, list):
            child_key = _list_index(node, key, _shown_path(".".join(path[: depth + 1])))
        elif not isinstance(node, dict):
            raise UserInputError(
                f"--set {dotted}: {shown_value('.'.join(path[:depth]))} is not a mapping"
            )
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
        raise UserInputError(f"--set {dotted}: {shown_value('.'.join(path[:-1]))} is not a mapping")


def _list_index(items: list[Any], key: str, dotted: str) -> int:
    # ASCII digits only: `int` refuses other Unicode digits ('²') and over 4,300 digits.
    if not re.fullmatch(r"-?[0-9]+", key):
        raise UserInputError(
            f"--set {dotted}: {shown_value(key)} is not a list index (0..{len(items) - 1})"
        )
    index = int(key) if len(key) <= 18 else None
    if index is None or not -len(items) <= index < len(items):
        shown = key if len(key) <= 20 else f"{key[:17]}..."
        raise UserInputError(
            f"--set {dotted}: index {shown} is out of range; the list has {len(items)} items"
        )
    return index


def read_document(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> dict[str, Any]:
    """Read a recipe file and apply `PATH=VALUE` overrides in order, as `--set` does.

    Raises:
        UserInputError: Naming the file, or the override, at fault.
    """
    document = read_yaml(path)
    if not isinstance(document, dict):
        raise UserInputError(
            f"{shown_path(path)}: a recipe is a mapping with name, model and train"
        )
    for override in overrides:
        apply_override(document, *parse_override(override))
    return document


def check_structure(document: Any, source: str = "recipe",
                    activations: Container[str] | None = None) -> tuple[Recipe, list[str]]:
    """A raw recipe with its preset filled in, checked section by section (names not resolved).

    Args:
        document: The parsed YAML (left unchanged).
        source: Where the document came from, for messages. Defaults to `"recipe"`.
        activations: The activation layers' names a preset needs. Defaults to `None`
            (the live registry's).

    Returns:
        The validated recipe, not yet resolved, and the preset's decisions.

    Raises:
        UserInputError: Naming the first field at fault.
    """
    if not isinstance(document, dict):
        raise UserInputError(f"{source}: a recipe is a mapping with name, model and train")
    document = copy.deepcopy(document)
    decisions = apply_preset(document, activations)
    try:
        recipe = Recipe.model_validate(document)
    except pydantic.ValidationError as error:
        accepted = _accepted_keys(error)
        raise UserInputError(format_validation_error(error, accepted=accepted)) from None
    return recipe, decisions


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


__all__ = ["apply_override", "check_structure", "parse_override", "read_document", "read_yaml"]
