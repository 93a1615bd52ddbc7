"""Every recipe shipped in recipes/ runs as is (one epoch on the small fixture)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tricklab.recipe import load_recipe
from tricklab.recipe.load import read_yaml
from tricklab.run import train_recipe

from ..conftest import REPOSITORY

RECIPES = sorted((REPOSITORY / "recipes").rglob("*.yaml"))
# The adding problem is generated, not the fixture: a few sequences are enough.
SMALL_ADDING_PROBLEM = ["data.validation=64", "data.train_size=256", "data.test_size=64"]
# Convolutional nets are slow on a CPU: a few batches show that they train.
FEW_IMAGES = ["data.validation=128", "data.train_size=256"]
SHORT_RUN = {
    **dict.fromkeys(["resnet_small", "vgg_small", "conv", "conv_denoising"], FEW_IMAGES),
    # A one-epoch run on the fixture is 47 steps: shorter than this recipe's warmup.
    "cosine_decay": ["train.schedule.cosine_decay.warmup_steps=10"],
    # The CIFAR-10 fixture holds 100 training images; VGG13 is the slowest net shipped.
    "vgg_cifar10": ["data.validation=20", "data.train_size=20"],
    "adding_problem_rnn": SMALL_ADDING_PROBLEM,
    "adding_problem_lstm": SMALL_ADDING_PROBLEM,
}


def test_recipes_are_shipped():
    assert len(RECIPES) >= 30


def short(path: Path) -> tuple[list[str], int]:
    """Overrides for a one-epoch run (one per phase) on the fixture, and the epochs expected."""
    # The fixture holds 2,000 training images: keep 500 of them for validation
    # (a later override of the same field wins).
    overrides = ["data.validation=500", *SHORT_RUN.get(path.stem, [])]
    phases = read_yaml(path)["train"].get("phases")
    if phases:
        return overrides + [f"train.phases.{i}.epochs=1" for i in range(len(phases))], len(phases)
    return [*overrides, "train.epochs=1"], 1


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_recipe_trains(path, fixture_data, tmp_path):
    overrides, epochs = short(path)
    source = read_yaml(path)["model"].get("reuse", {}).get("from", "")
    if source.endswith(".yaml"):
        # The recipe it reuses, shortened the same way, trained first.
        source_path = REPOSITORY / source
        train_recipe(load_recipe(source_path, short(source_path)[0]), out=tmp_path / "source",
                     progress="none")
        overrides.append(f"model.reuse.from={tmp_path / 'source'}")
    recipe = load_recipe(path, overrides)
    outcome = train_recipe(recipe, out=tmp_path / "run", progress="none")
    assert outcome.exit_code == 0, outcome.result["status"]
    assert outcome.result["epochs_run"] == epochs
    # One epoch of 47 steps is too short for accuracy to mean much (batch norm's
    # moving statistics have barely moved); the recipe must run and stay finite.
    assert all(value is not None for value in outcome.result["metrics"].values())
