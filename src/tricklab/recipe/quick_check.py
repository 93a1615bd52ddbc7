"""The first error of a recipe file, found without importing PyTorch.

The command line runs this before it imports anything heavy, so a typo is
reported in a fraction of a second instead of after PyTorch has loaded:

- reading the file (missing, not YAML, a bad `--set`), the preset and the
  sections' structure: the very code the full load runs;
- every technique's name and parameters, from the registry snapshot
  (`tricklab.recipe.snapshot`), with the live registries' messages.

What it cannot decide it leaves to the full load that follows, which finds
everything (and, on a machine without a snapshot yet, the command writes one).
"""

from __future__ import annotations

from pathlib import Path

from tricklab.recipe.document import check_structure, read_document
from tricklab.recipe.load import recipe_from_dict
from tricklab.recipe.snapshot import Snapshot
from tricklab.recipe.study import load_study
from tricklab.recipe.yaml_input import shown_path


def quick_check_recipe(path: str | Path, overrides: list[str] | tuple[str, ...] = (),
                       snapshot: Snapshot | None = None) -> None:
    """Raise the first error of a recipe file that can be found without PyTorch.

    Args:
        path: The recipe YAML file.
        overrides: `PATH=VALUE` strings, as `--set` gives them. Defaults to `()`.
        snapshot: The registry snapshot. Defaults to `None`: only the file, the
            overrides and the structure are checked (and a preset, which needs the
            activations' names, is left to the full load).

    Raises:
        UserInputError: The error the full load would raise for that problem.
    """
    document = read_document(path, overrides)
    if snapshot is not None:
        recipe_from_dict(document, shown_path(path), snapshot)
    elif document.get("preset") is None:
        check_structure(document, shown_path(path))


def quick_check_study(path: str | Path, seeds: int | None = None, quick: bool = False,
                      overrides: list[str] | tuple[str, ...] = (),
                      snapshot: Snapshot | None = None) -> None:
    """Raise the first error of a study file (and its variants' recipes) found without PyTorch.

    Args:
        path: The study YAML file.
        seeds: `--seeds`. Defaults to `None`.
        quick: `--quick`. Defaults to `False`.
        overrides: `--set` values for every variant. Defaults to `()`.
        snapshot: The registry snapshot. Defaults to `None`: nothing is checked, as a
            study's recipes cannot be without it.

    Raises:
        UserInputError: The error `load_study` would raise for that problem.
    """
    if snapshot is not None:
        load_study(path, seeds, quick, overrides, snapshot)


__all__ = ["quick_check_recipe", "quick_check_study"]
