"""Names a package exports, imported from their modules on first use (PEP 562).

`import tricklab.recipe` then costs nothing until `tricklab.recipe.load_recipe`
is read, so a command that checks a recipe's shape never imports PyTorch.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_exports(package: str, exports: dict[str, str]) -> Callable[[str], Any]:
    """A module `__getattr__` that imports each of `exports` (name -> module) when first read.

    Args:
        package: The package's name, for the error on an unknown attribute.
        exports: Each exported name and the module that defines it.
    """

    def __getattr__(name: str) -> Any:
        if name in exports:
            return getattr(importlib.import_module(exports[name]), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__


__all__ = ["lazy_exports"]
