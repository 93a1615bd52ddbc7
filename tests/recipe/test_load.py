import re

import pydantic
import pytest
import yaml

from tricklab.config import format_validation_error
from tricklab.data import INPUT_SHAPES, datasets
from tricklab.errors import UserInputError
from tricklab.recipe import load_recipe, recipe_from_dict
from tricklab.recipe.jsonschema import recipe_json_schema

from ..conftest import REPOSITORY

CHAPTER11 = REPOSITORY / "recipes" / "chapter11"


def minimal(**changes):
    recipe = {
        "name": "tiny",
        "model": {"layers": ["flatten", {"dense": {"units": 10, "activation": "softmax"}}]},
        "train": {"optimizer": "sgd"},
    }
    recipe.update(changes)
    return recipe


def write(tmp_path, document) -> str:
    path = tmp_path / "recipe.yaml"
    path.write_text(document if isinstance(document, str) else yaml.safe_dump(document))
    return str(path)


@pytest.mark.parametrize("path", sorted(CHAPTER11.glob("*.yaml")), ids=lambda p: p.stem)
def test_chapter_recipes_resolve(path):
    recipe = load_recipe(path)
    assert recipe.model.input_shape == [28, 28]
    assert recipe.data["dataset"] == "fashion_mnist"


def test_defaults_are_written_into_the_resolved_recipe():
    recipe = recipe_from_dict(minimal()).to_dict()
    dense = recipe["model"]["layers"][1]["dense"]
    assert dense["kernel_initializer"] == "glorot_uniform"
    assert dense["bias_initializer"] == "zeros"
    assert dense["use_bias"] is True
    assert recipe["model"]["layers"][0] == {"flatten": {}}
    assert recipe["train"]["optimizer"] == {
        "name": "sgd",
        "learning_rate": 0.01,
        "momentum": 0.0,
        "nesterov": False,
        "clipvalue": None,
        "clipnorm": None,
        "global_clipnorm": None,
        "weight_decay": None,
    }
    assert recipe["train"]["loss"] == {"sparse_categorical_crossentropy": {"from_logits": False}}
    assert recipe["data"] == {"dataset": "fashion_mnist", "validation": 5000, "scale": "unit",
                              "classes": None, "split": None, "train_size": None, "augment": []}
    assert recipe["model"]["reuse"] is None
    assert (recipe["train"]["target"], recipe["train"]["phases"]) == ("labels", None)
    assert recipe["train"]["cache_frozen_features"] is True
    assert (recipe["seed"], recipe["train"]["batch_size"], recipe["train"]["epochs"]) == (42, 32, 1)
    # resolving is idempotent: the stored recipe reads back to itself
    assert recipe_from_dict(recipe).to_dict() == recipe


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"colour": "red"}, "<top level>: unknown key 'colour'; accepted keys: data, model, name"),
        ({"train": {"optimizer": "sgd", "epoch": 3}},
         "train: unknown key 'epoch'; accepted keys: batch_size, best_monitor, cache_frozen_features, callbacks, channels_last, device, epochs"),
        ({"train": {"optimizer": "sgd", "epochs": "ten"}}, "train.epochs: input should be a valid integer"),
        ({"train": {"optimizer": "sgd", "batch_size": 0}}, "train.batch_size: input should be greater than 0"),
        ({"name": "has space"}, "name: string should match pattern"),
        ({"model": {"layers": ["flatten", {"dense2": {"units": 3}}]}},
         "model.layers.1: unknown layer 'dense2'; did you mean 'dense'?"),
        ({"model": {"layers": [{"dense": {"units": "many"}}]}},
         "model.layers.0.dense.units: input should be a valid integer"),
        ({"model": {"layers": [{"dense": {"units": 3, "kernel_initializer": "he_normall"}}]}},
         "model.layers.0.dense.kernel_initializer: unknown initializer 'he_normall'; did you mean 'he_normal'?"),
        ({"train": {"optimizer": {"name": "adma"}}},
         "train.optimizer.name: unknown optimizer 'adma'; did you mean 'adam'?"),
        ({"train": {"optimizer": {"name": "sgd", "lr": 0.1}}},
         "train.optimizer: unknown key 'lr'; accepted keys: clipnorm, clipvalue, global_clipnorm, learning_rate"),
        ({"train": {"optimizer": {"name": "sgd", "learning_rate": -1}}},
         "train.optimizer.learning_rate: input should be greater than or equal to 0"),
        ({"data": {"dataset": "cifar"}}, "data.dataset: unknown dataset 'cifar'"),
        ({"data": {"validation": "all"}}, "data.validation: input should be a valid integer"),
        ({"train": {"optimizer": "sgd", "callbacks": [{"early_stop": {}}]}},
         "train.callbacks.0: unknown callback 'early_stop'; did you mean 'early_stopping'?"),
        ({"data": {"validation": 0}, "train": {"optimizer": "sgd", "callbacks": ["early_stopping"]}},
         "train.callbacks.0.early_stopping.monitor: 'val_loss' needs a validation set"),
        ({"model": {"reuse": {"layers": ":-1"}, "layers": []}},
         "model.reuse.from: required field is missing"),
        ({"model": {"reuse": {"from": "runs/a", "freeze": True}, "layers": []}},
         "model.reuse: unknown key 'freeze'; accepted keys: from, layers, trainable"),
        ({"model": {"reuse": {"from": "runs/a", "layers": "-1"}, "layers": []}},
         "model.reuse.layers: expected a slice of layer indices such as ':-1'"),
        ({"model": {"layers": []}},
         "model.layers: a model needs at least one layer (or model.reuse)"),
        ({"train": {"optimizer": "sgd", "target": "pixels"}},
         "train.target: input should be 'labels' or 'inputs'"),
        ({"data": {"augment": "random_flip"}}, "data.augment: expected a list such as"),
        ({"data": {"augment": ["random_flop"]}},
         "data.augment.0: unknown augmentation 'random_flop'; did you mean 'random_flip'?"),
        ({"data": {"augment": [{"random_rotation": {"factor": 2}}]}},
         "data.augment.0.random_rotation.factor: input should be less than or equal to 1"),
    ],
)
def test_errors_name_the_field_and_what_is_accepted(change, message):
    with pytest.raises(UserInputError) as caught:
        recipe_from_dict(minimal(**change))
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_set_overrides_by_dotted_path_with_yaml_types(tmp_path):
    path = write(tmp_path, minimal())
    recipe = load_recipe(path, [
        "train.optimizer.name=adam",
        "train.optimizer.beta_1=0.8",
        "train.epochs=3",
        "model.layers.1.dense.units=20",
        "model.layers.0=flatten",
        "data.classes=[0, 1]",
        "seed=7",
    ])
    assert recipe.train.optimizer["name"] == "adam" and recipe.train.optimizer["beta_1"] == 0.8
    assert recipe.train.epochs == 3 and recipe.seed == 7
    assert recipe.model.layers[1]["dense"]["units"] == 20
    assert recipe.data["classes"] == [0, 1]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.epochs", "--set: expected PATH=VALUE"),
        ("model.layers.9.dense.units=3", "--set model.layers.9: index 9 is out of range; the list has 2"),
        ("model.layers.x=3", "'x' is not a list index"),
        ("train.epochs=0", "train.epochs: input should be greater than 0"),
        ("train.nope=1", "train: unknown key 'nope'"),
        # digits that `int` refuses: another script's, or more than 4,300 of them
        ("model.layers.\u00b2=3", "--set model.layers.\u00b2: '\u00b2' is not a list index (0..1)"),
        ("model.layers." + "9" * 5000 + ".dense.units=3",
         "index 99999999999999999... is out of range; the list has 2 items"),
        ("a\nb", "--set: expected PATH=VALUE such as train.epochs=3, got 'a\\nb'"),
    ],
)
def test_bad_overrides_are_clear_errors(tmp_path, override, message):
    with pytest.raises(UserInputError, match=re.escape(message)):
        load_recipe(write(tmp_path, minimal()), [override])


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(UserInputError, match="recipe file not found"):
        load_recipe(tmp_path / "absent.yaml")
    with pytest.raises(UserInputError, match=r"invalid YAML at line 2"):
        load_recipe(write(tmp_path, "name: x\nmodel: value: other\n"))
    with pytest.raises(UserInputError, match="a recipe is a mapping"):
        load_recipe(write(tmp_path, "- just\n- a list\n"))


