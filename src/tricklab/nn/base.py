"""The Keras-style layer contract shared by activations, layers and the model builder.

A tricklab layer is constructed from hyperparameters only; `build(input_shape)`
then creates its parameters knowing the per-sample input shape (no batch
dimension), and `compute_output_shape(input_shape)` says what comes out. This
lets a recipe list `dense: {units: 300}` without the input size, as Keras does,
while the built object is a plain `torch.nn.Module` whose `forward` is as lean
as the hand-written PyTorch equivalent.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, get_args, get_type_hints

import torch
from torch import nn

from tricklab.config import Configurable, validate_config
from tricklab.errors import UserInputError
from tricklab.registry import Registry

if TYPE_CHECKING:
    from tricklab.nn.regularizers import Regularizer

Shape = tuple[int, ...]

IMAGE_RANK = 3
"""Rank of a per-sample image shape, `(height, width, channels)` as Keras writes it."""

Projection = Callable[[torch.Tensor], torch.Tensor]
"""A constraint bound to one weight's layout: projects the weight in place and returns it."""


@dataclass(frozen=True)
class RegistryRef:
    """Marks a parameter (inside `Annotated[...]`) whose value names an entry of another registry.

    The builder resolves such values, e.g. `kernel_initializer: he_normal`, against
    `registry` so that an unknown name is reported at its own dotted path.

    Args:
        registry: The registry the value must name.
    """

    registry: Registry


