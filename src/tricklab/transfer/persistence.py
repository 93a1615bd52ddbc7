"""Save and load whole models, and weights alone, without ever unpickling.

`save_model(model, directory, optimizer=None)` writes a directory:

- `model.json`: `{"format": "tricklab-model", "version": 1, "tricklab": <version>,
  "input_shape": [...], "layers": [{name: config}, ...], "frozen_layers": [...],
  "optimizer": true|false}`. `layers` is the same list `build_model` accepts (a
  recipe's `model.layers`), nested initializers, regularizers, constraints and
  activations written as a recipe writes them (`"he_normal"`, `{l2: {l2: 0.01}}`);
  `frozen_layers` lists the indices of layers whose `trainable` is off.
- `weights.safetensors`: the model's `state_dict()`, parameters and buffers
  (batch-normalization moving statistics included), keyed as PyTorch keys them
  (`"1.weight"`).
- with an optimizer, `optimizer.safetensors` (every tensor of its state, keyed
  `state.<param index>.<name>`, e.g. `state.0.m`) and `optimizer.json` (its
  registry name, its config, its param groups with the model names of their
  parameters, and the state values that are not tensors, such as `step`).

`load_model(directory)` rebuilds the architecture with `build_model` and loads
the weights strictly: every stored tensor must match the rebuilt model's names
and shapes, or nothing is loaded and a `UserInputError` lists the first
mismatches. The model is returned as built, in training mode (Keras models have
no modes; call `model.eval()` to predict with dropout off and batch
normalization on its moving statistics). `load_model(directory, optimizer=True)`
returns `(model, optimizer)`, the optimizer rebuilt over the loaded model's
parameters with its state restored, so training continues as if never saved.

`save_weights(module, path)` / `load_weights(module, path)` store and restore the
`state_dict()` of any `torch.nn.Module` in one safetensors file, strictly.

No pickle, ever: tensors are read with `safetensors.torch.load_file` only (never
`torch.load`), everything else is JSON, and layers are rebuilt from registry names,
so a crafted file can at worst be refused, never run code. Every file is written
atomically, all of them in place or none: a failure leaves the directory as it was.

Keras equivalents: `model.save("x.keras")` / `keras.models.load_model("x.keras")`
(`include_optimizer` is `optimizer=` here) and `model.save_weights("x.weights.h5")` /
`model.load_weights(...)`. PyTorch equivalents: `torch.save(model.state_dict(), f)`
with `model.load_state_dict(torch.load(f, weights_only=True))`, or
`safetensors.torch.save_model` / `load_model`.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, overload

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes
from torch import nn

import tricklab
from tricklab.atomic import atomic_open
from tricklab.config import Configurable
from tricklab.errors import UserInputError
from tricklab.nn import activations, constraints, initializers, layers, regularizers
from tricklab.nn.base import Layer
from tricklab.nn.builder import build_model
from tricklab.nn.model import Sequential
from tricklab.optim import optimizers
from tricklab.registry import Registry

FORMAT = "tricklab-model"
VERSION = 1
MODEL_FILE = "model.json"
WEIGHTS_FILE = "weights.safetensors"
OPTIMIZER_FILE = "optimizer.json"
OPTIMIZER_WEIGHTS_FILE = "optimizer.safetensors"
SHOWN_MISMATCHES = 3
"""How many mismatches an error message lists before saying how many more there are."""

# Where a configured object's class is looked up to find the name that rebuilds it.
_NESTED_REGISTRIES: tuple[Registry, ...] = (
    layers, activations, initializers, regularizers, constraints,
)


# ----------------------------------------------------------------------------- saving


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
        "layers": [_layer_spec(module, index) for index, module in enumerate(model)],
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


def _layer_spec(module: nn.Module, index: int) -> dict[str, Any]:
    """`{registry name: config}` of one layer, as `build_model` reads it."""
    name = _registered_name(module, layers)
    if name is None or not isinstance(module, Configurable):
        raise UserInputError(
            f"layers.{index}: {type(module).__name__} is not a registered tricklab layer, so "
            "save_model cannot describe it; use save_weights to save the weights only"
        )
    return {name: _plain(module.get_config(), f"layers.{index}.{name}")}


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


# ----------------------------------------------------------------------------- loading


@overload
def load_model(
    directory: str | os.PathLike[str], optimizer: Literal[False] = False
) -> Sequential: ...


@overload
def load_model(
    directory: str | os.PathLike[str], optimizer: Literal[True]
) -> tuple[Sequential, torch.optim.Optimizer]: ...


def load_model(
    directory: str | os.PathLike[str], optimizer: bool = False
) -> Sequential | tuple[Sequential, torch.optim.Optimizer]:
    """Rebuild a model written by `save_model`, weights loaded, in training mode.

    Keras equivalent: `keras.models.load_model("x.keras")`.

    Args:
        directory: The folder `save_model` wrote.
        optimizer: Also rebuild the saved optimizer over the model's parameters, state
            restored, and return `(model, optimizer)`. Defaults to `False` (the model).

    Returns:
        The model, or `(model, optimizer)` with `optimizer=True`.

    Raises:
        UserInputError: If `model.json` is missing, not JSON, or of another format or
            version; if a weights file is missing or not a safetensors file (a pickle is
            refused, never opened as one); if the stored tensors do not match the
            architecture (listing the first missing, unexpected or differently shaped
            ones); or if `optimizer=True` and no optimizer was saved.
    """
    directory = Path(directory)
    spec_path = directory / MODEL_FILE
    spec = _read_json(spec_path, FORMAT)
    if not isinstance(spec.get("input_shape"), list) or not isinstance(spec.get("layers"), list):
        raise UserInputError(f"{spec_path}: 'input_shape' and 'layers' must both be lists")
    try:
        model = build_model(spec["input_shape"], spec["layers"], path="layers")
    except UserInputError as error:
        raise UserInputError(f"{spec_path}: {error}") from None
    state = _read_tensors(directory / WEIGHTS_FILE)
    _check_match(model, state, directory / WEIGHTS_FILE, _layer_names(spec["layers"]))
    dtypes = {t.dtype for t in state.values() if t.is_floating_point()}
    if len(dtypes) == 1:
        model.to(dtypes.pop())
    model.load_state_dict(state, strict=True)
    frozen = spec.get("frozen_layers", [])
    if not isinstance(frozen, list) or not all(
        isinstance(i, int) and isinstance(model[i % len(model)], Layer) and 0 <= i < len(model)
        for i in frozen
    ):
        raise UserInputError(
            f"{spec_path}: 'frozen_layers' must list indices of layers (got {frozen!r})"
        )
    for index in frozen:
        model[index].trainable = False
    if not optimizer:
        return model
    if not spec.get("optimizer") or not (directory / OPTIMIZER_FILE).exists():
        raise UserInputError(
            f"{directory}: no optimizer was saved with this model "
            "(save_model(model, directory, optimizer=...) saves one)"
        )
    return model, _load_optimizer(model, directory)


def load_weights(module: nn.Module, path: str | os.PathLike[str]) -> None:
    """Load a safetensors file written by `save_weights` into `module`, strictly.

    Keras equivalent: `model.load_weights("x.weights.h5")`. PyTorch equivalent:
    `module.load_state_dict(safetensors.torch.load_file(path))`.

    Args:
        module: Any PyTorch module with the same architecture as the saved one.
        path: The safetensors file.

    Raises:
        UserInputError: If the file is missing or not a safetensors file, or if its
            tensors' names or shapes do not match `module` (nothing is loaded then).
    """
    path = Path(path)
    state = _read_tensors(path)
    _check_match(module, state, path, {})
    module.load_state_dict(state, strict=True)


def _read_json(path: Path, expected_format: str) -> dict[str, Any]:
    """Read a tricklab JSON file and check its format and version."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserInputError(
            f"{path}: not found; expected a directory written by tricklab's save_model"
        ) from None
    except (OSError, UnicodeDecodeError) as error:
        raise UserInputError(f"{path}: cannot be read ({error})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise UserInputError(f"{path}: not valid JSON ({error})") from None
    found = data.get("format") if isinstance(data, dict) else None
    if found != expected_format:
        raise UserInputError(
            f"{path}: not a {expected_format} file (format {found!r}, "
            f"expected {expected_format!r})"
        )
    if data.get("version") != VERSION:
        raise UserInputError(
            f"{path}: format version {data.get('version')!r} is not supported "
            f"(this tricklab {tricklab.__version__} reads version {VERSION})"
        )
    return data


def _read_tensors(path: Path) -> dict[str, torch.Tensor]:
    """Read a safetensors file; anything else (a pickle, a truncated file) is refused."""
    if not path.is_file():
        raise UserInputError(f"{path}: not found")
    try:
        return load_file(path, device="cpu")
    except (SafetensorError, OSError, ValueError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise UserInputError(
            f"{path}: not a valid safetensors file ({reason}); tricklab loads weights from "
            "safetensors only and never unpickles"
        ) from None


def _layer_names(layer_specs: list[Any]) -> dict[str, str]:
    """Map a layer's index (the first part of its state keys) to `layer <i> (<name>)`."""
    names = {}
    for index, item in enumerate(layer_specs):
        name = item if isinstance(item, str) else next(iter(item), "?")
        names[str(index)] = f"layer {index} ({name})"
    return names


def _check_match(
    module: nn.Module, stored: Mapping[str, torch.Tensor], path: Path, layer_names: dict[str, str]
) -> None:
    """Raise a one-line `UserInputError` listing the first mismatches of `stored` and `module`."""
    expected = module.state_dict()

    def where(key: str) -> str:
        layer = layer_names.get(key.split(".", 1)[0])
        return f"{layer} tensor '{key}'" if layer else f"tensor '{key}'"

    problems = []
    for key, tensor in expected.items():
        if key not in stored:
            problems.append(f"{where(key)} missing from the file")
        elif tuple(stored[key].shape) != tuple(tensor.shape):
            problems.append(
                f"{where(key)} has shape {list(stored[key].shape)} in the file "
                f"but {list(tensor.shape)} in the model"
            )
    problems += [f"unexpected {where(key)} in the file" for key in stored if key not in expected]
    if problems:
        shown = "; ".join(problems[:SHOWN_MISMATCHES])
        more = (
            f" (and {len(problems) - SHOWN_MISMATCHES} more)"
            if len(problems) > SHOWN_MISMATCHES else ""
        )
        raise UserInputError(
            f"{path}: the weights do not match the model's architecture: {shown}{more}"
        )


def _load_optimizer(model: nn.Module, directory: Path) -> torch.optim.Optimizer:
    """Rebuild the saved optimizer over `model`'s parameters and restore its state."""
    path = directory / OPTIMIZER_FILE
    description = _read_json(path, "tricklab-optimizer")
    try:
        name = description["name"]
        info = optimizers.info(name, f"{path}: name")
        parameters = dict(model.named_parameters())
        groups, saved_groups = [], []
        for group in description["param_groups"]:
            missing = [n for n in group["param_names"] if n not in parameters]
            if missing:
                raise UserInputError(
                    f"{path}: parameter '{missing[0]}' is not in the loaded model"
                )
            settings = {k: v for k, v in group.items() if k not in ("params", "param_names")}
            groups.append({"params": [parameters[n] for n in group["param_names"]], **settings})
            saved_groups.append({**settings, "params": list(group["params"])})
        optimizer = info.factory.from_config(description["config"], groups)
        state: dict[int, dict[str, Any]] = {
            int(index): dict(values) for index, values in description["state"].items()
        }
    except (KeyError, TypeError, AttributeError) as error:
        raise UserInputError(f"{path}: malformed optimizer description ({error!r})") from None
    for key, tensor in _read_tensors(directory / OPTIMIZER_WEIGHTS_FILE).items():
        _, index, name = key.split(".", 2)
        state.setdefault(int(index), {})[name] = tensor
    try:
        optimizer.load_state_dict({"state": state, "param_groups": saved_groups})
    except (ValueError, KeyError) as error:
        raise UserInputError(f"{path}: optimizer state does not fit the model ({error})") from None
    return optimizer
