"""Clone models and reuse their layers without sharing a single tensor with the original.

The book's pitfall: `keras.models.Sequential(model_A.layers[:-1])` shares the
layer objects, so training the new model silently changes model A. Here
`reuse_layers` always works on a clone (or on a model freshly loaded from
disk), so the source is never touched.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch import nn

from tricklab.errors import UserInputError
from tricklab.nn.base import Layer
from tricklab.nn.builder import build_layers, build_model
from tricklab.nn.model import Sequential
from tricklab.transfer.loading import load_model
from tricklab.transfer.persistence import MODEL_FILE
from tricklab.transfer.saving import layer_specs


def clone_model(model: nn.Module, weights: bool = True) -> nn.Module:
    """Return a copy of `model` that shares no parameter or buffer with it.

    A tricklab `Sequential` is rebuilt from its layer configuration, so with
    `weights=False` every weight is drawn afresh from its initializer (from the
    global torch RNG, as `build_model` does) — what `keras.models.clone_model`
    gives; with `weights=True` the weights and moving statistics are copied
    too (Keras: `clone_model` followed by `set_weights(model.get_weights())`).
    Frozen layers stay frozen, and the clone has the source's dtype, device
    and training mode. Any other module is deep-copied, and with
    `weights=False` each submodule's `reset_parameters()` draws new weights.

    Args:
        model: The model to copy.
        weights: Copy the weights (`True`) or initialize new ones (`False`).
            Defaults to `True`.

    Raises:
        ValueError: With `weights=False`, when a submodule of a non-tricklab model
            holds parameters but has no `reset_parameters()` to draw new ones.
    """
    if not isinstance(model, Sequential):
        clone = copy.deepcopy(model)
        if not weights:
            _reset_parameters(clone)
        return clone
    clone = build_model(model.input_shape, layer_specs(model), path="layers")
    reference = next(iter(model.state_dict().values()), None)
    if reference is not None:
        clone.to(device=reference.device, dtype=reference.dtype)
    if weights:
        # load_state_dict copies into the clone's own tensors.
        clone.load_state_dict(model.state_dict())
    # Flag by flag, sublayers included: setting a block's `trainable` would reach
    # into it and unfreeze a sublayer frozen on its own.
    for source, copied in zip(model.modules(), clone.modules(), strict=True):
        if isinstance(source, Layer):
            copied._trainable = source._trainable
    for source, copied in zip(model.parameters(), clone.parameters(), strict=True):
        copied.requires_grad_(source.requires_grad)
    return clone.train(model.training)


def _reset_parameters(module: nn.Module) -> None:
    for submodule in module.modules():
        own = list(submodule.parameters(recurse=False))
        if hasattr(submodule, "reset_parameters"):
            submodule.reset_parameters()
        elif own:
            raise ValueError(
                f"clone_model(weights=False): {type(submodule).__name__} has parameters "
                "but no reset_parameters() to draw new ones"
            )


def parse_layer_slice(text: str, path: str = "model.reuse.layers") -> slice:
    """Read a Python slice such as `":-1"` (all but the output layer), `"1:4"` or `":"`.

    Args:
        text: `start:stop`, either part optional, each an integer (negative counts
            from the end).
        path: Dotted location of the value, for errors. Defaults to `"model.reuse.layers"`.

    Raises:
        UserInputError: When `text` is not of that form.
    """
    parts = text.split(":") if isinstance(text, str) else []
    try:
        if len(parts) != 2:
            raise ValueError
        start, stop = (int(part) if part.strip() else None for part in parts)
    except ValueError:
        raise UserInputError(
            f"{path}: expected a slice of layer indices such as ':-1', '1:4' or ':', "
            f"got {text!r}"
        ) from None
    return slice(start, stop)


def reuse_layers(
    source: nn.Module | str | os.PathLike[str],
    layers: str = ":-1",
    new_layers: Sequence[str | dict[str, Any] | nn.Module] = (),
    trainable: bool = True,
) -> Sequential:
    """Build a model from some layers of another, plus new layers on top.

    The book's `Sequential(model_A.layers[:-1])` followed by
    `add(Dense(1, activation="sigmoid"))`, but on a clone of model A (or on a
    model freshly loaded from disk), so training the result never changes model A.

    Args:
        source: A tricklab `Sequential`, a directory written by `save_model`, or a
            run directory (its final model, `model/`).
        layers: Which layers to take, as a Python slice of layer indices. Defaults to
            `":-1"` (all but the output layer).
        new_layers: Layers to add after the reused ones: recipe entries such as
            `{dense: {units: 1, activation: sigmoid}}`, or built layers. Defaults to `()`.
        trainable: Whether the reused layers train; `False` freezes them (Keras
            `layer.trainable = False`, batch normalization in inference mode).
            Defaults to `True` (frozen layers of the source stay frozen).

    Raises:
        UserInputError: When the directory holds no saved model, the slice is
            malformed or selects no layer.
    """
    if isinstance(source, nn.Module):
        if not isinstance(source, Sequential):
            raise UserInputError(
                f"reuse: the source must be a tricklab Sequential, got {type(source).__name__}"
            )
        model = clone_model(source)
    else:
        model = load_model(model_directory(source))
    indices = range(len(model))[parse_layer_slice(layers)]
    if not indices:
        raise UserInputError(
            f"model.reuse.layers: {layers!r} selects none of the source's {len(model)} layers"
        )
    kept = [model[index] for index in indices]
    if not trainable:
        for layer in kept:
            if isinstance(layer, Layer):
                layer.trainable = False
    reused = Sequential(*kept, input_shape=model.input_shape_at(indices.start))
    built = [item for item in new_layers if isinstance(item, nn.Module)]
    if built and len(built) != len(new_layers):
        raise UserInputError("reuse: new_layers must be all recipe entries or all modules")
    if not built and new_layers:
        built = build_layers(reused.output_shape, list(new_layers), "model.layers")
    reference = next(reused.parameters(), None)
    for layer in built:
        reused.append(layer)
    # New layers are built in the default dtype; they join the reused ones' (float64, say).
    return reused if reference is None else reused.to(reference.dtype)


def model_directory(path: str | os.PathLike[str]) -> Path:
    """The folder holding a saved model: `path` itself, or a run directory's `model/`.

    Args:
        path: A directory written by `save_model`, or a run directory.

    Raises:
        UserInputError: When neither holds a saved model.
    """
    path = Path(path)
    for candidate in (path, path / "model"):
        if (candidate / MODEL_FILE).is_file():
            return candidate
    raise UserInputError(
        f"model.reuse.from: {path} holds no saved model (expected {path / MODEL_FILE}, or a "
        f"finished run directory with {path / 'model' / MODEL_FILE})"
    )
