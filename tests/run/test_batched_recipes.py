"""Recipes read into batched seeds: which can be batched, and the trainer they get."""

from __future__ import annotations

import copy

import pytest
import torch

from tricklab.optim.schedules import Exponential
from tricklab.recipe import Recipe, recipe_from_dict
from tricklab.run.batched_recipes import (
    batch_seeds_by_default,
    batchable,
    batched_trainer,
    build_seed_models,
    seed_group_key,
)
from tricklab.run.runner import build
from tricklab.train import BatchedSeedsTrainer
from tricklab.train.losses import CategoricalCrossentropy

from ..conftest import TINY_RECIPE


def recipe(**changes: object) -> Recipe:
    document = copy.deepcopy(TINY_RECIPE)
    for path, value in changes.items():
        section, key = path.split("__")
        document[section][key] = value
    return recipe_from_dict(document)


def test_batchable_accepts_a_plain_recipe_and_refuses_per_run_decisions() -> None:
    assert batchable(recipe()) == (True, "")
    refused = {
        "train.callbacks": recipe(train__callbacks=[{"early_stopping": {"patience": 2}}]),
        "train.schedule": recipe(train__schedule="performance"),
        "train.phases": recipe(train__phases=[{"epochs": 1}]),
        "data.augment": recipe(data__augment=[{"random_flip": {"mode": "horizontal"}}]),
        "train.precision": recipe(train__precision="fp16"),
        "model.reuse": recipe(model__reuse={"from": "runs/pretrained"}),
    }
    for field, refused_recipe in refused.items():
        ok, reason = batchable(refused_recipe)
        assert not ok and reason.startswith(f"{field}: "), reason


@pytest.mark.parametrize("layer", [
    {"dense": {"units": 8, "activation": "rrelu"}},
    {"lstm": {"units": 4}},
], ids=["rrelu", "lstm"])
def test_batchable_refuses_operations_vmap_cannot_batch(layer: dict) -> None:
    layers = [{"reshape": {"target_shape": [28, 28]}}, layer, "flatten",
              {"dense": {"units": 10, "activation": "softmax"}}]
    state = torch.get_rng_state()
    ok, reason = batchable(recipe(model__layers=layers))
    assert not ok and reason.startswith("model.layers: an operation cannot be batched"), reason
    assert torch.equal(torch.get_rng_state(), state)


def test_batched_trainer_builds_each_seed_as_its_separate_run() -> None:
    base = recipe(train__optimizer={"name": "adam", "learning_rate": 0.003},
                  train__loss="categorical_crossentropy", train__metrics=["accuracy", "mae"])
    trainer = batched_trainer(base, [0, 1])
    assert isinstance(trainer, BatchedSeedsTrainer) and trainer.seeds == [0, 1]
    assert trainer.optimizer.get_config()["learning_rate"] == pytest.approx(0.003)
    assert isinstance(trainer.loss, CategoricalCrossentropy)
    assert trainer.metric_names == ["accuracy", "mae"]
    for seed, model in zip([0, 1], trainer.unstack(), strict=True):
        separate, _ = build(base.model_copy(update={"seed": seed}))
        for expected, got in zip(separate.parameters(), model.parameters(), strict=True):
            assert torch.equal(got, expected)
    assert build_seed_models(base, [1])[0].state_dict().keys() == model.state_dict().keys()
    with pytest.raises(ValueError, match=r"train\.callbacks"):
        batched_trainer(recipe(train__callbacks=["early_stopping"]), [0, 1])


def test_batched_trainer_shares_the_recipes_schedule() -> None:
    schedule = {"exponential": {"decay_steps": 10, "decay_rate": 0.5}}
    trainer = batched_trainer(recipe(train__schedule=schedule), [0, 1])
    assert isinstance(trainer.scheduler.schedule, Exponential)
    assert trainer.scheduler.schedule.decay_rate == 0.5
    assert batched_trainer(recipe(), [0]).scheduler is None


def test_seed_group_key_ignores_only_name_and_seed() -> None:
    base = recipe()
    other_seed = recipe().model_copy(update={"seed": 5, "name": "other"})
    assert seed_group_key(other_seed) == seed_group_key(base)
    assert seed_group_key(recipe(train__batch_size=64)) != seed_group_key(base)


def test_studies_batch_seeds_unasked_on_a_gpu_only() -> None:
    assert batch_seeds_by_default("cuda") and batch_seeds_by_default(torch.device("cuda", 0))
    assert not batch_seeds_by_default("cpu")
