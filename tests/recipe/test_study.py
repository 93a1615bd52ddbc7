"""Study specs: the repository's study files, variants and their overrides, planning, errors.

Every test runs in the `isolated` environment (no dataset anywhere): loading a
study validates recipes but never reads data.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tricklab.errors import UserInputError
from tricklab.recipe import recipe_from_dict
from tricklab.recipe.study import MAX_SEEDS, PlannedRun, load_study

from ..conftest import REPOSITORY

STUDIES = sorted((REPOSITORY / "studies").glob("*.yaml"))
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@pytest.fixture(autouse=True)
def _no_dataset(isolated: Path) -> Path:
    return isolated


def _base(**changes: Any) -> dict[str, Any]:
    base = {
        "name": "tiny",
        "seed": 42,
        "data": {"dataset": "fashion_mnist", "validation": 100, "scale": "unit"},
        "model": {
            "input_shape": [28, 28],
            "layers": [
                "flatten",
                {"dense": {"units": 8, "activation": "relu"}},
                {"dense": {"units": 10, "activation": "softmax"}},
            ],
        },
        "train": {"optimizer": {"name": "sgd", "learning_rate": 0.01}, "epochs": 3,
                  "metrics": ["accuracy"]},
    }
    base.update(changes)
    return base


def _document(**changes: Any) -> dict[str, Any]:
    document = {"name": "unit", "base": _base(), "seeds": 2, "variants": {"a": {}}}
    document.update(changes)
    return document


def _write(folder: Path, document: Any, name: str = "study.yaml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def _load(tmp_path: Path, cli_seeds: int | None = None, quick: bool = False, **changes: Any):
    """Write a study with `changes` and load it (`cli_seeds` is `--seeds`)."""
    return load_study(_write(tmp_path, _document(**changes)), seeds=cli_seeds, quick=quick)


def _error(tmp_path: Path, **changes: Any) -> tuple[Path, str]:
    path = _write(tmp_path, _document(**changes))
    with pytest.raises(UserInputError) as raised:
        load_study(path)
    message = str(raised.value)
    assert "\n" not in message
    return path, message


def _layers(recipe: dict[str, Any]) -> list[dict[str, Any]]:
    return recipe["model"]["layers"]


# --- the repository's studies --------------------------------------------------------------


def test_the_repository_has_studies():
    assert len(STUDIES) >= 6


@pytest.mark.parametrize("path", STUDIES, ids=lambda p: p.stem)
def test_study_file_loads_and_every_variant_validates(path):
    document = yaml.safe_load(path.read_text())
    study = load_study(path)
    spec = study.spec
    assert study.name == document["name"] == spec["name"]
    assert study.source == str(path)
    assert list(spec["variants"]) == list(document["variants"])
    assert spec["baseline"] in spec["variants"]
    assert spec["baseline"] == document.get("baseline", next(iter(document["variants"])))
    seeds = document.get("seeds", 5)
    assert spec["seeds"] == (list(range(seeds)) if isinstance(seeds, int) else seeds)
    assert spec["quick"] is False
    assert re.fullmatch(r"[0-9a-f]{64}", study.fingerprint)
    for name, variant in spec["variants"].items():
        recipe = variant["recipe"]
        assert recipe_from_dict(recipe).to_dict() == recipe  # the stored recipe re-validates
        if "budget" in document:
            assert recipe["train"]["epochs"] == document["budget"]["epochs"]
        planned = study.plan(name, spec["seeds"][-1])
        assert planned.recipe["seed"] == spec["seeds"][-1]
        assert planned.run_id == f"{name}/seed-{spec['seeds'][-1]}"


@pytest.mark.parametrize("path", STUDIES, ids=lambda p: p.stem)
def test_study_file_loads_quick_and_shrinks_as_its_quick_section_says(path):
    document = yaml.safe_load(path.read_text())
    full = load_study(path)
    quick = load_study(path, quick=True)
    shrink = document["quick"]
    assert quick.spec["quick"] is True
    assert quick.spec["seeds"] == full.spec["seeds"][: shrink["seeds"]]
    assert len(quick.spec["seeds"]) < len(full.spec["seeds"])
    for name, variant in quick.spec["variants"].items():
        full_epochs = full.spec["variants"][name]["recipe"]["train"]["epochs"]
        assert variant["recipe"]["train"]["epochs"] == min(full_epochs, shrink["epochs"])
        assert variant["recipe"]["train"]["epochs"] < full_epochs
        assert recipe_from_dict(variant["recipe"]).to_dict() == variant["recipe"]
    assert quick.fingerprint != full.fingerprint


def test_chapter11_ladder_rungs_extend_each_other():
    study = load_study(REPOSITORY / "studies" / "chapter11.yaml")
    variants = study.spec["variants"]
    l2_dense = _layers(variants["l2"]["recipe"])[1]["dense"]
    assert l2_dense["kernel_regularizer"] == {"l2": {"l2": 0.01}}
    assert any("dropout" in layer for layer in _layers(variants["l2"]["recipe"]))
    momentum = variants["momentum_sgd"]["recipe"]["train"]
    assert momentum["optimizer"]["name"] == "sgd" and momentum["optimizer"]["nesterov"] is True
    assert [next(iter(c)) for c in momentum["callbacks"]] == ["early_stopping"]  # inherited
    assert any("batch_norm" in layer for layer in _layers(variants["momentum_sgd"]["recipe"]))
    assert variants["baseline"]["recipe"]["train"]["callbacks"] == []


def test_loading_a_study_reads_no_data(tmp_path):
    load_study(REPOSITORY / "studies" / "chapter11_optimizers.yaml", quick=True)
    _load(tmp_path / "own")
    # `isolated` points the cache and system data into tmp_path: nothing was fetched or cached
    assert sorted(p.name for p in tmp_path.iterdir()) == ["own"]


# --- variants ------------------------------------------------------------------------------


def test_variant_without_overrides_is_the_base_recipe(tmp_path):
    study = _load(tmp_path, variants={"a": {}, "b": None})
    expected = recipe_from_dict({**_base(), "name": "x", "seed": 0}).to_dict()
    for name in ("a", "b"):
        recipe = study.spec["variants"][name]["recipe"]
        assert {**recipe, "name": "x"} == expected


def test_extends_applies_the_oldest_overrides_first(tmp_path):
    study = _load(tmp_path, variants={
        "grand": {"set": {"train.optimizer.learning_rate": 0.1, "train.epochs": 5,
                          "model.layers": ["flatten", {"dense": {"units": 32}},
                                           {"dense": {"units": 10, "activation": "softmax"}}]}},
        "parent": {"extends": "grand", "set": {"train.optimizer.learning_rate": 0.2,
                                               "model.layers.1.dense.units": 16}},
        "child": {"extends": "parent", "set": {"train.optimizer.learning_rate": 0.3}},
        "sibling": {"extends": "parent"},
    })
    variants = study.spec["variants"]

    def summary(name):
        recipe = variants[name]["recipe"]
        return (recipe["train"]["optimizer"]["learning_rate"], recipe["train"]["epochs"],
                _layers(recipe)[1]["dense"]["units"])

    assert summary("grand") == (0.1, 5, 32)
    assert summary("parent") == (0.2, 5, 16)  # the parent's index wins over grand's whole list
    assert summary("child") == (0.3, 5, 16)
    assert summary("sibling") == (0.2, 5, 16)


def test_variant_order_does_not_matter_for_extends(tmp_path):
    study = _load(tmp_path, variants={
        "child": {"extends": "parent", "set": {"train.epochs": 7}},
        "parent": {"set": {"train.epochs": 4, "train.batch_size": 64}},
    })
    child = study.spec["variants"]["child"]["recipe"]["train"]
    assert (child["epochs"], child["batch_size"]) == (7, 64)
    assert study.spec["baseline"] == "child"  # the first variant by default


def test_a_variant_recipe_replaces_the_base(tmp_path):
    recipes = tmp_path / "recipes"
    _write(recipes, _base(name="adam-one", model={
        "input_shape": [28, 28],
        "layers": ["flatten", {"dense": {"units": 10, "activation": "softmax"}}],
    }, train={"optimizer": {"name": "adam", "learning_rate": 0.002}, "epochs": 2,
             "metrics": ["accuracy"]}), "adam.yaml")
    _write(recipes, _base(name="base"), "base.yaml")
    path = _write(tmp_path / "studies", _document(base="../recipes/base.yaml", variants={
        "plain": {},
        "adam": {"recipe": "../recipes/adam.yaml"},
        "adam_longer": {"extends": "adam", "set": {"train.epochs": 6}},
        "own_recipe": {"extends": "adam_longer", "recipe": "../recipes/base.yaml",
                       "set": {"train.batch_size": 16}},
    }))
    variants = load_study(path).spec["variants"]
    assert variants["plain"]["recipe"]["train"]["optimizer"]["name"] == "sgd"
    assert len(_layers(variants["plain"]["recipe"])) == 3
    adam = variants["adam"]["recipe"]
    assert adam["train"]["optimizer"]["name"] == "adam"
    assert adam["train"]["optimizer"]["learning_rate"] == 0.002
    assert len(_layers(adam)) == 2 and adam["train"]["epochs"] == 2
    longer = variants["adam_longer"]["recipe"]
    assert longer["train"]["optimizer"]["name"] == "adam" and longer["train"]["epochs"] == 6
    # a variant's own recipe replaces what it extends: adam_longer's overrides do not apply
    own = variants["own_recipe"]["recipe"]
    assert own["train"]["optimizer"]["name"] == "sgd"
    assert (own["train"]["epochs"], own["train"]["batch_size"]) == (3, 16)


def test_a_base_recipe_file_is_read_relative_to_the_study_file(tmp_path):
    _write(tmp_path / "recipes", _base(train={"optimizer": "nadam", "epochs": 4, "metrics": ["accuracy"]}), "r.yaml")
    path = _write(tmp_path / "studies" / "deeper", _document(base="../../recipes/r.yaml"))
    recipe = load_study(path).spec["variants"]["a"]["recipe"]
    assert recipe["train"]["optimizer"]["name"] == "nadam"
    assert recipe["train"]["epochs"] == 4


def test_a_whole_layers_list_is_replaced(tmp_path):
    layers = ["flatten", {"dense": {"units": 20, "activation": "elu"}}, {"dropout": {"rate": 0.3}},
              {"dense": {"units": 7}}, {"dense": {"units": 10, "activation": "softmax"}}]
    study = _load(tmp_path, variants={"a": {}, "deep": {"set": {"model.layers": layers}}})
    deep = _layers(study.spec["variants"]["deep"]["recipe"])
    assert [next(iter(layer)) for layer in deep] == ["flatten", "dense", "dropout", "dense",
                                                     "dense"]
    assert [layer["dense"]["units"] for layer in deep if "dense" in layer] == [20, 7, 10]
    assert deep[2]["dropout"]["rate"] == 0.3
    assert len(_layers(study.spec["variants"]["a"]["recipe"])) == 3


def test_dotted_list_indices_set_one_entry(tmp_path):
    study = _load(tmp_path, variants={"a": {"set": {
        "model.layers.1.dense.units": 64,
        "model.layers.-1.dense.kernel_initializer": "he_normal",
        "train.optimizer.momentum": 0.9,
    }}})
    layers = _layers(study.spec["variants"]["a"]["recipe"])
    assert layers[1]["dense"]["units"] == 64
    assert layers[1]["dense"]["activation"] == "relu"  # the rest of the entry is kept
    assert layers[2]["dense"]["kernel_initializer"] == "he_normal"
    assert layers[2]["dense"]["units"] == 10
    assert study.spec["variants"]["a"]["recipe"]["train"]["optimizer"]["momentum"] == 0.9


def test_a_set_value_is_not_shared_between_variants(tmp_path):
    layers = ["flatten", {"dense": {"units": 10, "activation": "softmax"}}]
    study = _load(tmp_path, variants={
        "a": {"set": {"model.layers": layers}},
        "b": {"extends": "a", "set": {"model.layers.1.dense.units": 10,
                                      "model.layers.1.dense.use_bias": False}},
    })
    assert study.variant_documents["a"]["model"]["layers"][1]["dense"] == {
        "units": 10, "activation": "softmax"}
    assert _layers(study.spec["variants"]["a"]["recipe"])[1]["dense"]["use_bias"] is True
    assert _layers(study.spec["variants"]["b"]["recipe"])[1]["dense"]["use_bias"] is False


def test_budget_epochs_sets_every_variants_epochs(tmp_path):
    _write(tmp_path / "r", _base(train={"optimizer": "sgd", "epochs": 20, "metrics": ["accuracy"]}), "own.yaml")
    study = _load(tmp_path, budget={"epochs": 6}, variants={
        "a": {}, "own": {"recipe": "r/own.yaml"}, "longer": {"set": {"train.epochs": 50}},
    })
    assert {name: v["recipe"]["train"]["epochs"] for name, v in study.spec["variants"].items()} \
        == {"a": 6, "own": 6, "longer": 6}
    assert study.spec["budget"] == {"epochs": 6}
    assert _load(tmp_path).spec["variants"]["a"]["recipe"]["train"]["epochs"] == 3


def test_quick_takes_the_smaller_of_its_epochs_and_the_studys(tmp_path):
    path = _write(tmp_path, _document(seeds=[9, 8, 7], quick={"seeds": 2, "epochs": 4}, variants={
        "short": {"set": {"train.epochs": 2}}, "long": {"set": {"train.epochs": 9}},
    }))
    quick = load_study(path, quick=True)
    assert quick.spec["seeds"] == [9, 8]
    assert {n: v["recipe"]["train"]["epochs"] for n, v in quick.spec["variants"].items()} == {
        "short": 2, "long": 4}
    default = load_study(_write(tmp_path, _document(seeds=4)), quick=True)
    assert default.spec["seeds"] == [0, 1]  # quick defaults: 2 seeds, 1 epoch
    assert default.spec["variants"]["a"]["recipe"]["train"]["epochs"] == 1


def test_seeds_argument_replaces_the_seed_list(tmp_path):
    assert _load(tmp_path).spec["seeds"] == [0, 1]
    assert _load(tmp_path, cli_seeds=4).spec["seeds"] == [0, 1, 2, 3]
    assert _load(tmp_path, cli_seeds=1).spec["seeds"] == [0]
    explicit = _write(tmp_path, _document(seeds=[11, 3, 7]))
    assert load_study(explicit).spec["seeds"] == [11, 3, 7]  # kept, in its order
    assert load_study(explicit, seeds=2).spec["seeds"] == [0, 1]
    assert load_study(explicit, seeds=3, quick=True).spec["seeds"] == [0, 1]
    default = _document()
    del default["seeds"]
    assert load_study(_write(tmp_path, default)).spec["seeds"] == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("seeds", [0, -3, MAX_SEEDS + 1, 1_000_000_000])
def test_seeds_argument_has_the_bounds_of_the_files_seeds(tmp_path, seeds):
    path = _write(tmp_path, _document())
    started = time.perf_counter()
    with pytest.raises(UserInputError) as raised:
        load_study(path, seeds=seeds)
    assert str(raised.value) == f"--seeds: {seeds} is not a number of seeds from 1 to 1000"
    assert time.perf_counter() - started < 1.0  # refused at once, no seed list is built
    assert _load(tmp_path, cli_seeds=MAX_SEEDS).spec["seeds"] == list(range(MAX_SEEDS))


def test_resolved_spec_holds_what_the_report_needs(tmp_path):
    study = _load(tmp_path, question="Does it help?", description="words", metric="test_loss",
                  target={"value": 0.8}, variants={"a": {"description": "plain"}, "b": None})
    spec = study.spec
    assert spec["question"] == "Does it help?" and spec["description"] == "words"
    assert spec["metric"] == "test_loss" and spec["higher_is_better"] is False
    assert spec["target"] == {"metric": "val_accuracy", "value": 0.8}
    assert spec["budget"] is None and spec["lr_search"] is None
    assert spec["variants"]["a"]["description"] == "plain"
    assert spec["variants"]["b"]["description"] is None
    assert [v["lr_search"] for v in spec["variants"].values()] == [False, False]
    assert _load(tmp_path).spec["higher_is_better"] is True  # test_accuracy by default


# --- planning runs -------------------------------------------------------------------------


def test_plan_sets_seed_rate_run_id_and_a_valid_name(tmp_path):
    study = _load(tmp_path, variants={"v": {}})
    main = study.plan("v", 3)
    assert isinstance(main, PlannedRun)
    assert (main.run_id, main.variant, main.seed, main.phase, main.learning_rate) == (
        "v/seed-3", "v", 3, "main", None)
    assert main.run_dir == "runs/v/seed-3"
    assert main.recipe["seed"] == 3
    assert main.recipe["train"]["optimizer"]["learning_rate"] == 0.01
    search = study.plan("v", 3, 0.001, "lr_search")
    assert search.run_id == "v/lr-0.001/seed-3"
    assert search.run_dir == "runs/v/lr-0.001/seed-3"
    assert (search.phase, search.learning_rate) == ("lr_search", 0.001)
    assert search.recipe["train"]["optimizer"]["learning_rate"] == 0.001
    assert search.recipe["seed"] == 3
    chosen = study.plan("v", 4, 0.05)  # a main run at a searched rate keeps the main id
    assert chosen.run_id == "v/seed-4"
    assert chosen.recipe["train"]["optimizer"]["learning_rate"] == 0.05
    assert study.plan("v", 0, 1e-5, "lr_search").run_id == "v/lr-1e-05/seed-0"
    names = [p.recipe["name"] for p in (main, search, chosen)]
    assert names == ["unit-v-seed-3", "unit-v-lr-0.001-seed-3", "unit-v-seed-4"]
    assert all(NAME.fullmatch(name) for name in names)
    # planning does not change the variant's document
    assert study.plan("v", 3).recipe == main.recipe


def test_plan_keeps_long_names_valid(tmp_path):
    study_name, variant = "s" * 60, "v" * 60
    study = _load(tmp_path, name=study_name, variants={variant: {}},
                  lr_search={"grid": [1e-4, 1e-3]})
    planned = study.plan(variant, 123, 1e-4, "lr_search")
    assert planned.run_id == f"{variant}/lr-0.0001/seed-123"
    assert len(planned.recipe["name"]) <= 100
    assert NAME.fullmatch(planned.recipe["name"])


def test_plan_validates_the_rate(tmp_path):
    study = _load(tmp_path)
    with pytest.raises(UserInputError, match="learning_rate"):
        study.plan("a", 0, -0.5, "lr_search")


# --- fingerprint ---------------------------------------------------------------------------


def _fingerprint(tmp_path: Path, **changes: Any) -> str:
    return _load(tmp_path, **changes).fingerprint


def test_fingerprint_ignores_seeds_question_and_descriptions(tmp_path):
    reference = _fingerprint(tmp_path)
    assert _fingerprint(tmp_path, seeds=7) == reference
    assert _fingerprint(tmp_path, seeds=[4, 5]) == reference
    assert _load(tmp_path, cli_seeds=9).fingerprint == reference
    assert _fingerprint(tmp_path, question="Another question?", description="more") == reference
    assert _fingerprint(tmp_path, variants={"a": {"description": "said otherwise"}}) == reference
    assert _fingerprint(tmp_path, name="renamed") == reference
    searched = {"grid": [0.01, 0.1], "seeds": 1}
    assert _fingerprint(tmp_path, lr_search=searched) == _fingerprint(
        tmp_path, lr_search={**searched, "grid": [0.1, 0.01]}, seeds=[3, 4, 5])


@pytest.mark.parametrize("change", [
    {"variants": {"a": {"set": {"train.optimizer.learning_rate": 0.02}}}},
    {"variants": {"a": {"set": {"model.layers.1.dense.units": 9}}}},
    {"variants": {"a": {}, "b": {}}},
    {"variants": {"b": {}}},
    {"budget": {"epochs": 4}},
    {"metric": "test_loss"},
    {"lr_search": {"grid": [0.01, 0.1]}},
], ids=["override", "layer", "added-variant", "renamed-variant", "budget", "metric", "search"])
def test_fingerprint_changes_with_what_changes_results(tmp_path, change):
    assert _fingerprint(tmp_path, **change) != _fingerprint(tmp_path)


def test_fingerprint_changes_with_the_search_grid_and_metric(tmp_path):
    search = {"grid": [0.01, 0.1]}
    reference = _fingerprint(tmp_path, lr_search=search)
    assert _fingerprint(tmp_path, lr_search={"grid": [0.01, 0.1, 1.0]}) != reference
    assert _fingerprint(tmp_path, lr_search={"grid": [0.001, 0.1]}) != reference
    assert _fingerprint(tmp_path, lr_search={**search, "metric": "val_loss"}) != reference


def test_fingerprint_changes_with_the_searched_variants(tmp_path):
    variants = {"a": {}, "b": {}}
    one = _fingerprint(tmp_path, variants=variants, lr_search={"grid": [0.01, 0.1],
                                                               "variants": ["a"]})
    both = _fingerprint(tmp_path, variants=variants, lr_search={"grid": [0.01, 0.1]})
    assert one != both


# --- learning-rate search ------------------------------------------------------------------


def test_lr_search_defaults_to_every_variant(tmp_path):
    study = _load(tmp_path, seeds=[5, 7, 9], variants={"a": {}, "b": {}, "c": {}},
                  lr_search={"grid": [0.1, 0.001, 0.01]})
    assert study.searched() == ["a", "b", "c"]
    assert [v["lr_search"] for v in study.spec["variants"].values()] == [True, True, True]
    assert study.spec["lr_search"] == {"grid": [0.001, 0.01, 0.1], "seeds": [5, 7],
                                       "metric": "val_accuracy"}


def test_lr_search_variants_and_seeds(tmp_path):
    study = _load(tmp_path, seeds=[5, 7, 9, 11], variants={"a": {}, "b": {}, "c": {}},
                  lr_search={"grid": [0.1, 0.01], "variants": ["c", "a"], "seeds": 3,
                             "metric": "val_loss"})
    assert sorted(study.searched()) == ["a", "c"]
    assert {n: v["lr_search"] for n, v in study.spec["variants"].items()} == {
        "a": True, "b": False, "c": True}
    assert study.spec["lr_search"]["seeds"] == [5, 7, 9]  # the first 3 of the study's seeds
    assert study.spec["lr_search"]["metric"] == "val_loss"
    assert _load(tmp_path, seeds=2, lr_search={"grid": [0.1, 0.01], "seeds": 5}).spec[
        "lr_search"]["seeds"] == [0, 1]
    assert _load(tmp_path, seeds=6, lr_search={"grid": [0.1, 0.01], "seeds": 4}).spec[
        "lr_search"]["seeds"] == [0, 1, 2, 3]


def test_lr_search_of_an_unknown_variant_is_an_error(tmp_path):
    path, message = _error(tmp_path, variants={"a": {}, "b": {}},
                           lr_search={"grid": [0.1, 0.01], "variants": ["a", "zz"]})
    assert message == f"{path}: lr_search.variants: 'zz' is not a variant (variants: a, b)"


def test_lr_search_needs_a_validation_split(tmp_path):
    no_validation = _base(data={"dataset": "fashion_mnist", "validation": 0, "scale": "unit"})
    path, message = _error(tmp_path, base=no_validation, lr_search={"grid": [0.1, 0.01]})
    assert message.startswith(f"{path}: lr_search: ")
    assert "validation split" in message and "data.validation" in message
    # only the searched variants need one
    study = _load(tmp_path, base=no_validation, variants={
        "a": {}, "b": {"set": {"data.validation": 200}}},
        lr_search={"grid": [0.1, 0.01], "variants": ["b"]})
    assert study.searched() == ["b"]


# --- errors --------------------------------------------------------------------------------


def test_unknown_top_level_key_lists_the_accepted_keys(tmp_path):
    path, message = _error(tmp_path, variant={"a": {}})
    assert message == (
        f"{path}: <top level>: unknown key 'variant'; accepted keys: base, baseline, budget, "
        "description, lr_search, metric, name, question, quick, seeds, target, variants"
    )


def test_unknown_key_inside_a_variant_names_its_path(tmp_path):
    path, message = _error(tmp_path, variants={"a": {"sets": {"train.epochs": 2}}})
    assert message.startswith(f"{path}: variants.a: unknown key 'sets'")


def test_unknown_key_inside_a_variant_lists_the_accepted_keys(tmp_path):
    path, message = _error(tmp_path, variants={"a": {"sets": {"train.epochs": 2}}})
    assert message == (
        f"{path}: variants.a: unknown key 'sets'; accepted keys: description, extends, "
        "recipe, set"
    )


def test_missing_base(tmp_path):
    document = _document()
    del document["base"]
    path = _write(tmp_path, document)
    with pytest.raises(UserInputError) as raised:
        load_study(path)
    assert str(raised.value) == f"{path}: base: required field is missing"


def test_base_file_not_found(tmp_path):
    path, message = _error(tmp_path, base="../recipes/nowhere.yaml")
    assert message == (
        f"{path}: base: recipe file not found: {tmp_path / '../recipes/nowhere.yaml'}"
    )


def test_variant_recipe_file_not_found_names_the_file(tmp_path):
    path, message = _error(tmp_path, variants={"a": {}, "b": {"recipe": "gone.yaml"}})
    assert message.startswith(f"{path}: ")
    assert str(tmp_path / "gone.yaml") in message and "not found" in message


def test_variant_recipe_file_not_found_names_the_variant_field(tmp_path):
    path, message = _error(tmp_path, variants={"a": {}, "b": {"recipe": "gone.yaml"}})
    assert message.startswith(f"{path}: variants.b.recipe: ")


def test_a_missing_study_file_is_a_user_error_naming_it_a_study_file(tmp_path):
    with pytest.raises(UserInputError) as raised:
        load_study(tmp_path / "none.yaml")
    assert str(raised.value) == f"study file not found: {tmp_path / 'none.yaml'}"


def test_a_study_file_that_is_not_a_mapping(tmp_path):
    path = tmp_path / "study.yaml"
    path.write_text("- a\n- b\n")
    with pytest.raises(UserInputError) as raised:
        load_study(path)
    assert str(raised.value).startswith(f"{path}: <top level>: input should be a valid dict")


def test_baseline_must_be_a_variant(tmp_path):
    path, message = _error(tmp_path, baseline="control", variants={"a": {}, "b": {}})
    assert message == f"{path}: baseline: 'control' is not a variant (variants: a, b)"


def test_extends_an_unknown_variant(tmp_path):
    path, message = _error(tmp_path, variants={"a": {}, "b": {"extends": "c"}})
    assert message == f"{path}: variants.b.extends: 'c' is not a variant (variants: a, b)"


def test_extends_an_unknown_variant_deeper_in_the_chain(tmp_path):
    path, message = _error(tmp_path, variants={"a": {"extends": "b"}, "b": {"extends": "zz"}})
    assert message == f"{path}: variants.b.extends: 'zz' is not a variant (variants: a, b)"


@pytest.mark.parametrize(("variants", "cycle"), [
    ({"a": {"extends": "a"}}, "a -> a"),
    ({"a": {"extends": "b"}, "b": {"extends": "a"}}, "a -> b -> a"),
    ({"a": {}, "b": {"extends": "c"}, "c": {"extends": "d"}, "d": {"extends": "b"}},
     "b -> c -> d -> b"),
], ids=["self", "two", "three"])
def test_an_extends_cycle_is_an_error(tmp_path, variants, cycle):
    path, message = _error(tmp_path, variants=variants)
    first = next(name for name, v in variants.items() if v)
    assert message == f"{path}: variants.{first}.extends: the chain loops ({cycle})"


@pytest.mark.parametrize(("dotted", "expected"), [
    ("model.layers.5.dense.units", "model.layers.5: index 5 is out of range; the list has 3 items"),
    ("model.layers.one.dense.units", "model.layers.one: 'one' is not a list index (0..2)"),
    ("train.epochs.max", "train.epochs.max: 'train.epochs' is not a mapping"),
], ids=["index-out-of-range", "not-an-index", "not-a-mapping"])
def test_a_bad_dotted_path_in_set(tmp_path, dotted, expected):
    path, message = _error(tmp_path, variants={"a": {}, "b": {"set": {dotted: 1}}})
    assert message == f"{path}: variants.b.set: {expected}"


def test_a_bad_dotted_path_is_reported_on_the_variant_that_sets_it(tmp_path):
    path, message = _error(tmp_path, variants={
        "a": {"set": {"model.layers.7": "flatten"}}, "b": {"extends": "a"}})
    assert message.startswith(f"{path}: variants.a.set: model.layers.7: index 7 is out of range")


def test_an_invalid_value_only_the_recipe_catches_is_an_error(tmp_path):
    _, message = _error(tmp_path, variants={
        "a": {}, "bad": {"set": {"train.optimizer.learning_rate": -1}}})
    assert "train.optimizer.learning_rate" in message
    assert "(got -1)" in message


@pytest.mark.parametrize("variants", [
    {"a": {}, "bad": {"set": {"train.optimizer.learning_rate": -1}}},
    {"a": {}, "bad": {"set": {"train.optimizer.name": "adma"}}},
    {"a": {}, "bad": {"set": {"model.layers.1.dense.units": 0}}},
], ids=["negative-rate", "unknown-optimizer", "zero-units"])
def test_an_invalid_value_only_the_recipe_catches_names_the_file_and_variant(tmp_path,
                                                                            variants):
    path, message = _error(tmp_path, variants=variants)
    assert message.startswith(f"{path}: variants.bad")


@pytest.mark.parametrize(("seeds", "got"), [(0, "(got 0)"), (1001, "(got 1001)")])
def test_seeds_out_of_range(tmp_path, seeds, got):
    path, message = _error(tmp_path, seeds=seeds)
    assert message.startswith(f"{path}: seeds")
    assert got in message
    assert "a number of seeds should be from 1 to 1000" in message


def test_seeds_zero_names_the_field_as_written(tmp_path):
    path, message = _error(tmp_path, seeds=0)
    assert message.startswith(f"{path}: seeds: ")


def test_empty_variants(tmp_path):
    path, message = _error(tmp_path, variants={})
    assert message.startswith(f"{path}: variants: ")
    assert "at least 1 item" in message


@pytest.mark.parametrize(("grid", "field", "words"), [
    ([0.1], "lr_search.grid", "at least 2 items"),
    ([], "lr_search.grid", "at least 2 items"),
    ([0.1, -0.01], "lr_search.grid.1", "greater than 0"),
    ([0.0, 0.1], "lr_search.grid.0", "greater than 0"),
], ids=["one-value", "empty", "negative", "zero"])
def test_a_bad_lr_search_grid(tmp_path, grid, field, words):
    path, message = _error(tmp_path, lr_search={"grid": grid})
    assert message.startswith(f"{path}: {field}: ")
    assert words in message


def test_a_bad_variant_name(tmp_path):
    path, message = _error(tmp_path, variants={"a": {}, "has space": {}})
    assert message.startswith(f"{path}: variants.")
    assert "should match pattern" in message


def test_the_readme_study_file_loads_as_written(tmp_path):
    readme = (REPOSITORY / "README.md").read_text(encoding="utf-8")
    example = next(block for block in re.findall(r"```yaml\n(.*?)```", readme, re.DOTALL)
                   if "lr_search:" in block)
    (tmp_path / "recipes").symlink_to(REPOSITORY / "recipes")
    (tmp_path / "studies").mkdir()
    path = tmp_path / "studies" / "ladder.yaml"
    path.write_text(example, encoding="utf-8")
    study = load_study(path)
    assert list(study.spec["variants"]) == ["baseline", "dropout", "dropout_nadam", "selu"]
    assert study.searched() == ["dropout"]
    nadam = study.spec["variants"]["dropout_nadam"]["recipe"]
    assert nadam["train"]["optimizer"]["name"] == "nadam"
    assert any("dropout" in layer for layer in nadam["model"]["layers"])
    assert load_study(path, quick=True).spec["seeds"] == [0, 1, 2]


def test_lr_search_rates_that_print_alike_are_refused(tmp_path):
    path, message = _error(tmp_path, lr_search={"grid": [0.001, 0.0010000001]})
    assert message.startswith(f"{path}: lr_search: ")
    assert "should all differ" in message


def test_negative_seeds_are_refused(tmp_path):
    path, message = _error(tmp_path, seeds=[0, -1])
    assert message == f"{path}: seeds: seeds should be 0 or more (got [0, -1])"


def test_an_explicit_seed_list_holds_at_most_max_seeds(tmp_path):
    path, message = _error(tmp_path, seeds=list(range(20_000)))
    assert message.startswith(
        f"{path}: seeds: a list of seeds should hold at most 1000 seeds, not 20000 (got [0, 1, "
    )
    assert _load(tmp_path, seeds=list(range(MAX_SEEDS))).spec["seeds"] == list(range(MAX_SEEDS))


@pytest.mark.parametrize(("seeds", "words"), [
    ([3, 1, 3], "the seeds of a list should all differ; 3 is there twice"),
    ([0, 2**63], "seeds should be below 2**63, as a recipe's seed is"),
], ids=["repeated", "too-large"])
def test_seed_lists_a_run_could_not_use_are_refused(tmp_path, seeds, words):
    path, message = _error(tmp_path, seeds=seeds)
    assert message == f"{path}: seeds: {words} (got {seeds})"


# --- names the study compares, checked against what its runs report ------------------------

NO_METRICS = {"set": {"train.metrics": []}}
NO_VALIDATION = {"set": {"data.validation": 0}}


@pytest.mark.parametrize(("changes", "message"), [
    ({"metric": "test_acuracy"},
     "metric: 'test_acuracy' is not reported by any run; did you mean 'test_accuracy'? Accepted: "
     "train_loss, train_accuracy, val_loss, val_accuracy, test_loss, test_accuracy"),
    ({"metric": "test_accuracy", "base": _base(train={"optimizer": "sgd"})},
     "metric: 'test_accuracy' is not reported by any run, as train.metrics does not list "
     "accuracy; accepted: train_loss, val_loss, test_loss"),
    ({"metric": "accuracy"},
     "metric: 'accuracy' is not reported by any run; did you mean 'val_accuracy'? Accepted: "
     "train_loss, train_accuracy, val_loss, val_accuracy, test_loss, test_accuracy"),
    ({"variants": {"a": {}, "b": NO_METRICS}},
     "metric: 'test_accuracy' is not reported by the runs of variant 'b', as its train.metrics "
     "does not list accuracy; accepted: train_loss, val_loss, test_loss"),
    ({"metric": "val_accuracy", "variants": {"a": {}, "b": NO_VALIDATION}},
     "metric: 'val_accuracy' is not reported by the runs of variant 'b'; did you mean "
     "'train_accuracy'? Accepted: train_loss, train_accuracy, test_loss, test_accuracy"),
    ({"target": {"metric": "val_acuracy", "value": 0.8}},
     "target.metric: 'val_acuracy' is not logged per epoch by any run; did you mean "
     "'val_accuracy'? Accepted: loss, accuracy, val_loss, val_accuracy"),
    ({"target": {"metric": "test_accuracy", "value": 0.8}},
     "target.metric: 'test_accuracy' is not logged per epoch by any run; did you mean "
     "'val_accuracy'? Accepted: loss, accuracy, val_loss, val_accuracy"),
    ({"metric": "test_loss", "target": {"value": 0.8}, "variants": {"a": {}, "b": NO_METRICS}},
     "target.metric: 'val_accuracy' is not logged per epoch by the runs of variant 'b', as its "
     "train.metrics does not list accuracy; accepted: loss, val_loss"),
    ({"lr_search": {"grid": [0.1, 0.01], "metric": "test_accuracy"}},
     "lr_search.metric: 'test_accuracy' is not a validation metric reported by any run; did "
     "you mean 'val_accuracy'? Accepted: val_loss, val_accuracy"),
    ({"lr_search": {"grid": [0.1, 0.01], "metric": "test_accuracy"},
      "base": _base(train={"optimizer": "sgd"}), "metric": "test_loss"},
     "lr_search.metric: 'test_accuracy' is not a validation metric reported by any run; "
     "accepted: val_loss"),
    ({"lr_search": {"grid": [0.1, 0.01], "metric": "val_acuracy"}},
     "lr_search.metric: 'val_acuracy' is not a validation metric reported by any run; did you "
     "mean 'val_accuracy'? Accepted: val_loss, val_accuracy"),
], ids=["metric-typo", "metric-unlisted", "metric-history-key", "metric-a-variant-lacks", "metric-no-validation",
        "target-typo", "target-final-metric", "target-a-variant-lacks", "search-on-test",
        "search-on-test-unlisted", "search-typo"])
def test_a_name_some_run_would_not_produce_is_refused_at_load(tmp_path, changes, message):
    started = time.perf_counter()
    path, error = _error(tmp_path, **changes)
    assert error == f"{path}: {message}"
    assert time.perf_counter() - started < 2.0  # nothing trained
    assert sorted(item.name for item in tmp_path.iterdir()) == ["study.yaml"]


def test_names_only_the_runs_that_use_them_must_produce(tmp_path):
    # A variant left out of the search need not report the search's metric; the
    # study's metric and target only need what every variant has.
    study = _load(tmp_path, metric="test_loss", target={"metric": "val_loss", "value": 0.5},
                  variants={"a": {}, "b": NO_METRICS},
                  lr_search={"grid": [0.1, 0.01], "metric": "val_accuracy", "variants": ["a"]})
    assert study.searched() == ["a"]
    path, message = _error(tmp_path, metric="test_loss", variants={"a": {}, "b": NO_METRICS},
                           lr_search={"grid": [0.1, 0.01], "metric": "val_accuracy"})
    assert message == (
        f"{path}: lr_search.metric: 'val_accuracy' is not a validation metric reported by the "
        "runs of variant 'b', as its train.metrics does not list accuracy; accepted: val_loss")
    regularized = {"set": {"model.layers.1.dense.kernel_regularizer": {"l2": {"l2": 0.01}}}}
    study = _load(tmp_path, target={"metric": "regularization_loss", "value": 0.1},
                  variants={"a": regularized})
    assert study.spec["target"]["metric"] == "regularization_loss"


@pytest.mark.parametrize(
    ("quick", "budget", "expected"),
    [(True, None, [4, 1]), (False, 3, [3]), (False, 9, [4, 5]), (False, 6, [4, 2])],
)
def test_quick_and_budget_cut_or_lengthen_phases_in_order(tmp_path, quick, budget, expected):
    base = _base(train={"optimizer": "sgd", "phases": [{"epochs": 4}, {"epochs": 2}],
                        "metrics": ["accuracy"]})
    document = _document(base=base, quick={"seeds": 1, "epochs": 5})
    if budget:
        document["budget"] = {"epochs": budget}
    study = load_study(_write(tmp_path, document), quick=quick)
    train = study.plan("a", 0).recipe["train"]
    assert [phase["epochs"] for phase in train["phases"]] == expected
    assert train["epochs"] == sum(expected)


# --- --set on a study ----------------------------------------------------------------------


def test_set_overrides_every_variant_after_its_own_set_and_the_budget(tmp_path):
    _write(tmp_path / "r", _base(name="own"), "own.yaml")
    path = _write(tmp_path, _document(budget={"epochs": 6}, quick={"seeds": 1, "epochs": 2},
                                      variants={
        "a": {},
        "wide": {"set": {"model.layers.1.dense.units": 64, "train.epochs": 9}},
        "own": {"recipe": "r/own.yaml"},
    }))
    overrides = ["train.epochs=4", "model.layers.1.dense.units=5", "data.train_size=300"]
    study = load_study(path, overrides=overrides)
    for name, variant in study.spec["variants"].items():
        recipe = variant["recipe"]
        assert recipe["train"]["epochs"] == 4, name  # over the budget's 6 and the variant's 9
        assert _layers(recipe)[1]["dense"]["units"] == 5, name
        assert recipe["data"]["train_size"] == 300, name
        assert study.plan(name, 1).recipe["train"]["epochs"] == 4
    assert study.spec["overrides"] == overrides
    # --quick still shrinks the epochs the --set gave.
    quick = load_study(path, quick=True, overrides=overrides)
    assert quick.spec["variants"]["a"]["recipe"]["train"]["epochs"] == 2
    assert load_study(path).spec["overrides"] == []


def test_set_counts_in_the_fingerprint_as_parsed(tmp_path):
    path = _write(tmp_path, _document())
    plain = load_study(path)
    assert load_study(path, overrides=["train.epochs=2"]).fingerprint != plain.fingerprint
    # A --set that changes no value is still another study: the one asked for differs.
    assert load_study(path, overrides=["train.epochs=3"]).fingerprint != plain.fingerprint
    assert load_study(path, overrides=["train.epochs=2"]).fingerprint == load_study(
        path, overrides=["train.epochs= 2"]).fingerprint
    assert load_study(path, overrides=["train.epochs=2", "data.train_size=300"]).fingerprint \
        != load_study(path, overrides=["train.epochs=2"]).fingerprint
    # A store made before --set existed holds a spec without `overrides`: still the same study.
    without = {key: value for key, value in plain.spec.items() if key != "overrides"}
    assert type(plain)(without, plain.source, plain.variant_documents).fingerprint \
        == plain.fingerprint


@pytest.mark.parametrize(("overrides", "expected"), [
    (["train.epochs"], "--set: expected PATH=VALUE such as train.epochs=3, got 'train.epochs'"),
    (["seed=3"], "--set seed: a study sets each run's seed; choose them with --seeds or the "
     "study file's `seeds`"),
    (["name=x"], "--set name: a study sets each run's name; they are named after the study "
     "file's `name`"),
    (["model.layers.1.dense.units=4", "model.layers.5.dense.units=4"],
     "--set model.layers.5: index 5 is out of range; the list has 3 items "
     "(in variant 'a' of {path})"),
    (["train.epochs=0"], "{path}: variants.a: train.epochs: input should be greater than 0"),
])
def test_a_bad_set_is_one_line_naming_it(tmp_path, overrides, expected):
    path = _write(tmp_path, _document())
    with pytest.raises(UserInputError) as raised:
        load_study(path, overrides=overrides)
    assert str(raised.value).startswith(expected.format(path=path))
    assert "\n" not in str(raised.value)
