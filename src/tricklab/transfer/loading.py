"""Load saved models and weights: safetensors and JSON only, strictly, never a partial load.

The files and their contents are described in `tricklab.transfer.persistence`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, overload

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

import tricklab
from tricklab.data.preprocessing import Preprocessing
from tricklab.errors import UserInputError
from tricklab.nn.base import Layer
from tricklab.nn.builder import build_model
from tricklab.nn.footprint import DoesNotFitError
from tricklab.nn.model import Sequential
from tricklab.optim import optimizers
from tricklab.transfer.persistence import (
    FORMAT,
    MODEL_FILE,
    OPTIMIZER_FILE,
    OPTIMIZER_WEIGHTS_FILE,
    VERSION,
    WEIGHTS_FILE,
)

SHOWN_MISMATCHES = 3
"""How many mismatches an error message lists before saying how many more there are."""


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
        The model, or `(model, optimizer)` with `optimizer=True`. The model's
        `preprocessing` attribute is the folder's `preprocessing.json` (a
        `tricklab.data.Preprocessing`, written by `tricklab train` beside the model)
        or `None`: with it, `tricklab.predict_raw(model, "new.csv")` takes raw rows,
        images or arrays.

    Raises:
        UserInputError: If `model.json` is missing, not JSON, or of another format or
            version; if a weights file is missing or not a safetensors file (a pickle is
            refused, never opened as one); if the stored tensors do not match the
            architecture (listing the first missing, unexpected or differently shaped
            ones); or if `optimizer=True` and no optimizer was saved.
        DoesNotFitError: When the architecture's weights cannot fit in the memory
            available (a `UserInputError` naming the layer), before any is allocated.
    """
    directory = Path(directory)
    spec_path = directory / MODEL_FILE
    spec = _read_json(spec_path, FORMAT)
    if not isinstance(spec.get("input_shape"), list) or not isinstance(spec.get("layers"), list):
        raise UserInputError(f"{spec_path}: 'input_shape' and 'layers' must both be lists")
    try:
        # Refused before a weight is allocated when it cannot fit (an edited `units`).
        model = build_model(spec["input_shape"], spec["layers"], path="layers")
    except DoesNotFitError as error:
        raise DoesNotFitError(
            f"{spec_path}: {error}", error.path, error.required, error.available
        ) from None
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
    # What `predict_raw` needs to prepare raw rows or images; a run's model has it.
    model.preprocessing = Preprocessing.load(directory)
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
