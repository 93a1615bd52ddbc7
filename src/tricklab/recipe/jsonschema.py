"""JSON Schema of a recipe, generated from the recipe's structure and every registry.

Editors (YAML language servers) and validators can then complete and check
layer names, optimizer hyperparameters and callback options while a recipe is
written, from the same signatures that tricklab itself validates against.
"""

from __future__ import annotations

from typing import Any

from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import core_schema

from tricklab.config import signature_model
from tricklab.data import datasets
from tricklab.data.augment import augmentations
from tricklab.nn import layers
from tricklab.optim import optimizers
from tricklab.optim.schedules import schedules
from tricklab.recipe.schema import Recipe
from tricklab.registry import Registry
from tricklab.train.callbacks import callbacks
from tricklab.train.losses import losses
from tricklab.train.metrics import metrics


class _LenientSchema(GenerateJsonSchema):
    """Leaves Python-only types (callables, tensors) unconstrained instead of failing."""

    def handle_invalid_for_json_schema(
        self, schema: core_schema.CoreSchema, error_info: str
    ) -> JsonSchemaValue:
        return {}


def _parameters(registry: Registry, name: str) -> dict[str, Any]:
    model = signature_model(registry.info(name).factory, registry.runtime_args)
    schema = model.model_json_schema(schema_generator=_LenientSchema)
    schema.pop("title", None)
    schema["description"] = registry.info(name).description
    return schema


def _named(registry: Registry) -> dict[str, Any]:
    """`name` or `{name: {config}}` for every entry of `registry`."""
    mappings = [
        {
            "type": "object",
            "properties": {name: _parameters(registry, name)},
            "required": [name],
            "additionalProperties": False,
        }
        for name in registry.names()
    ]
    return {"oneOf": [{"type": "string", "enum": registry.names()}, *mappings]}


def _optimizer() -> dict[str, Any]:
    """`name` or `{name: ..., **hyperparameters}`."""
    flat = []
    for name in optimizers.names():
        parameters = _parameters(optimizers, name)
        parameters["properties"] = {"name": {"const": name}, **parameters.get("properties", {})}
        parameters["required"] = ["name", *parameters.get("required", [])]
        flat.append(parameters)
    return {"oneOf": [{"type": "string", "enum": optimizers.names()}, *flat]}


def _data() -> dict[str, Any]:
    variants = []
    for name in datasets.names():
        parameters = _parameters(datasets, name)
        parameters["properties"] = {
            "dataset": {"const": name},
            "augment": {"type": "array", "items": _named(augmentations)},
            **parameters.get("properties", {}),
        }
        variants.append(parameters)
    return {"oneOf": variants}


def recipe_json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a recipe file."""
    schema = Recipe.model_json_schema(schema_generator=_LenientSchema)
    definitions = schema.get("$defs", {})
    properties = schema["properties"]
    properties["data"] = _data()
    definitions["ModelSection"]["properties"]["layers"]["items"] = _named(layers)
    train = definitions["TrainSection"]["properties"]
    train["optimizer"] = _optimizer()
    train["loss"] = _named(losses)
    train["metrics"]["items"] = _named(metrics)
    train["callbacks"]["items"] = _named(callbacks)
    train["schedule"] = {"oneOf": [{"type": "null"}, *_named(schedules)["oneOf"]]}
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "tricklab recipe"
    return schema
