"""Presets: the chapter's two summary tables as recipe defaults.

A preset fills in what a recipe leaves unsaid; anything the recipe says wins.
It works on the raw recipe (before validation), so "unsaid" means "absent",
and it returns the list of decisions it took so `tricklab summary` can show
them. Applying a preset to a recipe it already expanded changes nothing, so
the resolved recipe stored in a run directory reads back to itself.

Reference: Géron, Hands-On Machine Learning (2nd ed.), ch. 11, Tables 11-3
("Default DNN configuration") and 11-4 ("DNN configuration for a
self-normalizing net").
"""

from __future__ import annotations

from collections.abc import Container
from contextvars import ContextVar
from typing import Any

from tricklab.errors import UserInputError
from tricklab.registry import Registry

DEEP_FROM = 10
"""Hidden dense layers from which `default_dnn` adds batch normalization (the book: "if deep")."""

presets: Registry = Registry("preset")
"""Each entry is a function that fills a raw recipe in place and returns its decisions."""

_ACTIVATIONS: ContextVar[Container[str] | None] = ContextVar("activation layer names")
"""The activation names a preset being applied tells apart from other layers, when the
caller gives them (the registry snapshot's); unset, the live registry's are read."""


def _layer_name(entry: Any) -> str:
    if isinstance(entry, dict):
        return next(iter(entry), "")
    return entry if isinstance(entry, str) else ""


def _is_activation(layers: list[Any], index: int) -> bool:
    name = _layer_name(layers[index]) if index < len(layers) else ""
    return name in _activation_names() or name == "activation"


def _activation_names() -> Container[str]:
    """The names `apply_preset` was given, else the live registry's (which imports PyTorch)."""
    names = _ACTIVATIONS.get(None)
    if names is None:
        from tricklab.nn import activations as names
    return names


def _hidden_dense(layers: list[Any]) -> list[int]:
    """Indices of every dense layer but the last (the output layer keeps its own activation)."""
    dense = [i for i, entry in enumerate(layers) if _layer_name(entry) == "dense"]
    return dense[:-1]


def _followed_by_activation(layers: list[Any], index: int) -> bool:
    """Whether an activation layer comes after `index` before the next dense layer."""
    for position in range(index + 1, len(layers)):
        if _layer_name(layers[position]) == "dense":
            return False
        if _is_activation(layers, position):
            return True
    return False


def _dense_config(layers: list[Any], index: int) -> dict[str, Any]:
    entry = layers[index]
    if isinstance(entry, str) or entry.get("dense") is None:
        layers[index] = entry = {"dense": {}}
    return entry["dense"]


def _fill_hidden(document: dict[str, Any], initializer: str, activation: str) -> list[str]:
    decisions = []
    layers = document.get("model", {}).get("layers", [])
    for index in _hidden_dense(layers):
        config = _dense_config(layers, index)
        if "kernel_initializer" not in config:
            config["kernel_initializer"] = initializer
            decisions.append(f"model.layers.{index}.dense.kernel_initializer = {initializer}")
        if "activation" not in config and not _followed_by_activation(layers, index):
            config["activation"] = activation
            decisions.append(f"model.layers.{index}.dense.activation = {activation}")
    return decisions


def _fill_training(document: dict[str, Any]) -> list[str]:
    """Tables 11-3 and 11-4 share the optimizer (Nadam) and the schedule (1cycle)."""
    decisions = []
    train = document.setdefault("train", {})
    if "optimizer" not in train:
        train["optimizer"] = {"name": "nadam"}
        decisions.append("train.optimizer = nadam")
    if "schedule" not in train:
        train["schedule"] = {"one_cycle": {}}
        decisions.append("train.schedule = one_cycle")
    return decisions


def _insert_batch_norm(layers: list[Any], hidden: list[int]) -> None:
    """Batch norm after each hidden dense layer's activation, the layer's own or the next one."""
    result = []
    for index, entry in enumerate(layers):
        result.append(entry)
        after_dense = index in hidden and not _is_activation(layers, index + 1)
        after_activation = index - 1 in hidden and _is_activation(layers, index)
        if after_dense or after_activation:
            result.append({"batch_norm": {}})
    layers[:] = result


@presets.register(
    "default_dnn",
    description="He init, ELU, batch norm when deep, early stopping, Nadam, 1cycle.",
    reference="Géron, Hands-On ML 2nd ed., Table 11-3",
)
def default_dnn(document: dict[str, Any]) -> list[str]:
    """Table 11-3: He initialization, ELU, batch norm if deep, early stopping, Nadam, 1cycle."""
    decisions = _fill_hidden(document, "he_normal", "elu")
    layers = document.get("model", {}).get("layers", [])
    hidden = _hidden_dense(layers)
    has_norm = any(_layer_name(entry) == "batch_norm" for entry in layers)
    if len(hidden) >= DEEP_FROM and not has_norm:
        _insert_batch_norm(layers, hidden)
        decisions.append(f"batch_norm after each of the {len(hidden)} hidden dense layers (deep)")
    train = document.setdefault("train", {})
    if "callbacks" not in train:
        train["callbacks"] = [{"early_stopping": {"patience": 10, "restore_best_weights": True}}]
        decisions.append("train.callbacks = [early_stopping(patience=10, restore_best_weights)]")
    return decisions + _fill_training(document)


@presets.register(
    "self_normalizing",
    description="LeCun normal init, SELU, standardized inputs, alpha dropout, no batch norm.",
    reference="Géron, Hands-On ML 2nd ed., Table 11-4; Klambauer et al. 2017",
)
def self_normalizing(document: dict[str, Any]) -> list[str]:
    """Table 11-4: LeCun init, SELU, standardized inputs, alpha dropout, no BN, Nadam, 1cycle.

    Self-normalization holds only for a plain stack of dense layers: batch
    normalization in the recipe is an error rather than a silent override.
    """
    layers = document.get("model", {}).get("layers", [])
    for index, entry in enumerate(layers):
        if _layer_name(entry) == "batch_norm":
            raise UserInputError(
                f"model.layers.{index}: batch_norm defeats preset self_normalizing "
                "(SELU networks normalize themselves); remove it or use preset default_dnn"
            )
    decisions = _fill_hidden(document, "lecun_normal", "selu")
    for index, entry in enumerate(layers):
        if _layer_name(entry) == "dropout":
            layers[index] = {"alpha_dropout": entry["dropout"] if isinstance(entry, dict) else {}}
            decisions.append(f"model.layers.{index}: dropout -> alpha_dropout")
    data = document.setdefault("data", {})
    if "scale" not in data:
        data["scale"] = "standardize"
        decisions.append("data.scale = standardize")
    return decisions + _fill_training(document)


def apply_preset(document: dict[str, Any],
                 activations: Container[str] | None = None) -> list[str]:
    """Fill `document` in place with its `preset`'s defaults; return the decisions taken.

    Args:
        document: A raw recipe (parsed YAML).
        activations: The activation layers' names. Defaults to `None`: the live registry's
            (which imports PyTorch; the registry snapshot's names spare that).

    Raises:
        UserInputError: For an unknown preset name, naming the known ones.
    """
    name = document.get("preset")
    if name is None:
        return []
    preset = presets.info(name, "preset")
    if activations is None:
        return preset.factory(document)
    token = _ACTIVATIONS.set(activations)
    try:
        return preset.factory(document)
    finally:
        _ACTIVATIONS.reset(token)