@pytest.mark.parametrize("name", datasets.names())
def test_every_dataset_declares_its_input_shape(name):
    assert name in INPUT_SHAPES


def test_json_schema_lists_registered_names():
    schema = recipe_json_schema()
    layer_items = schema["$defs"]["ModelSection"]["properties"]["layers"]["items"]["oneOf"]
    assert "dense" in layer_items[0]["enum"]
    dense = next(item for item in layer_items[1:] if "dense" in item.get("properties", {}))
    assert "units" in dense["properties"]["dense"]["properties"]
    optimizer = schema["$defs"]["TrainSection"]["properties"]["optimizer"]["oneOf"]
    assert {o["properties"]["name"]["const"] for o in optimizer[1:]} >= {"sgd", "adam"}
    assert schema["additionalProperties"] is False


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"colo\nur": 1},
         "<top level>: unknown key 'colo\\nur'; accepted keys: data, model, name, preset, seed, "
         "train"),
        ({"model": {"layers": [{"dense": list(range(100_000))}]}},
         "model.layers.0.dense: expected a mapping of keyword arguments, got "
         "[0, 1, 2, 3, 4, 5, 6, 7, ...]"),
        ({"train": {"optimizer": "sgd", "epochs": "ten\nthousand" * 1000}},
         "train.epochs: input should be a valid integer, unable to parse string as an integer "
         "(got 'ten\\nthousandten\\nthousandten\\nthousa...en\\nthousandten\\nthousandten"
         "\\nthousand')"),
        ({"data": {"dataset": "fashion\nmnist"}},
         "data.dataset: unknown dataset 'fashion\\nmnist'; did you mean 'fashion_mnist'? Known: "
         "adding_problem, cifar10, cifar100, csv, fashion_mnist, image_folder, mnist, numpy"),
    ],
)
def test_a_users_value_is_shown_short_and_on_one_line(change, message):
    with pytest.raises(UserInputError) as caught:
        recipe_from_dict(minimal(**change))
    assert str(caught.value) == message


def test_a_long_key_in_a_location_is_shortened():
    class Counts(pydantic.BaseModel):
        counts: dict[str, int]

    with pytest.raises(pydantic.ValidationError) as caught:
        Counts.model_validate({"counts": {"k" * 10_000: "many"}})
    assert format_validation_error(caught.value, "study") == (
        "study.counts.'kkkkkkkkkkkkkkkkk...kkkkkkkkkkkkkkkkkk': input should be a valid integer, "
        "unable to parse string as an integer (got 'many')"
    )


def test_a_file_name_too_long_for_the_system_is_not_found(tmp_path):
    with pytest.raises(UserInputError) as caught:
        load_recipe(tmp_path / ("a" * 5000 + ".yaml"))
    message = str(caught.value)
    assert message.startswith("recipe file not found: '") and message.endswith("aaa.yaml'")
    assert len(message) < 330
