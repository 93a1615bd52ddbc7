"""Where `model.reuse.from` points: a saved model, a run, or a recipe trained first.

A recipe as the source makes pretraining a dependency: `tricklab train
task_b_on_a.yaml` trains `task_a.yaml` into `runs/<its name>` unless a
finished run of that very recipe is there, and a study trains each source
recipe once, in its own `pretrained/` folder, before any of its runs.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tricklab.errors import UserInputError
from tricklab.recipe import load_recipe
from tricklab.recipe.yaml_input import shown_path
from tricklab.run.rundir import RunDirectory
from tricklab.train.progress import ProgressMode
from tricklab.transfer.reuse import model_directory

RECIPE_SUFFIXES = (".yaml", ".yml")

MAX_REUSE_CHAIN = 16
"""The most recipes a `model.reuse.from` may lead through, each reusing the next."""


def is_recipe(source: str) -> bool:
    """Whether `model.reuse.from` names a recipe file (to train) rather than a directory."""
    return Path(source).suffix in RECIPE_SUFFIXES


def source_model(source: str, root: Path, progress: ProgressMode = "auto") -> Path:
    """The saved-model directory `model.reuse.from` stands for, training its recipe if needed.

    Args:
        source: The `from` value: a run directory, a model directory or a recipe file.
        root: Folder of pretraining runs: a recipe `NAME` is trained into `root/NAME`.
        progress: Progress display of a pretraining run. Defaults to `"auto"`.

    Raises:
        UserInputError: When the directory holds no model, the recipe is invalid, or
            `root/NAME` holds a run of another recipe (it is never overwritten).
    """
    if not is_recipe(source):
        return model_directory(source)
    # The whole chain is checked before anything trains: a cycle would recurse forever.
    check_reuse_chain(source)
    recipe = load_recipe(source)
    run_dir = RunDirectory(root / recipe.name)
    resolved = recipe.to_dict()
    if run_dir.holds_run():
        if not run_dir.recipe_path.is_file() or run_dir.stored_recipe() != resolved:
            raise UserInputError(
                f"model.reuse.from: {run_dir.path} holds a run of another version of "
                f"{shown_path(source)}; "
                "move it away (or point model.reuse.from at that run directory to reuse it)"
            )
        if _finished(run_dir):
            return model_directory(run_dir.path)
    # Imported here: the runner imports this module to build reusing models.
    from tricklab.run.runner import train_recipe

    print(f"pretraining {shown_path(source)} into {run_dir.path}", file=sys.stderr, flush=True)
    outcome = train_recipe(recipe, out=run_dir.path, resume=run_dir.holds_run(), progress=progress)
    if not _finished(run_dir):
        raise UserInputError(
            f"model.reuse.from: pretraining {shown_path(source)} ended with status "
            f"'{outcome.result['status']}' in {run_dir.path}, so there is no model to reuse"
        )
    return model_directory(run_dir.path)


def check_reuse_chain(source: str) -> None:
    """Follow `model.reuse.from` from recipe to recipe; refuse a cycle or too long a chain.

    Each recipe is read with `load_recipe` (nothing is trained or written) until
    a source is a run or model directory, or a recipe reuses nothing. Recipes are
    compared by resolved path; messages show the paths as the recipes give them.

    Args:
        source: A `model.reuse.from` value.

    Raises:
        UserInputError: `model.reuse.from: a cycle of reused recipes: a.yaml ->
            b.yaml -> a.yaml`, a chain of more than `MAX_REUSE_CHAIN` recipes, or a
            recipe of the chain that is missing or invalid (its own message).
    """
    chain: list[str] = []
    seen: set[Path] = set()
    while is_recipe(source):
        # Read first: a path that cannot be resolved (a NUL byte) is then already refused.
        reuse = load_recipe(source).model.reuse
        chain.append(shown_path(source))
        resolved = Path(source).resolve()
        if resolved in seen:
            raise UserInputError(
                f"model.reuse.from: a cycle of reused recipes: {' -> '.join(chain)}"
            )
        if len(chain) > MAX_REUSE_CHAIN:
            raise UserInputError(
                f"model.reuse.from: a chain of more than {MAX_REUSE_CHAIN} reused recipes "
                f"({chain[0]} -> {chain[1]} -> ... -> {chain[-1]}); at most "
                f"{MAX_REUSE_CHAIN} recipes may each reuse the next"
            )
        seen.add(resolved)
        if reuse is None:
            return
        source = reuse.from_


def _finished(run_dir: RunDirectory) -> bool:
    if not run_dir.result_path.is_file():
        return False
    try:
        status = json.loads(run_dir.result_path.read_text(encoding="utf-8")).get("status")
    except (ValueError, AttributeError):  # not JSON, not UTF-8, or not an object
        raise UserInputError(
            f"{run_dir.result_path}: not a run's result (a JSON object with a status); "
            "the file was left as it is"
        ) from None
    return status in ("completed", "stopped_early")


def pretrain_sources(recipes: Iterable[dict[str, Any]], root: Path) -> None:
    """Train, once each, every recipe that the given recipes reuse (a study's driver calls this).

    Done before a study's runs start, so its parallel workers only read the models.

    Args:
        recipes: Resolved recipes as plain data.
        root: The study's pretraining folder.
    """
    sources = {
        recipe["model"]["reuse"]["from"]
        for recipe in recipes
        if recipe["model"].get("reuse") and is_recipe(recipe["model"]["reuse"]["from"])
    }
    for source in sorted(sources):
        source_model(source, root, progress="lines")