class Layer(Configurable, nn.Module):
    """Base class of tricklab layers: Keras's `build` / `compute_output_shape` contract.

    Subclasses take hyperparameters in `__init__`, create parameters in `build`
    (ending with `super().build(input_shape)`) and compute in `forward`. The
    constructor arguments are validated against the typed signature, so a
    direct `Dense(units=-3)` fails like the recipe `{dense: {units: -3}}` does.

    Attributes:
        output_activation: `"softmax"` or `"sigmoid"` when the layer's last
            operation is that squashing function, which `forward_logits` skips.
        built: Whether `build` has run.
        recipe_path: Where `build_layers` found the layer, relative to the layer
            holding its list, e.g. `layers.0.dense` inside a residual block (a
            memory estimate names sublayers by it); `None` for a layer built otherwise.
    """

    output_activation: str | None = None
    recipe_path: str | None = None

    def __init__(self) -> None:
        super().__init__()
        validate_config(type(self), self._config, type(self).__name__)
        self.built = False
        self._trainable = True

    def build(self, input_shape: Shape) -> None:
        """Create the layer's parameters (none here) and mark it built.

        Args:
            input_shape: Shape of one input sample, without the batch dimension.
        """
        self.built = True

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        """Return the per-sample output shape; the input shape unless overridden.

        Args:
            input_shape: Shape of one input sample, without the batch dimension.
        """
        return tuple(input_shape)

    def forward_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Return the output before `output_activation`; here, with none, `self(x)`.

        Args:
            x: A batch of inputs.
        """
        return self(x)

    def weight_regularizers(self) -> dict[str, Regularizer]:
        """Map the name of each of this layer's own regularized parameters to its regularizer.

        A model collects these once, when the layer joins it, and adds their
        penalties to the loss (`Sequential.regularization_loss`); sublayers,
        such as a Dense layer's parametric activation, report their own. None here.
        """
        return {}

    def weight_constraints(self) -> dict[str, Projection]:
        """Map the name of each of this layer's own constrained parameters to its projection.

        Each projection is the constraint already bound to the parameter's
        layout (`Constraint.bind`), so a model collects them once and applies
        them after every optimizer step (`Sequential.apply_constraints`). None here.
        """
        return {}

    @property
    def deterministic_in_training(self) -> bool:
        """Whether, in training mode, each sample's output is a fixed function of that sample.

        True unless the layer or a sublayer draws random numbers in training
        (dropout, RReLU's slopes) or uses the batch's statistics (trainable
        batch normalization). A frozen, deterministic bottom of a network can
        have its outputs computed once and cached (see
        `Sequential.frozen_prefix_length`).
        """
        return all(
            not isinstance(module, Layer) or module._deterministic_itself()
            for module in self.modules()
        )

    def _deterministic_itself(self) -> bool:
        """This layer alone, sublayers aside; overridden by the random or batch-dependent ones."""
        return True

    @property
    def trainable(self) -> bool:
        """Whether the layer trains (Keras `layer.trainable`).

        Setting it to `False` freezes every parameter (`requires_grad_(False)`)
        and, as in Keras, makes batch normalization run in inference mode.
        """
        return self._trainable

    @trainable.setter
    def trainable(self, value: bool) -> None:
        # Sublayers (a Dense layer's PReLU, a residual block's batch norm) follow.
        for module in self.modules():
            if isinstance(module, Layer):
                module._trainable = bool(value)
        for parameter in self.parameters():
            parameter.requires_grad_(bool(value))

    def extra_repr(self) -> str:
        return ", ".join(f"{key}={value!r}" for key, value in self._config.items())


layers: Registry[Layer] = Registry("layer", base=Layer)


def as_shape(shape: Sequence[int], path: str = "input_shape") -> Shape:
    """Check that `shape` is a non-empty sequence of positive ints and return it as a tuple.

    Args:
        shape: The per-sample shape, e.g. `[28, 28]`.
        path: Dotted location of `shape`, for the error message. Defaults to `"input_shape"`.

    Raises:
        UserInputError: Naming `path` when the shape is not valid.
    """
    if (
        isinstance(shape, str | bytes)
        or not isinstance(shape, Sequence)
        or not shape
        or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape)
    ):
        raise UserInputError(
            f"{path}: expected a non-empty list of positive integers (got {shape!r})"
        )
    return tuple(shape)


def is_image(shape: Sequence[int]) -> bool:
    """Whether a per-sample shape is an image, `(height, width, channels)`.

    Recipes and shapes follow Keras's channels-last convention, but inside a
    model an image batch is held channels-first, `[N, C, H, W]`, the layout
    PyTorch's convolutions expect: `Sequential` converts at its input and
    output, and every layer whose meaning depends on the channel axis (Dense,
    Flatten, batch normalization, ...) reads it at dimension 1. Samples of any
    other rank are held as the shape says.

    Args:
        shape: Per-sample shape, without the batch dimension.
    """
    return len(shape) == IMAGE_RANK


def channels_first(x: torch.Tensor) -> torch.Tensor:
    """Move a Keras image batch `[N, H, W, C]` to the layout held inside a model, `[N, C, H, W]`.

    A view, no copy; with one channel the result is even contiguous.
    """
    return x.movedim(-1, 1)


def channels_last(x: torch.Tensor) -> torch.Tensor:
    """Move an image batch held inside a model, `[N, C, H, W]`, back to Keras's `[N, H, W, C]`."""
    return x.movedim(1, -1)


def held_shape(shape: Sequence[int]) -> Shape:
    """The per-sample shape of the tensor held inside a model: `(C, H, W)` for an image."""
    shape = tuple(shape)
    return (shape[-1], *shape[:-1]) if is_image(shape) else shape


def held_axis(axis: int, input_shape: Sequence[int]) -> int:
    """The dimension, inside a model, of a batched tensor's axis as Keras counts it.

    `axis` counts the batch axis as 0 and may be negative (`-1`, the last). For
    images, `(N, H, W, C)` is held as `(N, C, H, W)` (see `is_image`), so
    Keras's `-1` is dimension 1; otherwise the axis is returned non-negative.

    Args:
        axis: Axis of the Keras batch, in `[-rank, rank)`; the caller checks the range.
        input_shape: Per-sample shape, without the batch dimension.
    """
    rank = len(input_shape) + 1
    axis = axis + rank if axis < 0 else axis
    return (0, 2, 3, 1)[axis] if is_image(input_shape) else axis


def output_shape_of(module: nn.Module, input_shape: Shape) -> Shape:
    """Return `module`'s per-sample output shape for a per-sample `input_shape`.

    A module without `compute_output_shape` (plain PyTorch) is run once on a
    batch of two zero samples in eval mode, without gradients, to find out;
    images are held channels-first there, as inside a model (see `is_image`).

    Args:
        module: A tricklab layer or any PyTorch module.
        input_shape: Shape of one input sample, without the batch dimension.
    """
    if hasattr(module, "compute_output_shape"):
        return tuple(module.compute_output_shape(tuple(input_shape)))
    reference = next(module.parameters(), None)
    probe = torch.zeros(
        (2, *held_shape(input_shape)),
        dtype=reference.dtype if reference is not None else torch.get_default_dtype(),
        device=reference.device if reference is not None else None,
    )
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            shape = tuple(module(probe).shape[1:])
    finally:
        module.train(was_training)
    return (*shape[1:], shape[0]) if is_image(shape) else shape


def build_layer(module: nn.Module, input_shape: Shape) -> Shape:
    """Build `module` for `input_shape` unless it is built already; return its output shape.

    Args:
        module: A tricklab layer (built here if needed) or any PyTorch module.
        input_shape: Shape of one input sample, without the batch dimension.
    """
    if isinstance(module, Layer) and not module.built:
        module.build(tuple(input_shape))
    return output_shape_of(module, input_shape)


def resolve_nested(factory: Any, config: dict[str, Any], path: str) -> dict[str, Any]:
    """Resolve every `RegistryRef` parameter of `config` to its canonical, fully defaulted form.

    A referenced entry becomes its bare name when it takes no parameters
    (`"he_normal"`) and `{name: full_config}` otherwise, so the run directory's
    resolved recipe shows every default.

    Args:
        factory: The class or function `config` is for.
        config: Its already validated keyword arguments.
        path: Dotted location of `config`, e.g. `model.layers.1.dense`.

    Raises:
        UserInputError: Naming e.g. `model.layers.1.dense.kernel_initializer` when a
            referenced name is unknown or its configuration is wrong.
    """
    target = factory.__init__ if isinstance(factory, type) else factory
    resolved = dict(config)
    for field, hint in get_type_hints(target, include_extras=True).items():
        ref = registry_ref(hint)
        value = resolved.get(field)
        if ref is None or value is None:
            continue
        if ref.registry.base is not None and isinstance(value, ref.registry.base):
            continue
        name, full = ref.registry.resolve(value, f"{path}.{field}")
        full = resolve_nested(ref.registry.info(name).factory, full, f"{path}.{field}.{name}")
        resolved[field] = {name: full} if full else name
    return resolved


def registry_ref(hint: Any) -> RegistryRef | None:
    """Find the `RegistryRef` of a type hint, also inside `Optional[...]` / `X | None`."""
    for member in (hint, *get_args(hint)):
        for marker in getattr(member, "__metadata__", ()):
            if isinstance(marker, RegistryRef):
                return marker
    return None
