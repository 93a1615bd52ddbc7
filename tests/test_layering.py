"""The layers of the house: no module imports from a layer above its own.

The order is DESIGN.md's, top to bottom:

    cli ─ recipe ─ run     (glue: recipe → objects → Trainer → run dir)
    report        study
    doctor        transfer
    train
    nn            optim
    data

Packages on one line are peers and may import each other. Every import
counts: at module level, under `if TYPE_CHECKING:`, inside functions, relative
ones, `from tricklab import name` (a subpackage or one of the package's lazy
exports) and `importlib.import_module("tricklab....")` with a literal name. The
modules directly under `tricklab/` belong to no layer; each stands as high as
the highest layer it imports (`tricklab.registries` reads the recipe presets, so
no layer below the recipe may import it).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import tricklab

LAYERS = (
    ("data",),
    ("nn", "optim"),
    ("train",),
    ("doctor", "transfer"),
    ("report", "study"),
    ("cli", "recipe", "run"),
)
"""DESIGN.md's layers, bottom first."""

RANK = {package: rank for rank, packages in enumerate(LAYERS) for package in packages}
ROOT = Path(tricklab.__file__).parent
TOP = len(LAYERS) - 1


def module_name(path: Path) -> str:
    """`tricklab.train.batched` for `.../tricklab/train/batched.py` (packages end at `__init__`)."""
    parts = ("tricklab", *path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(source: str, module: str, is_package: bool) -> list[tuple[int, str]]:
    """Every `tricklab` module `source` imports, wherever the import stands: `(line, module)`.

    Args:
        source: A module's Python source.
        module: Its dotted name, to resolve relative imports.
        is_package: Whether it is a package's `__init__`.
    """
    package = module if is_package else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found += [(node.lineno, _imported_from(base, alias.name)) for alias in node.names]
        elif (
            isinstance(node, ast.Call)
            and _called_name(node.func) in {"import_module", "__import__"}
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            found.append((node.lineno, node.args[0].value))
    return [(line, name) for line, name in found
            if name == "tricklab" or name.startswith("tricklab.")]


def _called_name(func: ast.expr) -> str | None:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return None


def _imported_from(base: str, name: str) -> str:
    """The module `from base import name` loads: `base.name` where that is a module, else `base`."""
    folder = ROOT.parent.joinpath(*base.split("."), name)
    if folder.is_dir() or folder.with_suffix(".py").is_file():
        return f"{base}.{name}"
    if base == "tricklab":
        # A lazy export of the root (`tricklab.Trainer`) loads the module that defines it.
        return tricklab._EXPORTS.get(name, base)
    return base


def rank_of(module: str, seen: frozenset[str] = frozenset()) -> int:
    """The layer `module` stands in; a top-level module stands as high as what it imports.

    `-1` for the root package and for top-level modules that import no layer.
    """
    parts = module.split(".")
    if len(parts) == 1:
        return -1  # the root's own imports are lazy: importing it loads no layer
    if parts[1] in RANK:
        return RANK[parts[1]]
    path = ROOT / f"{parts[1]}.py"
    if module in seen or not path.is_file():
        return -1
    imports = imported_modules(path.read_text(encoding="utf-8"), module, is_package=False)
    return max((rank_of(name, seen | {module}) for _, name in imports), default=-1)


def layer_name(rank: int) -> str:
    return "/".join(LAYERS[rank]) if rank >= 0 else "none"


CHECKED = sorted(
    path
    for package, rank in RANK.items()
    if rank < TOP
    for path in (ROOT / package).rglob("*.py")
)
"""Every module of a layer below the top one: only those have a layer above them."""


def test_every_package_has_a_layer() -> None:
    packages = {path.parent.name for path in ROOT.glob("*/__init__.py")}
    assert packages == set(RANK), (
        f"packages without a layer: {sorted(packages - set(RANK))}; "
        f"layers without a package: {sorted(set(RANK) - packages)} (see DESIGN.md)"
    )


@pytest.mark.parametrize("path", CHECKED, ids=lambda path: str(path.relative_to(ROOT.parent)))
def test_no_module_imports_a_higher_layer(path: Path) -> None:
    module = module_name(path)
    own = RANK[module.split(".")[1]]
    imports = imported_modules(path.read_text(encoding="utf-8"), module,
                               is_package=path.name == "__init__.py")
    violations = [
        f"{path.relative_to(ROOT.parent)}:{line} imports {name} "
        f"(layer {layer_name(rank_of(name))}, above {layer_name(own)})"
        for line, name in imports
        if rank_of(name) > own
    ]
    assert not violations, "\n".join(violations)


def test_the_guard_sees_every_form_of_import() -> None:
    source = """
from typing import TYPE_CHECKING
import torch
from tricklab.nn import build_model
from . import losses
from ..recipe import Recipe
from tricklab import run, load_study, errors
import tricklab.cli.main
if TYPE_CHECKING:
    from tricklab.report.figure import plt
def later():
    import importlib
    from tricklab.study.store import StudyStore
    return importlib.import_module("tricklab.run.study")
"""
    imports = imported_modules(source, "tricklab.train.batched", is_package=False)
    assert sorted(name for _, name in imports) == sorted([
        "tricklab.nn", "tricklab.train.losses", "tricklab.recipe", "tricklab.run",
        "tricklab.recipe.study", "tricklab.errors", "tricklab.cli.main",
        "tricklab.report.figure", "tricklab.study.store", "tricklab.run.study",
    ])
    ranks = {name: rank_of(name) for _, name in imports}
    assert ranks["tricklab.nn"] < ranks["tricklab.train.losses"] == RANK["train"]
    assert ranks["tricklab.errors"] == -1
    assert ranks["tricklab.recipe.study"] == ranks["tricklab.run"] == TOP
    # Relative imports resolve against a package's own `__init__` too.
    assert imported_modules("from .callbacks import Callback", "tricklab.train",
                            is_package=True) == [(1, "tricklab.train.callbacks")]


def test_a_top_level_module_stands_as_high_as_what_it_imports() -> None:
    assert rank_of("tricklab.registry") == -1  # config and errors only
    assert rank_of("tricklab.registries") == TOP  # it reads the recipe presets
