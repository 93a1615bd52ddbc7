"""Save models (architecture, weights, optimizer state) and weights alone, atomically.

The files and their contents are described in `tricklab.transfer.persistence`.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save as safetensors_bytes
from torch import nn

import tricklab
from tricklab.atomic import atomic_open
from tricklab.config import Configurable
from tricklab.errors import UserInputError
from tricklab.nn import activations, constraints, initializers, layers, regularizers
from tricklab.nn.base import Layer
from tricklab.nn.model import Sequential
from tricklab.optim import optimizers
from tricklab.registry import Registry
from tricklab.transfer.persistence import (
    FORMAT,
    MODEL_FILE,
    OPTIMIZER_FILE,
    OPTIMIZER_WEIGHTS_FILE,
    VERSION,
    WEIGHTS_FILE,
)

# Where a configured object's class is looked up to find the name that rebuilds it.
_NESTED_REGISTRIES: tuple[Registry, ...] = (
    layers, activations, initializers, regularizers, constraints,
)


def save_model(
    model: Sequential,
    directory: str | os.PathLike[str],
    optimizer: torch.optim.Optimizer | None = None,
) -> Path:
    """Write `model` (architecture and weights), and optionally its optimizer, into `directory`.

    Keras equivalent: `model.save("x.keras", include_optimizer=...)`.

    Args:
        model: A tricklab `Sequential` whose layers are all registered tricklab layers
            (as `build_model` makes them).
        directory: Folder to write into; created if missing. Files of an earlier save
            there are replaced.
        optimizer: A tricklab optimizer over `model`'s parameters whose state should be
            saved too. Defaults to `None` (weights only).

    Returns:
        The directory, as a `Path`.

    Raises:
        UserInputError: If a layer or a configured value of it cannot be written as a
            recipe would (an unregistered module, an arbitrary object), if the optimizer
            is not a registered tricklab optimizer or optimizes tensors outside `model`,
            or if `directory` is a file. Nothing is written then.
    """
    directory = Path(directory)
    if not isinstance(model, Sequential):
        raise UserInputError(
            f"{directory}: save_model needs a tricklab Sequential (as build_model makes), "
            f"got {type(model).__name__}; use save_weights for any torch.nn.Module"
        )
    if directory.exists() and not directory.is_dir():
        raise UserInputError(f"{directory}: exists and is not a directory")
    # Everything is serialized in memory first, so a model that cannot be saved
    # is refused before anything on disk changes.
    spec = {
        "format": FORMAT,
        "version": VERSION,
        "tricklab": tricklab.__version__,
        "input_shape": list(model.input_shape),
        "layers": layer_specs(model),
        "frozen_layers": [
            index for index, module in enumerate(model)
            if isinstance(module, Layer) and not module.trainable
        ],
        "optimizer": optimizer is not None,
    }
    files: dict[str, bytes] = {
        MODEL_FILE: _json_bytes(spec),
        WEIGHTS_FILE: _tensor_bytes(model.state_dict()),
    }
    if optimizer is not None:
        description, tensors = _optimizer_parts(model, optimizer)
        files[OPTIMIZER_FILE] = _json_bytes(description)
        files[OPTIMIZER_WEIGHTS_FILE] = _tensor_bytes(tensors)
    _write_all(directory, files)
    if optimizer is None:
        # model.json says there is no optimizer; an older save's files would only mislead.
        for stale in (OPTIMIZER_FILE, OPTIMIZER_WEIGHTS_FILE):
            with contextlib.suppress(FileNotFoundError):
                (directory / stale).unlink()
    return directory


def save_weights(module: nn.Module, path: str | os.PathLike[str]) -> Path:
    """Atomically write `module.state_dict()` (parameters and buffers) to one safetensors file.

    Keras equivalent: `model.save_weights("x.weights.h5")`. PyTorch equivalent:
    `safetensors.torch.save_file(module.state_dict(), path)`.

    Args:
        module: Any PyTorch module.
        path: File to write, conventionally `*.safetensors`; its folder is created.

    Returns:
        The path, as a `Path`.
    """
    path = Path(path)
    data = _tensor_bytes(module.state_dict())
    with atomic_open(path, "wb") as file:
        file.write(data)
    return path


def _write_all(directory: Path, files: dict[str, bytes]) -> None:
    """Write every file to a temporary name, then rename them all; on failure, none."""
    created = not directory.exists()
    try:
        with contextlib.ExitStack() as stack:
            # Exits run last-in first-out: model.json, entered first, is renamed
            # last, so it never describes weights that are not in place yet.
            handles = [
                (stack.enter_context(atomic_open(directory / name, "wb")), data)
                for name, data in sorted(files.items(), key=lambda item: item[0] != MODEL_FILE)
            ]
            for handle, data in handles:
                handle.write(data)
    except BaseException:
        if created:
            with contextlib.suppress(OSError):
                directory.rmdir()
        raise


def _json_bytes(data: Any) -> bytes:
    try:
        text = json.dumps(data, indent=2, allow_nan=False)
    except ValueError as error:
        raise UserInputError(f"cannot be written as strict JSON ({error})") from None
    return (text + "\n").encode("utf-8")


def _tensor_bytes(tensors: Mapping[str, torch.Tensor]) -> bytes:
    """Serialize tensors as safetensors: detached, on the CPU, contiguous, none sharing memory."""
    plain: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for name, tensor in tensors.items():
        tensor = tensor.detach().cpu().contiguous()
        # safetensors refuses tensors that share storage (tied weights): copy those.
        storage = tensor.untyped_storage().data_ptr()
        if tensor.numel() and storage in seen:
            tensor = tensor.clone()
        seen.add(storage)
        plain[name] = tensor
    return safetensors_bytes(plain)


def layer_specs(model: Sequential) -> list[dict[str, Any]]:
    """The layer list `build_model` rebuilds `model`'s architecture from, `[{name: config}]`.

    Args:
        model: A tricklab `Sequential` of registered tricklab layers.

    Raises:
        UserInputError: Naming the first layer, or configured value of one, that a
            recipe cannot describe (an unregistered module, an arbitrary object).
    """
    specs = []
    for index, module in enumerate(model):
        name = _registered_name(module, layers)
        if name is None or not isinstance(module, Configurable):
            raise UserInputError(
                f"layers.{index}: {type(module).__name__} is not a registered tricklab layer, "
                "so it cannot be described as a recipe would; save_weights / clone_model "
                "handle any torch.nn.Module"
            )
        specs.append({name: _plain(module.get_config(), f"layers.{index}.{name}")})
    return specs


def _registered_name(value: object, registry: Registry) -> str | None:
    """The first registered name whose factory is exactly `type(value)`, or `None`."""
    for info in registry:
        if info.factory is type(value):
            return info.name
    return None


def _plain(value: Any, path: str) -> Any:
    """Turn a config value into JSON data; configured objects become `name` or `{name: config}`."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Mapping):
        return {str(key): _plain(item, f"{path}.{key}") for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item, f"{path}.{index}") for index, item in enumerate(value)]
    if isinstance(value, Configurable):
        for registry in _NESTED_REGISTRIES:
            name = _registered_name(value, registry)
            if name is not None:
                config = _plain(value.get_config(), f"{path}.{name}")
                return {name: config} if config else name
    raise UserInputError(
        f"{path}: {type(value).__name__} value {value!r} cannot be written to {MODEL_FILE}; "
        "accepted: numbers, strings, lists, mappings and registered tricklab objects"
    )


