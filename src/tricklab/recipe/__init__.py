"""Recipes: one YAML config language, validated once, resolved with every default written.

The names below load lazily (PEP 562): the document and schema modules check a
recipe's shape without importing PyTorch, which resolving it needs.
"""

from __future__ import annotations

from tricklab.lazy import lazy_exports

_EXPORTS = {
    "Recipe": "tricklab.recipe.schema",
    "apply_override": "tricklab.recipe.document",
    "parse_override": "tricklab.recipe.document",
    "load_recipe": "tricklab.recipe.load",
    "recipe_from_dict": "tricklab.recipe.load",
}

__all__ = list(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
