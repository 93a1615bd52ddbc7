"""From a recipe's `model:` section to a built `Sequential`, and its Keras-like summary.

The recipe lists layers as Keras code would, e.g.
`[flatten, {dense: {units: 300, kernel_initializer: he_normal}}, leaky_relu]`.
`resolve_layers` validates that list against the `layers` registry (and the
initializer/activation names nested in it), naming the dotted path of any
mistake, and returns it with every default filled in; `build_model` turns it
into a model.

A layer that holds a layer list of its own (a residual block) takes part
through two hooks: its classmethod `resolve_config(config, path)`, which
`resolve_layers` calls to validate and default that nested list at its own
dotted path, and `build_layers`, which it calls from its `build`; a build error
inside it is then reported at the full path, e.g.
`model.layers.3.residual.layers.0.batch_norm: ...`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from tricklab.config import split_trainable
from tricklab.errors import UserInputError
from tricklab.model_summary import LayerSummary, ModelSummary, ParamCounts, format_summary_table
from tricklab.nn.base import Layer, Shape, as_shape, build_layer, output_shape_of, resolve_nested
from tricklab.nn.base import layers as layer_registry
from tricklab.nn.convolutional import NotAnImageError
from tricklab.nn.model import Sequential


def resolve_layers(
    layers: Sequence[str | dict[str, Any]], path: str = "model.layers"
) -> list[dict[str, dict[str, Any]]]:
    """Validate a recipe's layer list and return it fully defaulted as `[{name: config}, ...]`.

    Args:
        layers: Layer names or one-key mappings `{name: {config}}`.
        path: Dotted location of the list in the recipe. Defaults to `"model.layers"`.

    Raises:
        UserInputError: Naming e.g. `model.layers.1.dense.units` on an unknown layer
            (suggesting the closest name), an unknown key, a wrong type, or an unknown
            nested initializer or activation.
    """
    if isinstance(layers, str | bytes | dict) or not isinstance(layers, Sequence) or not layers:
        raise UserInputError(f"{path}: expected a non-empty list of layers (got {layers!r})")
    resolved = []
    for index, item in enumerate(layers):
        item, trainable = split_trainable(item, f"{path}.{index}")
        name, config = layer_registry.resolve(item, f"{path}.{index}")
        factory = layer_registry.info(name).factory
        config = resolve_nested(factory, config, f"{path}.{index}.{name}")
        resolve_config = getattr(factory, "resolve_config", None)
        if resolve_config is not None:
            config = resolve_config(config, f"{path}.{index}.{name}")
        # Only a frozen layer says so, keeping every other resolved recipe as it was.
        resolved.append({name: config if trainable else {**config, "trainable": False}})
    return resolved


def build_model(
    input_shape: Sequence[int], layers: Sequence[str | dict[str, Any]], path: str = "model.layers"
) -> Sequential:
    """Build the model a recipe's `model:` section describes.

    Weights are drawn from the global torch RNG in layer order, so
    `torch.manual_seed` before the call makes the model reproducible. A layer
    entry may say `trainable: false` to freeze it, as a Keras layer's
    `trainable=False` argument does.

    Args:
        input_shape: Shape of one sample, e.g. `[28, 28]`.
        layers: The recipe's layer list (see `resolve_layers`).
        path: Dotted location of the list in the recipe; the input shape is
            reported as its sibling `input_shape`. Defaults to `"model.layers"`.

    Raises:
        UserInputError: When the input shape or a layer is invalid, naming its path.
        DoesNotFitError: When the model's weights plus one sample's forward pass
            exceed the memory available, naming the input shape or the layer with
            the largest share (see `build_layers`).
    """
    parent = path.rpartition(".")[0]
    input_path = f"{parent}.input_shape" if parent else "input_shape"
    shape = as_shape(input_shape, input_path)
    with model_input(shape, input_path):
        return Sequential(*build_layers(shape, layers, path), input_shape=shape)


def build_layers(
    input_shape: Shape, layers: Sequence[str | dict[str, Any]], path: str = "model.layers"
) -> list[Layer]:
    """Build each layer of a recipe's layer list in order, the first for `input_shape`.

    A layer whose entry says `trainable: false` is frozen (Keras `layer.trainable = False`).
    Before anything is allocated, the list is built on the `meta` device to
    measure it, and refused when its weights plus one sample's forward pass
    exceed the memory available (`tricklab.nn.footprint`; the layers of a
    residual block are checked with the block).

    Args:
        input_shape: Per-sample shape entering the first layer.
        layers: The recipe's layer list (see `resolve_layers`).
        path: Dotted location of the list in the recipe. Defaults to `"model.layers"`.

    Raises:
        UserInputError: When a layer is invalid for its input shape, naming its path.
        DoesNotFitError: When the model cannot fit in memory, naming the input
            shape or the layer with the largest share (a `UserInputError`).
    """
    if _memory_checked.get():
        return _build_each(input_shape, layers, path)
    # footprint builds its estimate with this module, so it is imported here, not above.
    from tricklab.nn.footprint import estimate_footprint

    with unchecked_build():
        try:
            # Outputs only, no meta forward pass: cheaper, and enough for one sample.
            footprint = estimate_footprint(input_shape, layers, path, trace=False)
        except META_FAILURES:
            # A layer whose build needs real values cannot be measured on the meta
            # device; it is built as before, unchecked, rather than refused.
            footprint = None
        if footprint is not None:
            # Refused before a single weight is allocated.
            footprint.check_build_fits()
        return _build_each(input_shape, layers, path)


@contextmanager
def unchecked_build() -> Iterator[None]:
    """Within it, `build_layers` builds without estimating the memory first.

    For code that has checked already: `build_layers` itself around the real
    build (a residual block's own layer list is part of the checked whole), and
    the meta-device estimate of `tricklab.nn.footprint`, which allocates nothing.
    """
    token = _memory_checked.set(True)
    try:
        yield
    finally:
        _memory_checked.reset(token)


META_FAILURES = (RuntimeError, TypeError)
"""What code that needs real values raises on meta tensors (`.item()`, `.numpy()`, `nonzero`)."""

_memory_checked: ContextVar[bool] = ContextVar("tricklab_memory_checked", default=False)
"""Whether the layer list being built was already checked against the memory available."""


def _build_each(
    input_shape: Shape, layers: Sequence[str | dict[str, Any]], path: str
) -> list[Layer]:
    """`build_layers` without the memory check."""
    outer = _source.get()
    # A block's own list (`layers`) is named from the block's place in the model.
    where = path if outer is None or outer.location is None else f"{outer.location}.{path}"
    specs = resolve_layers(layers, path)
    shape, modules = tuple(input_shape), []
    # The first layer's samples come from where the list's own do.
    before = None if outer is None else outer.before
    for index, spec in enumerate(specs):
        ((name, config),) = spec.items()
        config = dict(config)
        trainable = config.pop("trainable", True)
        module = layer_registry.info(name).factory(**config)
        model = None if outer is None or outer.model is None else outer.model.after(
            specs[:index], path)
        source = _Source(f"{where}.{index}.{name}", before, model)
        before = source.location
        token = _source.set(source)
        try:
            shape = build_layer(module, shape)
        except NotAnImageError as error:
            raise LayerBuildError(
                f"{path}.{index}.{name}", f"{error}{image_advice(error.input_shape, source)}"
            ) from None
        except LayerBuildError as error:
            raise LayerBuildError(f"{path}.{index}.{name}.{error.path}", error.reason) from None
        except UserInputError as error:
            raise LayerBuildError(f"{path}.{index}.{name}", str(error)) from None
        finally:
            _source.reset(token)
        # Only a frozen entry sets the flag: setting it to True would also
        # unfreeze the frozen sublayers of a block built just above.
        if not trainable:
            module.trainable = False
        # Lets a footprint name a layer inside a block: `model.layers.3.residual.layers.0.dense`.
        module.recipe_path = f"{path}.{index}.{name}"
        modules.append(module)
    return modules


@dataclass(frozen=True)
class _ModelInput:
    """The model's input, and the samples it gives a layer, for advice on a shape mistake.

    Args:
        input_path: Where the recipe gives the model's input shape, e.g. `model.input_shape`.
        shape: The model's input shape.
        entering: The shape of the samples that reach the layer when the model
            takes inputs of a given shape; `None` when the layers before it
            cannot take such inputs.
    """

    input_path: str
    shape: Shape
    entering: Callable[[Shape], Shape | None]

    def after(self, specs: Sequence[dict[str, dict[str, Any]]], path: str) -> _ModelInput:
        """The same model input, for the layer after `specs` (resolved entries of one list)."""

        def entering(model_input: Shape) -> Shape | None:
            shape = self.entering(model_input)
            if shape is None or not specs:
                return shape
            token = _source.set(None)  # rebuilt only to learn shapes: no advice of its own
            try:
                # On the meta device: nothing is allocated, the global generator is untouched.
                with torch.random.fork_rng(devices=[]), unchecked_build(), torch.device("meta"):
                    for module in _build_each(shape, specs, path):
                        shape = output_shape_of(module, shape)
            except (UserInputError, *META_FAILURES):
                return None
            finally:
                _source.reset(token)
            return shape

        return _ModelInput(self.input_path, self.shape, entering)


@dataclass(frozen=True)
class _Source:
    """Where the samples that reach the layer being built come from.

    Args:
        location: The layer's full dotted path, e.g. `model.layers.3.residual`
            (the lists of a block are named from it).
        before: Full dotted path of the layer whose outputs reach it; `None` when
            they are the model's inputs or nothing says.
        model: The model's input, when the list is a model's (`model_input`).
    """

    location: str | None
    before: str | None
    model: _ModelInput | None


_source: ContextVar[_Source | None] = ContextVar("tricklab_layer_source", default=None)
"""Where the samples of the layer list being built come from; `None` when nothing says."""


@contextmanager
def model_input(
    input_shape: Sequence[int], input_path: str = "model.input_shape"
) -> Iterator[None]:
    """Within it, the layer list `build_layers` builds is a model's, taking `input_shape`.

    A layer that needs images and does not get them is then told whether the
    model's input shape is what to change (`image_advice`). `build_model` sets
    it; code that checks a recipe's layers with `build_layers` sets it around the call.

    Args:
        input_shape: The model's input shape, e.g. `[28, 28]`.
        input_path: Where the recipe gives it. Defaults to `"model.input_shape"`.
    """
    token = _source.set(_Source(None, None, _ModelInput(input_path, tuple(input_shape), tuple)))
    try:
        yield
    finally:
        _source.reset(token)


def image_advice(shape: Shape, source: _Source) -> str:
    """What to add to "`layer` expects (height, width, channels), got `shape`": the next step.

    The model's input shape is suggested only when that is what the layer gets:
    when the model given `(height, width, 1)` inputs would hand the layer
    `shape` with a channel axis added (it is first, or only layers that keep
    the shape come before it). Otherwise the message names the layer whose
    outputs these are and, for `(height, width)` outputs, the `reshape` that
    reads them as one-channel images.

    Args:
        shape: What the layer got.
        source: Where its samples come from.
    """
    model = source.model
    if model is not None and len(shape) == len(model.shape) == 2:
        suggested = (*model.shape, 1)
        if model.entering(suggested) == (*shape, 1):
            # Worded as before: `input_shape` beside the layer's own `model.layers.N` path.
            return f"; use input_shape {list(suggested)}"
    if source.before is None:
        return ""
    advice = f" from {source.before}"
    if len(shape) == 2:
        advice += (f"; to read them as one-channel images, add the layer "
                   f"{{reshape: {{target_shape: [{shape[0]}, {shape[1]}, 1]}}}} before it")
    return advice


class LayerBuildError(UserInputError):
    """A build error located at a dotted path inside a layer, e.g. `layers.0.dense`.

    `build_layers` prefixes the path with the layer's own, so an error deep in
    nested blocks reads `model.layers.3.residual.layers.0.dense: reason`. A
    layer raises one itself to name its own field, e.g. a residual block's
    `shortcut`.

    Args:
        path: Dotted location of the mistake, relative to the layer that raises it.
        reason: What is wrong, without the path.
    """

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


def count_params(module: nn.Module) -> ParamCounts:
    """Count parameters as Keras does: float buffers (BN moving statistics) are non-trainable.

    Args:
        module: Any PyTorch module.
    """
    trainable = sum(p.numel() for p in module.parameters() if p.requires_grad)
    frozen = sum(p.numel() for p in module.parameters() if not p.requires_grad)
    statistics = sum(b.numel() for b in module.buffers() if b.is_floating_point())
    return ParamCounts(trainable + frozen + statistics, trainable, frozen + statistics)


def summarize(model: Sequential) -> list[LayerSummary]:
    """Return one `LayerSummary` per layer of `model`, in order (Keras `model.summary()`).

    Args:
        model: A built model.
    """
    names = {info.factory: info.name for info in layer_registry}
    seen: dict[str, int] = {}
    rows = []
    shape = model.input_shape
    for module in model:
        base = names.get(type(module), type(module).__name__.lower())
        count = seen.get(base, 0)
        seen[base] = count + 1
        shape = output_shape_of(module, shape)
        trainable = (
            module.trainable
            if isinstance(module, Layer)
            else all(p.requires_grad for p in module.parameters())
        )
        rows.append(
            LayerSummary(
                name=base if count == 0 else f"{base}_{count}",
                type=type(module).__name__,
                output_shape=shape,
                params=count_params(module).total,
                trainable=trainable,
            )
        )
    return rows


def format_summary(model: Sequential) -> str:
    """Render `model` as a Keras-like text table with parameter totals.

    The table is `tricklab.model_summary.format_summary_table`'s, which also
    prints the summary `tricklab summary` works out without building the model.

    Args:
        model: A built model.
    """
    summary = ModelSummary(model.input_shape, model.output_shape, tuple(summarize(model)),
                           count_params(model))
    return format_summary_table(summary)