def _optimizer_parts(
    model: nn.Module, optimizer: torch.optim.Optimizer
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """The JSON description and the state tensors of `optimizer`."""
    name = _registered_name(optimizer, optimizers)
    if name is None or not isinstance(optimizer, Configurable):
        raise UserInputError(
            f"optimizer: {type(optimizer).__name__} is not a registered tricklab optimizer "
            f"(known: {', '.join(optimizers.names())}), so save_model cannot rebuild it"
        )
    names = {id(parameter): key for key, parameter in model.named_parameters()}
    state = optimizer.state_dict()
    groups = []
    for group, saved in zip(optimizer.param_groups, state["param_groups"], strict=True):
        outside = [p for p in group["params"] if id(p) not in names]
        if outside:
            raise UserInputError(
                f"optimizer: it optimizes {len(outside)} tensor(s) that are not parameters "
                "of the model being saved"
            )
        entry = {key: _plain(value, f"optimizer.param_groups.{key}")
                 for key, value in saved.items() if key != "params"}
        entry["params"] = list(saved["params"])
        entry["param_names"] = [names[id(p)] for p in group["params"]]
        groups.append(entry)
    tensors: dict[str, torch.Tensor] = {}
    values: dict[str, dict[str, Any]] = {}
    for index, entries in state["state"].items():
        for key, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"state.{index}.{key}"] = value
            else:
                values.setdefault(str(index), {})[key] = _plain(
                    value, f"optimizer.state.{index}.{key}"
                )
    description = {
        "format": "tricklab-optimizer",
        "version": VERSION,
        "name": name,
        "config": _plain(optimizer.get_config(), f"optimizer.{name}"),
        "param_groups": groups,
        "state": values,
    }
    return description, tensors
