"""Where two resolved recipes differ, field by field: what `--resume` refuses and reports show.

Plain data in, plain data out, no PyTorch and no tricklab layer: the run layer
(a resumed run against its stored recipe) and the report (a variant against the
baseline) both read it.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ABSENT", "recipe_differences"]

ABSENT: Any = object()
"""A field one of two compared recipes does not have."""


def recipe_differences(stored: Any, resolved: Any, path: str = "") -> list[tuple[str, Any, Any]]:
    """Where two resolved recipes differ, in document order: `(dotted path, stored, new)`.

    A field only one side has is `ABSENT` on the other; lists of different
    lengths differ as a whole.

    Args:
        stored: The first recipe (or part of one), as plain data.
        resolved: The second, compared with it.
        path: The dotted path of both within their recipes. Defaults to `""` (the top level).
    """
    if isinstance(stored, dict) and isinstance(resolved, dict):
        keys = [*stored, *(key for key in resolved if key not in stored)]
        return [difference for key in keys for difference in recipe_differences(
            stored.get(key, ABSENT), resolved.get(key, ABSENT),
            f"{path}.{key}" if path else str(key))]
    if isinstance(stored, list) and isinstance(resolved, list) and len(stored) == len(resolved):
        return [difference for index, (a, b) in enumerate(zip(stored, resolved, strict=True))
                for difference in recipe_differences(a, b, f"{path}.{index}")]
    return [] if stored == resolved else [(path or "<top level>", stored, resolved)]
