"""Recipes: one YAML config language, validated once, resolved with every default written.

The names below load lazily (PEP 562): the document and schema modules check a
recipe's shape without importing PyTorch, which resolving it needs.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Recipe": "tricklab.recipe.schema",
    "apply_override": "tricklab.recipe.document",
    "parse_override": "tricklab.recipe.document",
    "load_recipe": "tricklab.recipe.load",
    "recipe_from_dict": "tricklab.recipe.load",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'tricklab.recipe' has no attribute {name!r}")
